"""Shared pieces of the node entry points.

``run_node`` is the hardened ``main()`` of every node: it exits 0 on SIGINT/SIGTERM, also in the
shutdown race of rclpy 9.1.2 (ros2/rclpy#398), and spins a ``SingleThreadedExecutor`` because this
rclpy's ``MultiThreadedExecutor`` starves callbacks (ros2/rclpy#1452).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import rclpy
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node


def ensure_localhost_discovery() -> None:
    """Keep DDS discovery on loopback unless the user chose a range explicitly (DESIGN.md §2)."""
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")


def run_node(node_factory: Callable[..., Node], args: Sequence[str] | None = None) -> int:
    """Init rclpy, build the node, spin it until shutdown, clean up; returns the exit code."""
    ensure_localhost_discovery()
    rclpy.init(args=args)
    node = None
    executor = SingleThreadedExecutor()
    try:
        node = node_factory()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():  # a real error; the RCLError of the signal/shutdown race is not one
            raise
    finally:
        executor.shutdown(timeout_sec=1.0)
        if node is not None:
            _on_shutdown = getattr(node, "on_shutdown", None)
            if callable(_on_shutdown):
                _on_shutdown()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


def declare_validated(node: Node, name: str, default: Any, description: str,
                      check: Callable[[Any], str | None] | None = None, read_only: bool = False) -> Any:
    """Declare a parameter with a descriptor; validate the initial value and later changes.

    ``check(value)`` returns an error message or None. An invalid initial value raises ``ValueError``
    (the node refuses to start with a clear message); an invalid later change is rejected.
    """
    node.declare_parameter(name, default, ParameterDescriptor(description=description, read_only=read_only))
    value = node.get_parameter(name).value
    if check is not None:
        err = check(value)
        if err:
            raise ValueError(f"parameter '{name}' = {value!r} is invalid: {err}")
        checks = getattr(node, "_pcm_param_checks", None)
        if checks is None:
            checks = {}
            node._pcm_param_checks = checks  # type: ignore[attr-defined]
            node.add_on_set_parameters_callback(lambda params: _check_all(checks, params))
        checks[name] = check
    return value


def _check_all(checks: dict[str, Callable[[Any], str | None]], params) -> SetParametersResult:
    for p in params:
        check = checks.get(p.name)
        err = check(p.value) if check else None
        if err:
            return SetParametersResult(successful=False, reason=f"parameter '{p.name}' = {p.value!r}: {err}")
    return SetParametersResult(successful=True)


def positive(value: Any) -> str | None:
    """Check helper: a finite number > 0."""
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        return "must be a finite number > 0"
    return None


def int_range(lo: int, hi: int):
    """Check helper factory: an integer (not a bool) in [lo, hi]."""
    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            return f"must be an integer in [{lo}, {hi}]"
        return None
    return check


def non_negative(value: Any) -> str | None:
    """Check helper: a finite number >= 0."""
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return "must be a finite number >= 0"
    return None
