"""Teach by demonstration over DDS against the real PyBullet sim (its own process) and the controller node (its
own process): a figure-eight replayed on the arm is recorded from /joint_states and learned in one update; bad
requests are refused with their reason (no recording, a window beyond 2.49 s, the arm away from home)."""

from __future__ import annotations

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from conftest import bring_up, call_service, spin_until  # noqa: E402
from pcm_l2l_interfaces.srv import LearnDemonstration  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from pcm_l2l_ros.nodes.common import joint_trajectory  # noqa: E402

STARTUP_S = 90.0
MOTION_S = 1.8  # the demonstrated figure-eight lasts 1.8 s, from home back to home
DT = 0.01


def figure_eight(t: np.ndarray) -> np.ndarray:
    """(base, shoulder) in rad of one figure-eight loop from home, t in s (0 outside [0, MOTION_S])."""
    s = 2 * np.pi * np.clip(t, 0.0, MOTION_S) / MOTION_S
    return np.stack([0.2 * np.sin(s), 0.12 * np.sin(2 * s)], axis=-1)


def trajectory_msg(q_fn, duration_s: float, start_in_s: float, node) -> JointTrajectory:
    """A position JointTrajectory for the sim, stamped to start ``start_in_s`` from now (the sim waits for it)."""
    times = np.arange(DT, duration_s + 1e-9, DT)
    msg = joint_trajectory(["base_joint", "shoulder"], times, [q_fn(t) for t in times])
    msg.header.stamp = (node.get_clock().now() + rclpy.duration.Duration(seconds=start_in_s)).to_msg()
    return msg


@pytest.fixture
def arm(no_shm_leak, node_process, ros_node):
    sim = node_process("pcm_l2l_ros.nodes.sim_node")
    ctrl = node_process("pcm_l2l_ros.nodes.controller_node")
    node, ex = ros_node
    bring_up(ex, node, "controller", ctrl, STARTUP_S)  # a managed node: configure + activate over DDS
    start = node.create_client(Trigger, "/controller/demonstration/start")
    learn = node.create_client(LearnDemonstration, "/controller/demonstration/learn")
    reset = node.create_client(Trigger, "/sim/reset")
    traj = node.create_publisher(JointTrajectory, "/joint_trajectory_controller/joint_trajectory", 10)
    seen = {"n": 0, "q": None}

    def on_js(m: JointState):
        seen["n"] += 1
        seen["q"] = dict(zip(m.name, m.position, strict=False))

    node.create_subscription(JointState, "/joint_states", on_js, qos_profile_sensor_data)
    for c in (start, learn, reset):
        assert spin_until(ex, c.service_is_ready, STARTUP_S), ctrl.output() + sim.output()
    assert spin_until(ex, lambda: seen["n"] > 20, STARTUP_S), sim.output()
    assert spin_until(ex, lambda: traj.get_subscription_count() > 0, 10.0)

    def call(client, req, timeout=30.0):
        res = call_service(ex, client, req, timeout)
        assert res is not None, f"no answer from {client.srv_name}\n{ctrl.output()}"
        return res

    # the controller's own /joint_states subscription may match later than ours: until start is not refused for it
    def sees_arm():
        res = call(start, Trigger.Request())
        return res.success or "no live /joint_states" not in res.message

    assert spin_until(ex, sees_arm, 30.0), ctrl.output()
    # the probe started a recording: end it (learned, or refused when it is still too short) so that every test
    # starts with none running, however fast /joint_states filled it
    call(learn, LearnDemonstration.Request(window_s=0.0))
    return node, ex, call, start, learn, reset, traj, seen, ctrl


def test_a_replayed_figure_eight_is_recorded_and_learned(arm):
    node, ex, call, start, learn, reset, traj, seen, ctrl = arm
    res = call(start, Trigger.Request())
    assert res.success, res.message
    traj.publish(trajectory_msg(figure_eight, MOTION_S, 0.4, node))  # the "user" moves the arm
    time.sleep(0.1)
    spin_until(ex, lambda: False, 2.8)  # the 2.49 s window fills
    res = call(learn, LearnDemonstration.Request(window_s=0.0, quantize_update=True))
    assert res.success, res.message + ctrl.output()
    assert res.ended_by == "window" and 2.4 < res.recorded_s <= 2.49 + 1e-6
    assert res.samples > 150  # the sim publishes at 100 Hz
    t = np.array([p.time_from_start.sec + 1e-9 * p.time_from_start.nanosec for p in res.demonstration.points])
    q = np.array([list(p.positions) for p in res.demonstration.points])
    assert list(res.demonstration.joint_names) == ["base_joint", "shoulder"] and t[0] == 0.0
    assert np.all(np.diff(t) > 0) and q.shape == (res.samples, 2)
    # the recording is the figure-eight, shifted by when it started: best lag within the recording
    lags = np.arange(0.0, 0.8, 0.005)
    err = [np.sqrt(np.mean((q - figure_eight(t - lag)) ** 2)) for lag in lags]
    assert min(err) < 0.01, f"recording vs demonstrated shape: rms {min(err):.4f} rad at lag {lags[np.argmin(err)]}"
    assert np.abs(q[:, 0]).max() == pytest.approx(0.2, abs=0.02)  # the whole loop is in it
    assert res.loss_after < res.loss_before and res.devices_written > 0

    # ... and a fixed window at rest: recorded and learned in one call
    res = call(learn, LearnDemonstration.Request(window_s=0.5, quantize_update=True))
    assert res.success and res.ended_by == "window", res.message
    assert (
        0.45 < res.recorded_s <= 0.5 + 1e-6
        and np.abs(np.array([list(p.positions) for p in res.demonstration.points])).max() < 0.01
    )


def test_bad_demonstration_requests_are_refused(arm):
    node, ex, call, start, learn, reset, traj, seen, ctrl = arm
    res = call(learn, LearnDemonstration.Request(window_s=0.0))
    assert not res.success and "no demonstration" in res.message  # stop without a start
    for bad in (3.0, -1.0, float("nan")):
        res = call(learn, LearnDemonstration.Request(window_s=bad))
        assert not res.success and "window_s" in res.message
    # the arm away from home: neither a start nor a window may record
    traj.publish(trajectory_msg(lambda t: np.array([0.3 * min(t / 0.5, 1.0), 0.0]), 0.6, 0.0, node))
    assert spin_until(ex, lambda: seen["q"] is not None and seen["q"]["base_joint"] > 0.29, 10.0)
    res = call(start, Trigger.Request())
    assert not res.success and "not at home" in res.message
    res = call(learn, LearnDemonstration.Request(window_s=1.0))
    assert not res.success and "not at home" in res.message
    # home again (sim reset): a start is accepted again
    assert call(reset, Trigger.Request()).success
    assert spin_until(ex, lambda: abs(seen["q"]["base_joint"]) < 0.01, 10.0)
    assert spin_until(ex, lambda: call(start, Trigger.Request()).success, 5.0)


def test_teach_cli_records_learns_and_writes_a_csv_that_learn_reads(arm, tmp_path):
    """`pcm-l2l teach --window 1.0 --json --csv F` against the running controller; the CSV goes back through
    `pcm-l2l learn --csv F` (the format is the learn client's)."""
    import json

    from test_client_cli import pcm_l2l

    node, ex, call, start, learn, reset, traj, seen, ctrl = arm
    csv_path = tmp_path / "demonstration.csv"

    def spin():
        ex.spin_once(timeout_sec=0.02)

    r = pcm_l2l("teach", "--window", "1.0", "--json", "--csv", str(csv_path), spin=spin)
    assert r.returncode == 0, r.stderr + ctrl.output()[-2000:]
    out = json.loads(r.stdout)
    assert out["success"] and out["ended_by"] == "window" and 0.95 < out["recorded_s"] <= 1.0 + 1e-6
    assert out["samples"] >= 60 and out["devices_written"] > 0
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "time_s,base_joint,shoulder" and len(lines) == out["samples"] + 1
    r = pcm_l2l("learn", "--csv", str(csv_path), "--json", spin=spin)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["points"] == out["samples"]
