"""Start the node graph of ``config/demo.yaml`` without the ``launch`` package.

* ``subprocess`` mode (the demo): one process per node, ``python -m <module> --ros-args ...`` with the same
  name, parameter file, overrides and remappings a launch file passes (``pcm_l2l_ros.graph``). Children die
  with the runner (``PR_SET_PDEATHSIG``) and are stopped with SIGTERM, then SIGKILL after a timeout
  (:class:`NodeProcess`, also what the tests' ``node_process`` fixture starts).
* ``inprocess`` mode (tests): every node object on one ``SingleThreadedExecutor`` spinning in a thread.

Managed nodes (``lifecycle: true`` in the graph) are brought up to ``active`` before the graph is handed over:
``subprocess`` mode calls their standard lifecycle services over DDS (``<node>/get_state``,
``<node>/change_state``: configure, then activate; :class:`pcm_l2l_ros.nodes.lifecycle.LifecycleManager`),
``inprocess`` mode triggers the same transitions on the node objects. A failed transition is an error that
names the node; at the end a managed node takes its ``shutdown`` transition (SIGTERM in its own process).

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
    """The graph as child processes; use as a context manager. ``activate_timeout_s``: longest wait (s) for the
    managed nodes to reach ``active`` (their configure loads and programs the chip)."""

    def __init__(self, nodes: list[NodeSpec], config_dir: Path, overrides: dict[str, dict[str, Any]] | None = None,
                 log_dir: Path | None = None, env: dict[str, str] | None = None, activate_timeout_s: float = 300.0):
        self.nodes, self.config_dir = nodes, Path(config_dir)
        self.overrides = overrides or {}
        self.log_dir = Path(log_dir) if log_dir else None
        self.env = node_env(env)
        self.activate_timeout_s = float(activate_timeout_s)
        self.procs: dict[str, NodeProcess] = {}

    def start(self, name: str | None = None, activate: bool = True) -> None:
        """Start every node (or the one called ``name``, e.g. to restart it); with ``activate``, then bring the
        managed ones among them up to ``active`` (:meth:`activate`)."""
        started = []
        for n in self.nodes:
            if name is not None and n.name != name:
                continue
            argv = [sys.executable, "-m", n.module, *ros_args(n, self.config_dir, self.overrides.get(n.name))]
            log.info("starting %s: %s", n.name, " ".join(argv[2:]))
            self.procs[n.name] = NodeProcess(argv, self.env,
                                             None if self.log_dir is None else self.log_dir / f"{n.name}.log")
            started.append(n.name)
        if activate:
            self.activate([n for n in started if self.spec(n).lifecycle])

    def spec(self, name: str) -> NodeSpec:
        return next(n for n in self.nodes if n.name == name)

    def activate(self, names: list[str]) -> None:
        """Bring the managed nodes ``names`` (started by this graph) up to ``active`` over DDS with their standard
        lifecycle services, from a private rclpy context in this graph's ``ROS_DOMAIN_ID``. Raises ``RuntimeError``
        naming the node (and the end of its log) if it dies or a transition fails, ``TimeoutError`` after
        ``activate_timeout_s``."""
        if not names:
            return
        import rclpy  # noqa: PLC0415
        from rclpy.executors import SingleThreadedExecutor  # noqa: PLC0415
        from rclpy.signals import SignalHandlerOptions  # noqa: PLC0415

        from pcm_l2l_ros.nodes.lifecycle import LifecycleManager  # noqa: PLC0415

        os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        ctx = rclpy.Context()
        rclpy.init(context=ctx, domain_id=int(self.env.get("ROS_DOMAIN_ID", "0") or 0),
                   signal_handler_options=SignalHandlerOptions.NO)
        try:
            node = rclpy.create_node(f"pcm_l2l_runner_{os.getpid()}", context=ctx)
            ex = SingleThreadedExecutor(context=ctx)
            ex.add_node(node)
            manager = LifecycleManager(node, lambda t: ex.spin_once(timeout_sec=t))
            for name in names:
                t0 = time.monotonic()
                proc = self.procs[name]
                try:
                    manager.bring_up(name, self.activate_timeout_s, alive=proc.alive)
                except (RuntimeError, TimeoutError) as e:
                    raise RuntimeError(f"{name} did not become active: {e}\n{proc.output()[-2000:]}") from e
                log.info("%s is active (%.1f s)", name, time.monotonic() - t0)
            manager.close()
            ex.shutdown(timeout_sec=1.0)
            node.destroy_node()
        finally:
            rclpy.try_shutdown(context=ctx)
            ctx.destroy()

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
        try:
            self.start()
        except BaseException as e:   # a node that did not come up, or Ctrl-C meanwhile: stop what was started
            self.stop(timeout=1.5 if isinstance(e, KeyboardInterrupt) else 10.0)
            raise
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
        from rclpy.lifecycle import LifecycleNode  # noqa: PLC0415

        os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        if self.context is None:
            self.context = rclpy.Context()
            rclpy.init(context=self.context)
            self._own_context = True
        else:
            self._own_context = False
        self.executor = SingleThreadedExecutor(context=self.context)
        self._thread: threading.Thread | None = None
        try:
            for n in self.nodes:
                module, cls = n.plugin.split(":")
                node_cls = getattr(importlib.import_module(module), cls)
                args = ros_args(n, self.config_dir, self.overrides.get(n.name))
                self.made[n.name] = node = node_cls(cli_args=args, use_global_arguments=False, context=self.context)
                if n.lifecycle != isinstance(node, LifecycleNode):
                    raise TypeError(f"{n.name}: the graph says lifecycle: {str(n.lifecycle).lower()}, but "
                                    f"{n.plugin} is {'not ' if n.lifecycle else ''}a LifecycleNode")
                if n.lifecycle:
                    node.bring_up()   # configure + activate before anything spins
                self.executor.add_node(node)
        except BaseException:
            self.__exit__()
            raise
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        import rclpy  # noqa: PLC0415

        from pcm_l2l_ros.nodes.common import stop_node  # noqa: PLC0415

        self.executor.shutdown(timeout_sec=2.0)
        if self._thread is not None:
            self._thread.join(2.0)
        for node in self.made.values():
            stop_node(node)   # a managed node's shutdown transition, a plain node's on_shutdown()
            node.destroy_node()
        if self._own_context:
            rclpy.try_shutdown(context=self.context)
