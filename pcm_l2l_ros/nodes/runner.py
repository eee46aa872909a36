"""Start the node graph of ``config/demo.yaml`` without the ``launch`` package.

* ``subprocess`` mode (the demo): one process per node, ``python -m <module> --ros-args ...`` with the same
  name, parameter file, overrides and remappings a launch file passes (``pcm_l2l_ros.graph``). Children die
  with the runner (``PR_SET_PDEATHSIG``) and are stopped with SIGTERM, then SIGKILL after a timeout
  (:class:`NodeProcess`, also what the tests' ``node_process`` fixture starts).
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
REPO = Path(__file__).resolve().parents[2]


def _pdeathsig() -> None:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def clean_stale_shm() -> None:
    """Remove Fast DDS shared-memory segments of killed processes (``fastdds shm clean``)."""
    fastdds = Path(sys.executable).parent / "fastdds"
    if fastdds.exists():
        subprocess.run([str(fastdds), "shm", "clean"], capture_output=True, timeout=30, check=False)


def node_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of a node process: ``env`` (default: this process's) with localhost-only discovery unless a
    range was chosen, unbuffered output and the source tree first on ``PYTHONPATH``."""
    out = dict(os.environ if env is None else env)
    out.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    out["PYTHONUNBUFFERED"] = "1"
    out["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), out.get("PYTHONPATH", "")) if p)
    return out


class NodeProcess:
    """One node (any command line) in its own process that dies with this one (``PR_SET_PDEATHSIG``), stdout
    and stderr appended to ``log_path`` (discarded without one). ``stop()``: a signal (SIGTERM), then SIGKILL
    after ``timeout`` (``killed`` is then set); returns the exit code."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path | None = None,
                 cwd: Path | None = None):
        self.argv, self.log_path = argv, log_path
        self._log: Any = subprocess.DEVNULL
        if log_path is not None:
            Path(log_path).parent.mkdir(parents=True, exist_ok=True)
            self._log = open(log_path, "a")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT,
                                     preexec_fn=_pdeathsig)
        self.killed = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        """What the process wrote so far (empty without a log file)."""
        if self.log_path is None:
            return ""
        if not self._log.closed:
            self._log.flush()
        return Path(self.log_path).read_text(errors="replace")

    def send_stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """Wait up to ``timeout`` s, then SIGKILL; closes the log; returns the exit code."""
        try:
            self.proc.wait(max(0.0, timeout))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.1f s: killing it", " ".join(self.argv[1:3]), timeout)
            self.proc.kill()
            self.proc.wait(5)
            self.killed = True
        if self.log_path is not None:
            self._log.close()
        return self.proc.returncode

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        self.send_stop(sig)
        return self.wait(timeout)


class SubprocessGraph:
    """The graph as child processes; use as a context manager."""

    def __init__(self, nodes: list[NodeSpec], config_dir: Path, overrides: dict[str, dict[str, Any]] | None = None,
                 log_dir: Path | None = None, env: dict[str, str] | None = None):
        self.nodes, self.config_dir = nodes, Path(config_dir)
        self.overrides = overrides or {}
        self.log_dir = Path(log_dir) if log_dir else None
        self.env = node_env(env)
        self.procs: dict[str, NodeProcess] = {}

    def start(self, name: str | None = None) -> None:
        """Start every node (or the one called ``name``, e.g. to restart it)."""
        for n in self.nodes:
            if name is not None and n.name != name:
                continue
            argv = [sys.executable, "-m", n.module, *ros_args(n, self.config_dir, self.overrides.get(n.name))]
            log.info("starting %s: %s", n.name, " ".join(argv[2:]))
            self.procs[n.name] = NodeProcess(argv, self.env,
                                             None if self.log_dir is None else self.log_dir / f"{n.name}.log")

    def alive(self, name: str) -> bool:
        p = self.procs.get(name)
        return p is not None and p.alive()

    def stop(self, name: str | None = None, timeout: float = 10.0) -> dict[str, int]:
        """SIGTERM, wait, SIGKILL; returns the exit codes."""
        targets = [k for k in self.procs if name is None or k == name]
        for k in targets:
            self.procs[k].send_stop(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        codes = {k: self.procs[k].wait(deadline - time.monotonic()) for k in targets}
        if any(c == -signal.SIGKILL for c in codes.values()):
            clean_stale_shm()
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
