"""/diagnostics of the vision node over real DDS (issue #17, item 3): a DiagnosticArray about once a second in
every lifecycle state, with the chip's devices, writes and endurance, the drift time, requests served/rejected
and the latency p50/p99 after real classify requests; the levels follow the state (WARN when not serving or
after busy refusals, OK while serving). Plus the status builder's rules (levels, never a 'nan')."""

from __future__ import annotations

import math
import time

import pytest

rclpy = pytest.importorskip("rclpy")
from conftest import bring_up, call_service, spin_until  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from pcm_l2l_interfaces.srv import FewShotClassify  # noqa: E402
from test_vision_node import _request  # noqa: E402

from pcm_l2l_ros.nodes.diagnostics import LatencyWindow, Status, add_chip_wear, fmt  # noqa: E402

NAME = "vision: few-shot classification"
DEVICES_5_AND_20_WAY = 341_824 + 345_184
OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR


def _items(msgs: list[tuple[float, DiagnosticArray]]) -> list[tuple[float, DiagnosticArray, DiagnosticStatus]]:
    return [(t, m, s) for t, m in msgs for s in m.status if s.name == NAME]


def _values(status: DiagnosticStatus) -> dict[str, str]:
    values = {kv.key: kv.value for kv in status.values}
    for k, v in values.items():  # every value is text a person can read; numbers finite
        assert v and v.lower() not in ("nan", "inf", "-inf", "non-finite"), (k, v)
    return values


def test_diagnostics_over_dds_in_each_state_and_after_requests(no_shm_leak, node_process, ros_node):
    # max_pending 1 and one worker: a second request in flight is refused as busy (WARN at the next report)
    proc = node_process("pcm_l2l_ros.nodes.vision_node", ["--ros-args", "-p", "max_pending:=1", "-p", "workers:=1"])
    node, ex = ros_node
    msgs: list[tuple[float, DiagnosticArray]] = []
    node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: msgs.append((time.monotonic(), m)), 10)

    def next_item(timeout: float = 5.0) -> DiagnosticStatus:
        n = len(_items(msgs))
        assert spin_until(ex, lambda: len(_items(msgs)) > n, timeout), proc.output()
        return _items(msgs)[-1][2]

    # unconfigured: reported, not serving (WARN), nothing about a chip yet
    st = next_item(30.0)
    v = _values(st)
    assert st.level == WARN and "unconfigured" in st.message and v["lifecycle state"] == "unconfigured"
    assert "chip devices" not in v and v["requests served"] == "0"

    bring_up(ex, node, "vision", proc)
    st = next_item()
    v = _values(st)
    assert st.level == OK and st.message == "serving" and v["lifecycle state"] == "active", (st.message, v)
    assert int(v["chip devices"]) == DEVICES_5_AND_20_WAY and v["models"] == "5-way, 20-way"
    writes_programmed = int(v["total writes"])
    assert writes_programmed >= DEVICES_5_AND_20_WAY // 2  # programming wrote (almost) every device
    assert int(v["endurance (writes per device)"]) == 10**8
    assert 1 <= int(v["max writes per device"]) < 1000
    assert float(v["max writes / endurance"]) == pytest.approx(int(v["max writes per device"]) / 1e8, rel=1e-5)
    assert v["drift times prepared (s)"] == "3600" and "request latency p50 (ms)" not in v
    assert v["test-time shifts (px)"] == "0"  # the paper's protocol unless shift_px is set

    client = node.create_client(FewShotClassify, "/pcm_l2l/classify")
    assert spin_until(ex, client.service_is_ready, 30.0)
    req, _ = _request(11, drift=86400.0)
    t0 = time.monotonic()
    res = call_service(ex, client, req, 60.0)
    rtt_ms = 1e3 * (time.monotonic() - t0)
    assert res is not None and res.success, res and res.message
    bad = call_service(ex, client, FewShotClassify.Request(), 30.0)
    assert bad is not None and not bad.success

    t_first = time.monotonic()
    st = next_item()
    while _values(st)["rejected: invalid"] != "1":  # the report may have been made between the two requests
        st = next_item()
    v = _values(st)
    assert st.level == OK, st.message
    assert v["requests served"] == "1" and v["requests rejected"] == "1" and v["requests failed"] == "0"
    assert v["rejected: busy"] == "0" and v["rejected: inactive"] == "0"
    assert int(v["total writes"]) - writes_programmed >= res.devices_written > 0  # the request's readout writes
    assert v["drift time of the last request (s)"] == "86400"
    p50, p99 = float(v["request latency p50 (ms)"]), float(v["request latency p99 (ms)"])
    assert v["request latency samples"] == "1" and p50 == p99  # one sample
    assert 1e3 * res.total_time_s <= p50 + 0.5 and p50 <= rtt_ms + 0.5, (p50, res.total_time_s, rtt_ms)

    # ~1 Hz: the stamps of consecutive reports while serving
    assert spin_until(ex, lambda: len([1 for t, _, _ in _items(msgs) if t >= t_first]) >= 5, 10.0)
    stamps = [m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec for t, m, _ in _items(msgs) if t >= t_first]
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    print(f"/diagnostics gaps: {', '.join(f'{g:.3f}' for g in gaps)} s; latency p50 {p50:.1f} ms")
    assert all(0.8 <= g <= 1.2 for g in gaps) and abs(sum(gaps) / len(gaps) - 1.0) < 0.05, gaps

    # busy refusals: WARN at the next report, OK again at the one after
    reqs = [_request(20 + i, shots=10, queries=10, steps=20)[0] for i in range(4)]  # built first: sent at once
    n_before = len(_items(msgs))
    futures = [client.call_async(r) for r in reqs]
    assert spin_until(ex, lambda: all(f.done() for f in futures), 60.0)
    busy = sum(not f.result().success and f.result().message.startswith("busy") for f in futures)
    assert busy >= 1, [f.result().message for f in futures]

    def reports_since(n: int) -> list[DiagnosticStatus]:
        return [s for _, _, s in _items(msgs)[n:]]

    # the report that first counts all the refusals says WARN (made while the served requests still ran, or after
    # them: the refusals come at once); the one after it is OK again
    def counting() -> int | None:
        return next(
            (i for i, s in enumerate(reports_since(n_before)) if _values(s)["rejected: busy"] == str(busy)), None
        )

    assert spin_until(ex, lambda: counting() is not None, 5.0), proc.output()
    k = counting()
    st = reports_since(n_before)[k]
    v = _values(st)
    assert st.level == WARN and "busy" in st.message and int(v["rejected: busy"]) == busy, (st.message, v)
    assert spin_until(ex, lambda: len(reports_since(n_before)) > k + 1, 5.0), proc.output()
    st = reports_since(n_before)[k + 1]
    assert st.level == OK, st.message

    # inactive: not serving (WARN), refusals counted as inactive
    from pcm_l2l_ros.nodes.lifecycle import LifecycleManager

    manager = LifecycleManager(node, lambda t: ex.spin_once(timeout_sec=t))
    assert manager.change_state("vision", "deactivate", 10.0, proc.alive)
    refused = call_service(ex, client, req, 30.0)
    assert refused is not None and refused.message.startswith("inactive:")
    st = next_item()
    v = _values(st)
    assert st.level == WARN and v["lifecycle state"] == "inactive" and v["rejected: inactive"] == "1"
    manager.close()


def test_status_levels_and_values():
    st = Status("n: x").add("a", 1).add("b", 0.000123456789).add("c", True).add("d", [1.5, 2])
    msg = st.to_msg()
    assert msg.level == OK and msg.message == "OK"
    assert [(kv.key, kv.value) for kv in msg.values] == [
        ("a", "1"),
        ("b", "0.000123457"),
        ("c", "true"),
        ("d", "1.5, 2"),
    ]
    # the level only rises; the message gives the reasons of the highest level
    st = Status("n: x").warn("w").error("e").warn("w2")
    assert st.to_msg().level == ERROR and st.to_msg().message == "e"
    # a non-finite number is never written as nan/inf: it is an ERROR
    for bad in (math.nan, math.inf, -math.inf):
        msg = Status("n: x").add("loss", bad).to_msg()
        assert msg.level == ERROR and msg.values[0].value == "non-finite" and "loss" in msg.message
    assert fmt(float("nan")) == "non-finite"


@pytest.mark.parametrize("max_writes,level", [(0, OK), (79, OK), (80, WARN), (99, WARN), (100, ERROR), (150, ERROR)])
def test_chip_wear_levels(max_writes, level):
    msg = add_chip_wear(Status("n: chip"), devices=10, total_writes=500, max_writes=max_writes, endurance=100).to_msg()
    assert msg.level == level, msg.message
    v = {kv.key: kv.value for kv in msg.values}
    assert v["max writes / endurance"] == fmt(max_writes / 100) and v["endurance (writes per device)"] == "100"
    unlimited = add_chip_wear(Status("n: chip"), 10, 500, 10**12, None).to_msg()
    assert (
        unlimited.level == OK
        and {kv.key: kv.value for kv in unlimited.values}["endurance (writes per device)"] == "unlimited"
    )


def test_latency_window_is_bounded():
    w = LatencyWindow(100)
    assert w.percentiles_ms() is None
    for i in range(1000):
        w.add(i / 1000)  # 0 .. 0.999 s; only the last 100 are kept
    w.add(float("nan"))  # ignored
    assert len(w) == 100
    p50, p99 = w.percentiles_ms()
    assert p50 == pytest.approx(949.5) and p99 == pytest.approx(998.01)
    with pytest.raises(ValueError):
        LatencyWindow(0)
