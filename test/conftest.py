"""Shared pytest fixtures.

ROS rules enforced here for every test (docs/conventions.md §8):
* ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` is set before anything can import rclpy, so DDS discovery
  never leaves loopback;
* every test that uses ROS gets its own ``ROS_DOMAIN_ID`` (``ros_domain``);
* node processes are started with ``PR_SET_PDEATHSIG`` and stopped with SIGTERM (``node_process``: the
  demo runner's :class:`pcm_l2l_ros.nodes.runner.NodeProcess`); a test that had to SIGKILL runs
  ``fastdds shm clean``; nothing is left running after a test.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sys
import time
from pathlib import Path

import pytest

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"  # hard rule: before any rclpy import
os.environ.setdefault("MPLBACKEND", "Agg")
# One intra-op thread: the test process shares 2 cores with the node processes it starts, and torch's default
# thread pool then oversubscribes them (a 15-iteration torch test ran 5x slower that way).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parent.parent
_used_domains: set[int] = set()


def _pick_domain() -> int:
    rng = random.Random(os.getpid() * 1000003 + time.monotonic_ns())
    while True:
        d = rng.randint(1, 101)
        if d not in _used_domains:
            _used_domains.add(d)
            return d


@pytest.fixture
def ros_domain(monkeypatch) -> int:
    """A ROS_DOMAIN_ID of this test alone (also exported to the test process and its children)."""
    d = _pick_domain()
    monkeypatch.setenv("ROS_DOMAIN_ID", str(d))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    return d


@pytest.fixture
def node_process(ros_domain, tmp_path):
    """Factory: ``node_process("pcm_l2l_ros.nodes.sim_node", ["--ros-args", ...])`` -> ``NodeProcess`` (the
    runner's: ``proc``, ``pid``, ``alive()``, ``output()``, ``stop(sig)``, ``killed``).

    A module runs as ``python -m <module>``, a path ending in ``.py`` as a script, from the source
    tree with this test's ROS domain; every
    process still running at teardown is stopped (SIGTERM, then SIGKILL + ``fastdds shm clean``).
    """
    from pcm_l2l_ros.nodes.runner import NodeProcess, node_env

    started: list[NodeProcess] = []
    shm_before = _shm_files()

    def start(module: str, args: list[str] | None = None, env: dict[str, str] | None = None) -> NodeProcess:
        full_env = node_env({**os.environ, **(env or {}), "ROS_DOMAIN_ID": str(ros_domain),
                             "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"})
        if module.endswith(".py"):  # a script (test helpers live in test/, which is not importable as a package)
            argv, stem = [sys.executable, module], Path(module).stem
        else:
            argv, stem = [sys.executable, "-m", module], module.rsplit(".", 1)[-1]
        log = tmp_path / f"{stem}-{len(started)}.log"
        p = NodeProcess([*argv, *(args or [])], full_env, log, cwd=REPO)
        started.append(p)
        return p

    yield start
    bad = []
    for p in started:
        was_running = p.alive()
        code = p.stop(timeout=5.0)
        if p.killed or (was_running and code != 0):
            bad.append(f"{' '.join(p.argv[1:3])}: exit {code}{' (killed)' if p.killed else ''}\n{p.output()[-2000:]}")
    if any(p.killed or p.proc.returncode == -signal.SIGKILL for p in started):  # also killed by the test itself
        clean_killed_shm(shm_before)
    assert not bad, "node processes did not exit cleanly on SIGTERM:\n" + "\n".join(bad)


def clean_killed_shm(before: set[str]) -> None:
    """After a participant was SIGKILLed: ``fastdds shm clean``, then remove what it could not (it needs psutil)
    of the fastdds segments created since ``before`` that no live process maps or holds open (a killed
    participant's port segments; the sem mutex of a port stays, see ``_shm_files``)."""
    from pcm_l2l_ros.nodes.runner import clean_stale_shm

    clean_stale_shm()
    for name in _shm_files() - before - _shm_in_use():
        with contextlib.suppress(OSError):
            (Path("/dev/shm") / name).unlink()


def _shm_files() -> set[str]:
    """Fast DDS shared-memory segments (``fastdds_*``). Not counted: the named port-lock semaphores
    ``sem.fastdds_port*_mutex``, which Fast DDS 3.2 sometimes leaves after a clean exit and reuses for the
    next participant on that port (a few bytes each)."""
    return {p.name for p in Path("/dev/shm").glob("fastdds_*")}


def _shm_in_use() -> set[str]:
    """fastdds shm files mapped or open by a live process (another test session's participants, say)."""
    used = set()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            used.update(line.rsplit("/", 1)[-1] for line in (proc / "maps").read_text().splitlines()
                        if "/dev/shm/" in line and "fastdds" in line)
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("/dev/shm/") and "fastdds" in target:
                    used.add(target.rsplit("/", 1)[-1])
        except OSError:
            continue
    return used


@pytest.fixture
def no_shm_leak():
    """Request FIRST: after every ROS participant of the test is gone, no new fastdds shm file may remain that
    no live process uses (files of participants outside this test, still running, are not stale)."""
    before = _shm_files()
    yield
    deadline = time.monotonic() + 2.0
    while (leaked := _shm_files() - before - _shm_in_use()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not leaked, f"stale fastdds shared-memory files left behind: {sorted(leaked)}"


@pytest.fixture
def ros_node(ros_domain):
    """An rclpy node in the test process (own Context, own domain); yields (node, executor)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=ros_domain)
    node = rclpy.create_node(f"test_probe_{os.getpid()}", context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    try:
        yield node, ex
    finally:
        ex.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)


def lifecycle_ops(manager, name: str, alive):
    """``(state(), change(transition, timeout=60))`` of the managed node ``name`` through ``manager`` (a
    ``LifecycleManager``), over DDS; ``change`` prints how long the transition took and the state after it."""

    def state() -> str:
        return manager.get_state(name, 10.0, alive)

    def change(transition: str, timeout: float = 60.0) -> bool:
        t0 = time.monotonic()
        ok = manager.change_state(name, transition, timeout, alive)
        print(f"{transition}: {'ok' if ok else 'refused'} in {1e3 * (time.monotonic() - t0):.0f} ms -> {state()}")
        return ok

    return state, change


def bring_up(ex, node, name: str, proc, timeout: float = 180.0) -> None:
    """Take the managed node ``name`` (running in ``proc``) to ``active`` over DDS with its standard lifecycle
    services (configure, activate), as the demo runner does; fails the test with the node's output otherwise."""
    from pcm_l2l_ros.nodes.lifecycle import LifecycleManager  # noqa: PLC0415

    manager = LifecycleManager(node, lambda t: ex.spin_once(timeout_sec=t))
    try:
        manager.bring_up(name, timeout, alive=proc.alive)
    except (RuntimeError, TimeoutError) as e:
        pytest.fail(f"{name} did not become active: {e}\n{proc.output()[-3000:]}")
    finally:
        manager.close()


@pytest.fixture
def vision_service(no_shm_leak, node_process, ros_node):
    """The vision node in its own process, brought up to active (configure, activate over DDS), and a client of
    ``/pcm_l2l/classify`` that is ready: ``(process, node, executor, client)`` (start-up allows 180 s: a loaded
    machine, first Numba compile)."""
    from pcm_l2l_interfaces.srv import FewShotClassify  # noqa: PLC0415

    proc = node_process("pcm_l2l_ros.nodes.vision_node")
    node, ex = ros_node
    bring_up(ex, node, "vision", proc)
    client = node.create_client(FewShotClassify, "/pcm_l2l/classify")
    assert spin_until(ex, client.service_is_ready, 30.0), proc.output()
    return proc, node, ex, client


def spin_until(ex, predicate, timeout: float) -> bool:
    """Spin ``ex`` until ``predicate()`` is true or ``timeout`` s pass; returns the predicate's value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        ex.spin_once(timeout_sec=0.02)
    return bool(predicate())


def call_service(ex, client, request, timeout: float = 10.0):
    """Call a service from the test process and wait for the answer (None on timeout)."""
    fut = client.call_async(request)
    spin_until(ex, fut.done, timeout)
    return fut.result() if fut.done() else None
