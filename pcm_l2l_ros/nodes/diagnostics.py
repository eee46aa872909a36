"""``/diagnostics`` for the nodes: diagnostic_msgs/DiagnosticArray at a fixed period (1 Hz by default).

A node gives :class:`DiagnosticsPublisher` a function that returns its :class:`Status` items; the publisher
calls it from a timer (on the executor thread: keep it cheap, read counters under their lock) and publishes
them in one ``DiagnosticArray`` stamped with the node's clock. A :class:`Status` collects key/value pairs and
its level: it starts ``OK`` and ``warn()`` / ``error()`` raise it (never lower it), each with a reason that
becomes the message. Values are written as text by :func:`fmt`: numbers as finite decimals, never ``nan`` or
``inf`` (a non-finite number is written ``"non-finite"`` and makes the item ``ERROR``: something is broken).
Helpers for what several nodes report: :func:`add_chip_wear` (devices, writes, endurance, with WARN above
``ENDURANCE_WARN_FRACTION`` of the limit and ERROR at the limit) and :class:`LatencyWindow` (p50/p99 over the
last ``size`` requests). A node's report is a few lines, e.g. for the controller::

    def _diagnostics(self):
        st = Status(f"{self.get_name()}: controller", hardware_id="simulated PCM chip")
        st.add("state", self.state)
        if self.joint_states_age_s() > self.watchdog_timeout_s:
            st.warn("stale /joint_states")
        st.add("last learn loss", self.last_loss)
        add_chip_wear(st, devices=..., total_writes=..., max_writes=..., endurance=...)
        return [st]

    self.diagnostics = DiagnosticsPublisher(self, self._diagnostics, period_s=1.0)
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR", DiagnosticStatus.STALE: "STALE"}
#: max writes per device above this fraction of the endurance limit is a WARN
ENDURANCE_WARN_FRACTION = 0.8
TOPIC = "/diagnostics"


def fmt(value: Any) -> str:
    """A status value as text: bool ``true``/``false``, int as is, float with 6 significant digits, a sequence
    comma-separated, anything else ``str()``. A non-finite float is ``"non-finite"`` (never ``nan``/``inf``)."""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6g}" if math.isfinite(value) else "non-finite"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value)
    return str(value)


class Status:
    """Builder of one ``DiagnosticStatus`` (see the module docstring)."""

    def __init__(self, name: str, hardware_id: str = "", ok_message: str = "OK"):
        self.name, self.hardware_id, self.ok_message = name, hardware_id, ok_message
        self.level = OK
        self.reasons: list[tuple[bytes, str]] = []  # (level, reason)
        self.values: list[tuple[str, str]] = []

    def add(self, key: str, value: Any) -> Status:
        """Append ``key: fmt(value)``; a non-finite number raises the level to ERROR."""
        text = fmt(value)
        if text == "non-finite":
            self.error(f"{key} is not finite")
        self.values.append((key, text))
        return self

    def warn(self, reason: str) -> Status:
        """Raise the level to at least WARN, with a reason."""
        return self._raise_to(WARN, reason)

    def error(self, reason: str) -> Status:
        """Raise the level to ERROR, with a reason."""
        return self._raise_to(ERROR, reason)

    def _raise_to(self, level: bytes, reason: str) -> Status:
        self.level = max(self.level, level)
        self.reasons.append((level, reason))
        return self

    def to_msg(self) -> DiagnosticStatus:
        """The message: the reasons of the highest level (``ok_message`` when OK) joined with '; '."""
        top = [r for lvl, r in self.reasons if lvl == self.level]
        return DiagnosticStatus(
            level=self.level,
            name=self.name,
            hardware_id=self.hardware_id,
            message="; ".join(top) if top else self.ok_message,
            values=[KeyValue(key=k, value=v) for k, v in self.values],
        )


def add_chip_wear(
    status: Status,
    devices: int,
    total_writes: int,
    max_writes: int,
    endurance: int | None,
    warn_fraction: float = ENDURANCE_WARN_FRACTION,
) -> Status:
    """The chip's wear: ``chip devices``, ``total writes`` (write pulses over all devices since programming,
    programming included), ``max writes per device``, ``endurance (writes per device)`` (``unlimited`` for
    None) and ``max writes / endurance``; WARN above ``warn_fraction`` of the limit, ERROR at or beyond it."""
    status.add("chip devices", int(devices))
    status.add("total writes", int(total_writes))
    status.add("max writes per device", int(max_writes))
    if endurance is None:
        status.add("endurance (writes per device)", "unlimited")
        return status
    frac = max_writes / endurance
    status.add("endurance (writes per device)", int(endurance))
    status.add("max writes / endurance", frac)
    if frac >= 1.0:
        status.error(f"devices at or beyond their endurance ({max_writes} writes, limit {endurance})")
    elif frac >= warn_fraction:
        status.warn(f"device wear at {100 * frac:.0f} % of the endurance limit")
    return status


class LatencyWindow:
    """The last ``size`` latencies (s), thread-safe; :meth:`percentiles_ms` gives p50/p99 in ms."""

    def __init__(self, size: int = 1000):
        if int(size) < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self._values: deque[float] = deque(maxlen=int(size))
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        if math.isfinite(seconds) and seconds >= 0:
            with self._lock:
                self._values.append(float(seconds))

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)

    def percentiles_ms(self, qs: Sequence[float] = (50.0, 99.0)) -> list[float] | None:
        """The percentiles ``qs`` of the window in ms, or None while it is empty."""
        with self._lock:
            values = np.asarray(self._values, np.float64)
        if values.size == 0:
            return None
        return [float(v) for v in np.percentile(values * 1e3, qs)]

    def add_to(self, status: Status, label: str = "latency") -> None:
        """``<label> p50 (ms)``, ``<label> p99 (ms)`` and ``<label> samples`` (the p keys only once there is one)."""
        p = self.percentiles_ms()
        status.add(f"{label} samples", len(self))
        if p is not None:
            status.add(f"{label} p50 (ms)", p[0])
            status.add(f"{label} p99 (ms)", p[1])


class DiagnosticsPublisher:
    """Publishes ``status_fn()`` on ``/diagnostics`` every ``period_s`` s from a timer of ``node``.

    An exception in ``status_fn`` is published as one ERROR item naming it (the node keeps running).
    ``destroy()`` stops the timer and the publisher.
    """

    def __init__(self, node: Node, status_fn: Callable[[], Sequence[Status]], period_s: float = 1.0):
        if not (math.isfinite(period_s) and period_s > 0):
            raise ValueError(f"period_s must be a finite number > 0, got {period_s}")
        self.node, self.status_fn = node, status_fn
        self.publisher = node.create_publisher(DiagnosticArray, TOPIC, 10)
        self.timer = node.create_timer(period_s, self.publish)
        self.published = 0

    def publish(self) -> None:
        try:
            items = [s.to_msg() for s in self.status_fn()]
        except Exception as e:  # noqa: BLE001 - diagnostics must never take the node down
            items = [
                Status(f"{self.node.get_name()}: diagnostics").error(f"status failed: {type(e).__name__}: {e}").to_msg()
            ]
        msg = DiagnosticArray(status=items)
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self.publisher.publish(msg)
        self.published += 1

    def destroy(self) -> None:
        self.node.destroy_timer(self.timer)
        self.node.destroy_publisher(self.publisher)
