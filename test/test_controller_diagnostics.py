"""/diagnostics of the controller over real DDS (issue #17, item 3): a DiagnosticArray about once a second in every
lifecycle state with the lifecycle and controller state, the chip's devices, writes and endurance, the simulated
drift time, the last learn loss, the learn latency p50/p99 and the freshness of /joint_states; every value finite.
Levels: WARN while not active, WARN while active without fresh /joint_states (with their age), OK while serving
with a live arm. The test process is the arm driver (``FakeArm``: /joint_states at 100 Hz)."""

from __future__ import annotations

import math
import time

import pytest

rclpy = pytest.importorskip("rclpy")
from conftest import bring_up, spin_until  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from pcm_l2l_interfaces.srv import LearnTrajectory  # noqa: E402
from test_controller_node import STARTUP_S, Probe, target_msg  # noqa: E402
from test_node_safety import FakeArm  # noqa: E402

NAME = "controller: one-shot trajectory learning"
DEVICES = 255_000  # the trainee's W_in/W_rec on the chip (2 polarities x devices per polarity x 255 x 250)
OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR
KEYS = (
    "lifecycle state",
    "controller state",
    "learned",
    "last learn loss",
    "learn latency samples",
    "/joint_states age (s)",
    "watchdog stops",
)
CHIP_KEYS = (
    "simulated drift time (s)",
    "chip devices",
    "total writes",
    "max writes per device",
    "endurance (writes per device)",
    "max writes / endurance",
)


def _values(status: DiagnosticStatus) -> dict[str, str]:
    values = {kv.key: kv.value for kv in status.values}
    for k, v in values.items():  # text a person can read; numbers finite
        assert v and v.lower() not in ("nan", "inf", "-inf", "non-finite"), (k, v)
    return values


def test_controller_diagnostics_over_dds(no_shm_leak, node_process, ros_node):
    # a 0.5 s watchdog: "stale" must not flicker on a loaded 2-core machine while the fake arm publishes at 100 Hz
    proc = node_process("pcm_l2l_ros.nodes.controller_node", ["--ros-args", "-p", "watchdog_timeout_s:=0.5"])
    node, ex = ros_node
    msgs: list[tuple[float, DiagnosticArray]] = []
    node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: msgs.append((time.monotonic(), m)), 10)

    def items(since: float = 0.0) -> list[tuple[float, DiagnosticArray, DiagnosticStatus]]:
        return [(t, m, s) for t, m in msgs if t >= since for s in m.status if s.name == NAME]

    def next_item(timeout: float = 5.0) -> DiagnosticStatus:
        n = len(items())
        assert spin_until(ex, lambda: len(items()) > n, timeout), proc.output()
        return items()[-1][2]

    # unconfigured: reported, not serving (WARN), no chip yet
    st = next_item(STARTUP_S)
    v = _values(st)
    assert st.level == WARN and "not serving (unconfigured)" in st.message, st.message
    assert v["lifecycle state"] == "unconfigured" and v["/joint_states age (s)"] == "none received"
    assert all(k in v for k in KEYS) and "chip devices" not in v, v

    # active without an arm: WARN, no /joint_states
    bring_up(ex, node, "controller", proc, STARTUP_S)
    st = next_item()
    v = _values(st)
    assert v["lifecycle state"] == "active" and v["controller state"] == "idle", v
    assert st.level == WARN and "no /joint_states" in st.message, st.message
    assert all(k in v for k in (*KEYS, *CHIP_KEYS)), v
    assert int(v["chip devices"]) == DEVICES and int(v["endurance (writes per device)"]) == 10**8
    assert int(v["total writes"]) >= DEVICES // 2 and 1 <= int(v["max writes per device"]) < 1000
    assert float(v["max writes / endurance"]) == pytest.approx(int(v["max writes per device"]) / 1e8, rel=1e-5)
    assert float(v["simulated drift time (s)"]) == 3600.0 and "learn latency p50 (ms)" not in v
    writes_programmed = int(v["total writes"])

    # a live arm and a learn: OK, the loss and the latency of the learn, the chip's new writes
    probe = Probe(node, ex)
    arm = FakeArm(node)
    try:
        for c in (probe.learn, probe.execute):
            assert spin_until(ex, c.service_is_ready, 30.0)
        t0 = time.monotonic()
        res = probe.call(probe.learn, LearnTrajectory.Request(target=target_msg(), quantize_update=True))
        rtt_ms = 1e3 * (time.monotonic() - t0)
        assert res.success, res.message
        t_learned = time.monotonic()
        ok = lambda: any(s.level == OK and _values(s)["learned"] == "true" for _, _, s in items(t_learned))  # noqa: E731
        assert spin_until(ex, ok, 10.0), [(s.level, s.message) for _, _, s in items(t_learned)]
        st = next(s for _, _, s in items(t_learned) if s.level == OK)
        v = _values(st)
        assert st.message == "serving" and v["controller state"] == "idle"
        assert float(v["last learn loss"]) == pytest.approx(res.loss_after, rel=1e-5)
        assert 0.0 <= float(v["/joint_states age (s)"]) <= 0.5
        assert int(v["total writes"]) > writes_programmed  # the one update's writes
        p50, p99 = float(v["learn latency p50 (ms)"]), float(v["learn latency p99 (ms)"])
        assert v["learn latency samples"] == "1" and p50 == p99
        assert 1e3 * res.update_time_s <= p50 + 0.5 and p50 <= rtt_ms + 0.5, (p50, res.update_time_s, rtt_ms)

        # ~1 Hz: the stamps of consecutive reports
        t_first = time.monotonic()
        assert spin_until(ex, lambda: len(items(t_first)) >= 5, 10.0)
        stamps = [m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec for _, m, _ in items(t_first)]
        gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
        print(f"/diagnostics gaps: {', '.join(f'{g:.3f}' for g in gaps)} s; learn latency p50 {p50:.1f} ms")
        assert all(0.8 <= g <= 1.2 for g in gaps) and abs(sum(gaps) / len(gaps) - 1.0) < 0.05, gaps
    finally:
        arm.stop()

    # the arm goes silent while active: WARN "stale /joint_states" with their age
    t_silent = time.monotonic()
    stale = lambda: any("stale /joint_states" in s.message for _, _, s in items(t_silent))  # noqa: E731
    assert spin_until(ex, stale, 5.0), [(s.level, s.message) for _, _, s in items(t_silent)]
    st = next(s for _, _, s in items(t_silent) if "stale /joint_states" in s.message)
    v = _values(st)
    age = float(v["/joint_states age (s)"])
    assert st.level == WARN and math.isfinite(age) and age > 0.5 and " s old" in st.message, st.message
