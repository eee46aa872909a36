"""WorkerPool.run_on_each: a function once on every worker thread (the vision node warms its request path up there)."""

from __future__ import annotations

import threading

import pytest

from pcm_l2l_ros.nodes.common import WorkerPool


def test_run_on_each_runs_once_on_every_worker_thread_and_the_pool_serves_after() -> None:
    pool = WorkerPool("t", workers=3)
    try:
        seen: list[tuple[str, str]] = []
        lock = threading.Lock()

        def record(name: str) -> None:
            with lock:
                seen.append((name, threading.current_thread().name))

        pool.run_on_each(record)
        assert sorted(n for n, _ in seen) == ["t-0", "t-1", "t-2"]  # each worker exactly once
        assert all(n == cur for n, cur in seen)  # on that worker's own thread
        sent = []
        done = threading.Event()

        def send(response, header):
            sent.append((response, header))
            done.set()

        job = pool.defer(send, lambda req, resp: resp + req, 1, 41)
        job.header = "h"
        job.ready.set()
        assert done.wait(5.0) and sent == [(42, "h")]
    finally:
        assert pool.close(5.0)


def test_run_on_each_raises_a_workers_error() -> None:
    pool = WorkerPool("e", workers=2)
    try:

        def fail_on_one(name: str) -> None:
            if name == "e-1":
                raise ValueError("warm-up failed on e-1")

        with pytest.raises(ValueError, match="e-1"):
            pool.run_on_each(fail_on_one)
        assert pool.alive()
    finally:
        assert pool.close(5.0)


def test_durations_carry_a_rounding_into_the_seconds_and_trajectory_times_increase():
    from pcm_l2l_ros.nodes.common import duration_msg, joint_trajectory

    d = duration_msg(2.9999999999999996)  # int(t) = 2 but t rounds to 3 s: not 2 s + 0 ns, not 2 s + 10^9 ns
    assert (d.sec, d.nanosec) == (3, 0)
    d = duration_msg(2.49)
    assert (d.sec, d.nanosec) == (2, 490_000_000)
    for scale in (0.5, 1.0, 1.5, 3.0, 4.0):  # the controller's trajectory mode: t = (k + 1) dt scale
        times = [(k + 1) * 0.01 * scale for k in range(249)]
        msg = joint_trajectory(["base_joint", "shoulder"], times, [[0.0, 0.0]] * 249)
        ns = [p.time_from_start.sec * 10**9 + p.time_from_start.nanosec for p in msg.points]
        assert all(b > a for a, b in zip(ns, ns[1:], strict=False))
        assert all(abs(n - 1e9 * t) <= 1 for n, t in zip(ns, times, strict=True))
