"""Shared pieces of the node entry points.

``run_node`` is the hardened ``main()`` of every node. It installs its own SIGINT/SIGTERM handlers
(rclpy's would invalidate the context before the node can command a safe stop): a signal ends the spin
loop within ``SPIN_POLL_S``, then the node is stopped while the context is still valid (``stop_node``: a
managed node takes its ``shutdown`` transition, a plain node's ``on_shutdown()`` runs; the controller
publishes its stop command and waits for it to be acknowledged), then the node is
destroyed and the process exits 0 — within 1 s also when a worker thread is busy with a request. It
spins a ``SingleThreadedExecutor`` because this rclpy's ``MultiThreadedExecutor`` starves callbacks
(ros2/rclpy#1452); long requests run on a ``WorkerPool`` instead, so they never block the executor.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import rclpy
from builtin_interfaces.msg import Duration
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

#: longest time (s) the spin loop waits before it looks at the stop flag set by a signal
SPIN_POLL_S = 0.05


def ensure_localhost_discovery() -> None:
    """Keep DDS discovery on loopback unless the user chose a range explicitly (docs/conventions.md §8)."""
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")


def run_node(node_factory: Callable[..., Node], args: Sequence[str] | None = None, fast_exit: bool = True) -> int:
    """Init rclpy, build the node, spin it until SIGINT/SIGTERM, stop it safely; returns the exit code.

    A signal while the node is being built aborts the construction (KeyboardInterrupt, exit 0); a signal
    while spinning sets a flag the spin loop sees within ``SPIN_POLL_S`` s. ``fast_exit``: after the
    clean-up the process ends at once (``os._exit``) instead of returning, which saves the interpreter's
    finalization (about 2 s with torch and numba loaded) and keeps the exit within 1 s. A managed node whose
    ``autostart`` attribute is true (its ``autostart`` parameter, nodes/lifecycle.py) is configured and
    activated before spinning. An error while building or bringing up the node (an invalid parameter, a corrupt
    checkpoint) is one line on stderr and exit code 1.
    """
    ensure_localhost_discovery()
    stop = threading.Event()
    state = {"spinning": False}

    def on_signal(signum, _frame):
        stop.set()
        if not state["spinning"]:
            raise KeyboardInterrupt  # still starting up: abort the construction

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    context = rclpy.Context()
    rclpy.init(args=args, context=context, signal_handler_options=SignalHandlerOptions.NO)
    node = None
    rc = 0
    executor = SingleThreadedExecutor(context=context)
    try:
        try:
            node = node_factory(context=context)
            if getattr(node, "autostart", False):  # a managed node asked to bring itself up (nodes/lifecycle.py)
                node.bring_up()
        except (KeyboardInterrupt, ExternalShutdownException):
            raise
        except Exception as e:  # noqa: BLE001 - a bad parameter or checkpoint: one clear line, no traceback
            name = getattr(node_factory, "__name__", "node")
            print(f"{name}: cannot start: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            rc = 1
            return rc
        freeze_long_lived()
        executor.add_node(node)
        state["spinning"] = True
        while not stop.is_set() and context.ok():
            executor.spin_once(timeout_sec=SPIN_POLL_S)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if context.ok() and not stop.is_set():  # a real error; not the RCLError of a signal/shutdown race
            raise
    finally:
        state["spinning"] = True  # a second signal during the clean-up must not raise inside it
        busy = False
        if node is not None:
            if context.ok():  # context still valid: a stop command is really sent
                try:
                    stop_node(node)
                except Exception as e:  # noqa: BLE001 - exit cleanly anyway
                    print(f"{node.get_name()}: shutdown failed: {type(e).__name__}: {e}", file=sys.stderr)
            busy = any(p.busy() for p in getattr(node, "worker_pools", ()))
        executor.shutdown(timeout_sec=0.5)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown(context=context)
        context.destroy()   # the DDS participant (and its shared-memory segments) goes now, not at exit
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if busy or fast_exit:
        # Leave now: a worker thread may still be inside a request (numerical code that cannot be
        # interrupted), and the interpreter's own finalization (torch, numba, ...) takes seconds. Everything
        # the node owns (its DDS participant included) is released above.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    return rc


def stop_node(node: Node) -> None:
    """Stop ``node`` before it is destroyed: a managed node (``rclpy.lifecycle.LifecycleNode``) takes its
    ``shutdown`` transition from whatever primary state it is in (its ``on_shutdown(state)`` releases what it
    holds); a plain node's ``on_shutdown()`` runs if it has one."""
    from rclpy.lifecycle import LifecycleNode  # noqa: PLC0415

    if isinstance(node, LifecycleNode):
        label = getattr(node, "lifecycle_state", None) or node._state_machine.current_state[1]
        if label in ("unconfigured", "inactive", "active"):
            node.trigger_shutdown()
        return
    on_shutdown = getattr(node, "on_shutdown", None)
    if callable(on_shutdown):
        on_shutdown()


def freeze_long_lived() -> None:
    """Collect garbage once, then put every object alive now out of the cyclic collector's sight (``gc.freeze``).

    A started node's objects (torch, Numba, rclpy, the programmed chip: ~270,000 in the vision node) live as long
    as the process; a full collection walks all of them with the GIL held (124 ms in the vision node), a pause a
    request or the executor would wait for. Called once the node is up and after every ``configure`` (``cleanup``
    unfreezes and collects, so what it drops is freed, reference cycles included)."""
    gc.collect()
    gc.freeze()


def limit_heap_growth(mmap_threshold: int = 1 << 20) -> None:
    """Serve every allocation >= ``mmap_threshold`` bytes with its own mapping (glibc ``M_MMAP_THRESHOLD``),
    returned to the system when freed: a large request does not leave the heap grown (RSS) after it. glibc
    otherwise raises the threshold to the largest freed block (up to 32 MiB), and such blocks stay in the
    heap. No-op where glibc is absent."""
    try:
        import ctypes  # noqa: PLC0415

        ctypes.CDLL("libc.so.6").mallopt(-3, int(mmap_threshold))  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


class _Deferred:
    """What a worker-served callback returns to the executor: the executor hands it the request header
    (instead of sending a response), and the worker sends the real response with it when it is done."""

    __slots__ = ("send", "fn", "request", "response", "header", "ready", "t_submit")

    def __init__(self, send, fn, request, response):
        self.send, self.fn, self.request, self.response = send, fn, request, response
        self.header = None
        self.ready = threading.Event()
        self.t_submit = time.monotonic()


class _OnWorker:
    """A job of ``WorkerPool.run_on_each``: ``fn(thread name)`` on one worker, after every worker has taken one."""

    __slots__ = ("fn", "barrier", "done", "error")

    def __init__(self, fn: Callable[[str], None], barrier: threading.Barrier):
        self.fn, self.barrier = fn, barrier
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.barrier.wait()   # each worker holds one job until all are taken: every worker runs fn once
            self.fn(threading.current_thread().name)
        except BaseException as e:  # noqa: BLE001 - handed to the caller of run_on_each
            self.error = e
        finally:
            self.done.set()


class WorkerPool:
    """Worker threads that serve requests off the executor thread (single-threaded executor design).

    ``serve(node, srv_type, name, fn)`` creates a service whose requests are queued to the workers:
    the executor callback returns at once, so timers, subscriptions and other services keep running
    while ``fn(request, response) -> response`` computes; the worker sends the response. At most
    ``max_pending`` requests are queued or running; beyond that a request is refused at once with
    ``success=false`` and ``message='busy: ...'`` (the queue's memory is bounded). An exception in ``fn``
    becomes a refusal with its message; the worker lives on.
    """

    #: GIL switch interval (s) while workers exist: the executor thread waits at most this long for the GIL
    #: when a worker computes (Python's default, 5 ms, made every executor callback wait ~5 ms per GIL hand-over)
    SWITCH_INTERVAL_S = 0.0005

    def __init__(self, name: str, workers: int = 1, max_pending: int = 8, logger=None):
        self.name, self.max_pending, self._logger = name, int(max_pending), logger
        sys.setswitchinterval(min(sys.getswitchinterval(), self.SWITCH_INTERVAL_S))
        self._queue: queue.Queue[_Deferred | _OnWorker | None] = queue.Queue()
        self._lock = threading.Lock()
        self._pending = 0
        self.served = 0
        self.refused_busy = 0
        self._closed = False
        self._threads = [threading.Thread(target=self._loop, name=f"{name}-{i}", daemon=True)
                         for i in range(int(workers))]
        for t in self._threads:
            t.start()

    def busy(self) -> bool:
        """True while a request is queued or being computed."""
        with self._lock:
            return self._pending > 0

    def alive(self) -> bool:
        """True while every worker thread runs (False after ``close`` or if one died)."""
        return all(t.is_alive() for t in self._threads)

    def close(self, timeout_s: float = 5.0) -> bool:
        """Stop the workers: each ends after the requests queued before this call are answered. Waits up to
        ``timeout_s`` s in all; returns True if every worker has ended (a worker still inside a long request ends
        when it is done; the threads are daemons and never keep the process alive). Idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                for _ in self._threads:
                    self._queue.put(None)   # one stop marker per worker, after what is queued
        deadline = time.monotonic() + max(0.0, timeout_s)
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def run_on_each(self, fn: Callable[[str], None], timeout_s: float = 600.0) -> None:
        """Run ``fn(worker thread name)`` once on every worker thread and wait for all of them (e.g. a warm-up of
        the request path in the threads that will serve it: the BLAS / OpenMP runtimes and torch keep per-thread
        state that a warm-up on another thread does not set up). Call it while no request is queued. Raises the
        first worker's exception, or TimeoutError after ``timeout_s`` s."""
        barrier = threading.Barrier(len(self._threads), timeout=timeout_s)
        jobs = [_OnWorker(fn, barrier) for _ in self._threads]
        for job in jobs:
            self._queue.put(job)
        deadline = time.monotonic() + timeout_s
        for job in jobs:
            if not job.done.wait(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"{self.name}: a worker did not finish run_on_each within {timeout_s:g} s")
        for job in jobs:
            if job.error is not None:
                raise job.error

    def serve(self, node: Node, srv_type, name: str, fn: Callable, **kwargs):
        """``node.create_service`` whose callback runs ``fn`` on this pool (see the class docstring)."""
        holder: dict[str, Any] = {}
        srv = node.create_service(srv_type, name,
                                  lambda req, resp: self.defer(holder["send"], fn, req, resp), **kwargs)
        self.attach(srv, holder)
        return srv

    @staticmethod
    def attach(srv, holder: dict | None = None):
        """Make ``srv`` accept a deferred answer; returns the original ``send_response``."""
        send = srv.send_response

        def send_response(response, header):
            if isinstance(response, _Deferred):
                response.header = header
                response.ready.set()
            else:
                send(response, header)

        srv.send_response = send_response  # the executor sends every callback's return value through this
        if holder is not None:
            holder["send"] = send
        return send

    def defer(self, send, fn: Callable, request, response):
        """Queue ``fn(request, response)``; returns the deferred marker, or ``response`` refused if full."""
        with self._lock:
            if self._closed:
                response.success = False
                response.message = f"inactive: the {self.name} workers are stopped"
                return response
            if self._pending >= self.max_pending:
                self.refused_busy += 1
                response.success = False
                response.message = f"busy: {self._pending} requests pending (limit {self.max_pending})"
                return response
            self._pending += 1
        job = _Deferred(send, fn, request, response)
        self._queue.put(job)
        return job

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:   # close(): stop marker
                return
            if isinstance(job, _OnWorker):
                job.run()
                continue
            try:
                try:
                    response = job.fn(job.request, job.response)
                except Exception as e:  # noqa: BLE001 - the node must survive anything a request triggers
                    response = job.response
                    response.success = False
                    response.message = f"failed: {type(e).__name__}: {e}"
                    if self._logger is not None:
                        self._logger.error(f"{self.name}: {response.message}")
                if job.ready.wait(10.0):  # the executor hands over the header microseconds after submit
                    with contextlib.suppress(Exception):  # the node is shutting down: nobody to answer
                        job.send(response, job.header)
                self.served += 1
            finally:
                with self._lock:
                    self._pending -= 1


def declare_validated(node: Node, name: str, default: Any, description: str,
                      check: Callable[[Any], str | None] | None = None, read_only: bool = False) -> Any:
    """Declare a parameter with a descriptor; validate the initial value and later changes.

    ``check(value)`` returns an error message or None. A check made by :func:`float_range` or :func:`int_range`
    also puts its range into the descriptor (``floating_point_range`` / ``integer_range``: what
    ``ros2 param describe`` and the ``~/describe_parameters`` service show, and what rclpy enforces), as
    ``read_only`` does. The initial value (the override from ``--ros-args``/a parameter file, else ``default``)
    is checked *before* the parameter is declared: an invalid one raises ``ValueError`` (the node refuses to
    start with a clear message) and nothing is changed. A later change is checked (range, then ``check``)
    before it is applied, and rejected if invalid.
    """
    descriptor = ParameterDescriptor(description=description, read_only=read_only)
    rng = getattr(check, "ros_range", None)
    if isinstance(rng, FloatingPointRange) and isinstance(default, float):
        descriptor.floating_point_range = [rng]
    elif isinstance(rng, IntegerRange) and isinstance(default, int) and not isinstance(default, bool):
        descriptor.integer_range = [rng]
    overrides = getattr(node, "_parameter_overrides", None) or {}   # rclpy's: what declare_parameter will use
    initial = overrides[name].value if name in overrides else default
    _raise_if_invalid(name, initial, check)
    try:
        node.declare_parameter(name, default, descriptor)
    except (InvalidParameterValueException, InvalidParameterTypeException) as e:
        raise ValueError(f"parameter '{name}' = {initial!r} is invalid: {e}") from e
    value = node.get_parameter(name).value
    _raise_if_invalid(name, value, check)
    if check is not None:
        checks = getattr(node, "_pcm_param_checks", None)
        if checks is None:
            checks = {}
            node._pcm_param_checks = checks  # type: ignore[attr-defined]
            node.add_on_set_parameters_callback(lambda params: _check_all(checks, params))
        checks[name] = check
    return value


def _raise_if_invalid(name: str, value: Any, check: Callable[[Any], str | None] | None) -> None:
    err = check(value) if check is not None else None
    if err:
        raise ValueError(f"parameter '{name}' = {value!r} is invalid: {err}")


def _check_all(checks: dict[str, Callable[[Any], str | None]], params) -> SetParametersResult:
    for p in params:
        check = checks.get(p.name)
        err = check(p.value) if check else None
        if err:
            return SetParametersResult(successful=False, reason=f"parameter '{p.name}' = {p.value!r}: {err}")
    return SetParametersResult(successful=True)


def float_range(lo: float, hi: float, lo_open: bool = False):
    """Check helper factory: a finite number in [lo, hi] (``lo_open``: in (lo, hi]). Carries the matching
    ``FloatingPointRange`` (ROS ranges are closed: an open lower end shows as ``from_value`` = lo, and lo itself
    is still refused by the check)."""
    text = f"{'(' if lo_open else '['}{lo}, {hi}]"

    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return f"must be a finite number in {text}"
        if (v <= lo if lo_open else v < lo) or v > hi:
            return f"must be in {text}"
        return None

    check.ros_range = FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)  # type: ignore[attr-defined]
    return check


def positive(value: Any) -> str | None:
    """Check helper: a finite number > 0."""
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        return "must be a finite number > 0"
    return None


def int_range(lo: int, hi: int):
    """Check helper factory: an integer (not a bool) in [lo, hi]; carries the matching ``IntegerRange``."""
    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            return f"must be an integer in [{lo}, {hi}]"
        return None

    check.ros_range = IntegerRange(from_value=int(lo), to_value=int(hi), step=1)  # type: ignore[attr-defined]
    return check


def non_negative(value: Any) -> str | None:
    """Check helper: a finite number >= 0."""
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return "must be a finite number >= 0"
    return None


def duration_msg(t_s: float) -> Duration:
    """builtin_interfaces/Duration of ``t_s`` >= 0 s, rounded to the nanosecond (a rounding up to a whole second is
    carried into ``sec``: 2.9999999999999996 s is 3 s, not 2 s + 10^9 ns or 2 s)."""
    ns = int(round(float(t_s) * 1e9))
    return Duration(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def joint_trajectory(joint_names, times_s, positions, velocities=None) -> JointTrajectory:
    """trajectory_msgs/JointTrajectory: one point per time (s from the start) with its positions (rad) and, if
    given, velocities (rad/s), in the order of ``joint_names``."""
    msg = JointTrajectory(joint_names=list(joint_names))
    for k, t in enumerate(times_s):
        msg.points.append(JointTrajectoryPoint(
            positions=[float(v) for v in positions[k]],
            velocities=[] if velocities is None else [float(v) for v in velocities[k]],
            time_from_start=duration_msg(t)))
    return msg
