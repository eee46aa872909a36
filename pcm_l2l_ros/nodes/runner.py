"""Start the node graph of ``config/demo.yaml`` without the ``launch`` package.

* ``subprocess`` mode (the demo): one process per node, ``python -m <module> --ros-args ...`` with the same
  name, parameter file, overrides and remappings a launch file passes (``pcm_l2l_ros.graph``). Children die
  with the runner (``PR_SET_PDEATHSIG``) and are stopped with SIGTERM, then SIGKILL after a timeout.
* ``inprocess`` mode (tests): every node object on one ``SingleThreadedExecutor`` spinning in a thread.

Both keep ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` unless the caller chose a range.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pcm_l2l_ros.graph import NodeSpec, ros_args

log = logging.getLogger(__name__)


def _pdeathsig() -> None:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def clean_stale_shm() -> None:
    """Remove Fast DDS shared-memory segments of killed processes (``fastdds shm clean``)."""
    fastdds = Path(sys.executable).parent / "fastdds"
    if fastdds.exists():
        subprocess.run([str(fastdds), "shm", "clean"], capture_output=True, timeout=30, check=False)


class SubprocessGraph:
    """The graph as child processes; use as a context manager."""

    def __init__(self, nodes: list[NodeSpec], config_dir: Path, overrides: dict[str, dict[str, Any]] | None = None,
                 log_dir: Path | None = None, env: dict[str, str] | None = None):
        self.nodes, self.config_dir = nodes, Path(config_dir)
        self.overrides = overrides or {}
        self.log_dir = Path(log_dir) if log_dir else None
        self.env = dict(os.environ if env is None else env)
        self.env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        self.env["PYTHONUNBUFFERED"] = "1"
        repo = str(Path(__file__).resolve().parents[2])
        self.env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, self.env.get("PYTHONPATH", "")) if p)
        self.procs: dict[str, subprocess.Popen] = {}
        self._logs: list[Any] = []

    def start(self, name: str | None = None) -> None:
        """Start every node (or the one called ``name``, e.g. to restart it)."""
        for n in self.nodes:
            if name is not None and n.name != name:
                continue
            argv = [sys.executable, "-m", n.module, *ros_args(n, self.config_dir, self.overrides.get(n.name))]
            out = subprocess.DEVNULL
            if self.log_dir is not None:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                out = open(self.log_dir / f"{n.name}.log", "a")  # noqa: SIM115 - closed in stop()
                self._logs.append(out)
            log.info("starting %s: %s", n.name, " ".join(argv[2:]))
            self.procs[n.name] = subprocess.Popen(argv, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                                  preexec_fn=_pdeathsig)

    def alive(self, name: str) -> bool:
        p = self.procs.get(name)
        return p is not None and p.poll() is None

    def stop(self, name: str | None = None, timeout: float = 10.0) -> dict[str, int]:
        """SIGTERM, wait, SIGKILL; returns the exit codes."""
        codes = {}
        targets = [k for k in self.procs if name is None or k == name]
        for k in targets:
            if self.procs[k].poll() is None:
                self.procs[k].send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for k in targets:
            p = self.procs[k]
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.1f s: killing it", k, timeout)
                p.kill()
                p.wait(5)
            codes[k] = p.returncode
        if any(c == -signal.SIGKILL for c in codes.values()):
            clean_stale_shm()
        if name is None:
            for f in self._logs:
                f.close()
        return codes

    def __enter__(self) -> SubprocessGraph:
        self.start()
        return self

    def __exit__(self, exc_type, *exc) -> None:
        # interrupted (Ctrl-C): the nodes exit within 1 s on SIGTERM; do not wait 10 s for a stuck one
        self.stop(timeout=1.5 if exc_type is KeyboardInterrupt else 10.0)


class InProcessGraph:
    """Every node of the graph in this process on one SingleThreadedExecutor (spinning in a thread)."""

    def __init__(self, nodes: list[NodeSpec], config_dir: Path, overrides: dict[str, dict[str, Any]] | None = None,
                 context=None):
        self.nodes, self.config_dir, self.overrides, self.context = nodes, Path(config_dir), overrides or {}, context
        self.made: dict[str, Any] = {}

    def __enter__(self) -> InProcessGraph:
        import rclpy  # noqa: PLC0415
        from rclpy.executors import SingleThreadedExecutor  # noqa: PLC0415

        os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        if self.context is None:
            self.context = rclpy.Context()
            rclpy.init(context=self.context)
            self._own_context = True
        else:
            self._own_context = False
        self.executor = SingleThreadedExecutor(context=self.context)
        for n in self.nodes:
            module, cls = n.plugin.split(":")
            node_cls = getattr(importlib.import_module(module), cls)
            args = ros_args(n, self.config_dir, self.overrides.get(n.name))
            self.made[n.name] = node_cls(cli_args=args, use_global_arguments=False, context=self.context)
            self.executor.add_node(self.made[n.name])
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        import rclpy  # noqa: PLC0415

        self.executor.shutdown(timeout_sec=2.0)
        self._thread.join(2.0)
        for node in self.made.values():
            on_shutdown = getattr(node, "on_shutdown", None)
            if callable(on_shutdown):
                on_shutdown()
            node.destroy_node()
        if self._own_context:
            rclpy.try_shutdown(context=self.context)
