"""The controller's ExecuteLearned action (``/controller/execute_learned``, issue #17 item 1) over real DDS, with the
controller and the PyBullet sim node in their own processes: a goal with its feedback (counted, >= 10 Hz) and
result, the refusals (nothing learned, bad time scale, another goal running, no arm), the end-effector path
markers, and a cancel mid-motion: the zero velocity command is seen on the velocity topic within 50 ms of the
cancel request, and the arm then holds (joint velocities ~0 in /joint_states)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from action_msgs.msg import GoalStatus  # noqa: E402
from conftest import spin_until  # noqa: E402
from geometry_msgs.msg import PointStamped  # noqa: E402
from pcm_l2l_interfaces.action import ExecuteLearned  # noqa: E402
from pcm_l2l_interfaces.srv import LearnTrajectory  # noqa: E402
from rclpy.action import ActionClient  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from test_controller_node import STARTUP_S, Probe, sim_and_controller, target_msg  # noqa: E402, F401 - a fixture
from visualization_msgs.msg import Marker, MarkerArray  # noqa: E402

R = ExecuteLearned.Result
ACTION = "/controller/execute_learned"
MARKERS = "/controller/path_markers"
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


class Goal:
    """One ExecuteLearned goal sent from the test process: its feedback (with receive times) and result."""

    def __init__(self, probe, client, time_scale: float = 0.0):
        self.probe, self.feedback = probe, []
        fut = client.send_goal_async(
            ExecuteLearned.Goal(time_scale=time_scale),
            feedback_callback=lambda m: self.feedback.append((time.monotonic(), m.feedback)),
        )
        assert spin_until(probe.ex, fut.done, 10.0), "no goal response"
        self.handle = fut.result()
        assert self.handle.accepted  # every goal is accepted; one that cannot run is aborted with a reason
        self._result = self.handle.get_result_async()

    def wait(self, timeout: float = 20.0):
        """(status, result) once the goal has ended."""
        assert spin_until(self.probe.ex, self._result.done, timeout), "the goal did not end"
        r = self._result.result()
        return r.status, r.result


def goal_fresh(probe, client, time_scale: float = 0.0, timeout: float = 2.0) -> Goal:
    """A goal, re-sent while the controller has not seen a fresh /joint_states yet (a loaded machine can hold the
    queued states for longer than the 50 ms watchdog right after a learn), as the clients do."""
    deadline = time.monotonic() + timeout
    while True:
        g = Goal(probe, client, time_scale)
        if not spin_until(probe.ex, g._result.done, 0.3):
            return g  # running
        if g._result.result().result.code != R.STALE_JOINT_STATES or time.monotonic() > deadline:
            return g
        time.sleep(0.05)


def latched_markers(probe) -> list[MarkerArray]:
    """A late subscriber of ~/path_markers (transient local) and what it receives."""
    got: list[MarkerArray] = []
    probe.node.create_subscription(MarkerArray, MARKERS, got.append, LATCHED)
    return got


def by_ns(msg: MarkerArray) -> dict[str, Marker]:
    return {m.ns: m for m in msg.markers}


def points(m: Marker) -> np.ndarray:
    return np.array([[p.x, p.y, p.z] for p in m.points]).reshape(-1, 3)


@pytest.fixture
def arm(sim_and_controller):  # noqa: F811 - the fixture imported from test_controller_node
    """The sim and the controller in their own processes, /joint_states reaching the controller: (ctrl, probe)."""
    _, ctrl, probe, _ = sim_and_controller
    return ctrl, probe


@pytest.fixture
def action_client(ros_node):
    """An ExecuteLearned client on the test's node, destroyed at the end (``destroy_node`` leaves it alone)."""
    client = ActionClient(ros_node[0], ExecuteLearned, ACTION)
    yield client
    client.destroy()


def learn(probe) -> None:
    res = probe.call(probe.learn, LearnTrajectory.Request(target=target_msg(), quantize_update=True))
    assert res.success, res.message


def test_goal_feedback_result_refusals_and_markers(arm, action_client):
    ctrl, probe = arm
    client = action_client
    assert spin_until(probe.ex, client.server_is_ready, STARTUP_S), ctrl.output()
    ee: list[np.ndarray] = []
    probe.node.create_subscription(
        PointStamped, "/sim/end_effector", lambda m: ee.append(np.array([m.point.x, m.point.y, m.point.z])), 50
    )

    status, res = Goal(probe, client).wait()
    assert status == GoalStatus.STATUS_ABORTED and res.code == R.NOT_LEARNED and "learn" in res.message
    for bad in (9.0, 0.1, -1.0, math.nan, math.inf):
        status, res = Goal(probe, client, bad).wait()
        assert status == GoalStatus.STATUS_ABORTED and res.code == R.INVALID_GOAL, (bad, res.message)
        assert "time_scale" in res.message and not res.success

    learn(probe)
    got = latched_markers(probe)  # subscribed after the learn: transient local delivers it
    assert spin_until(probe.ex, lambda: bool(got), 10.0), "no ~/path_markers after the learn"
    target = by_ns(got[-1])["target"]
    assert target.type == Marker.LINE_STRIP and target.action == Marker.ADD and target.header.frame_id == "base"
    tp = points(target)
    assert len(tp) >= 100 and np.all(np.isfinite(tp)), len(tp)
    assert np.linalg.norm(np.diff(tp, axis=0), axis=1).sum() > 0.05  # a path, not a point
    assert by_ns(got[-1])["executed"].action == Marker.DELETE  # nothing executed since the learn

    g = goal_fresh(probe, client)
    assert spin_until(probe.ex, lambda: len(g.feedback) >= 3, 5.0), "no feedback"
    status2, res2 = Goal(probe, client).wait(5.0)  # a second goal while one runs
    assert status2 == GoalStatus.STATUS_ABORTED and res2.code == R.BUSY and "busy" in res2.message
    alias = probe.call(probe.execute, Trigger.Request())  # the Trigger alias: same code path
    assert not alias.success and "busy" in alias.message
    status, res = g.wait()
    assert status == GoalStatus.STATUS_SUCCEEDED, res.message
    assert res.success and res.code == R.SUCCEEDED and res.message
    assert 2.2 <= res.duration_s <= 3.2, res.duration_s  # 249 steps of 0.01 s
    assert res.samples >= 150, res.samples  # one per /joint_states (100 Hz)
    assert all(map(math.isfinite, (res.final_error_m, res.median_error_m)))
    assert 0.0 < res.median_error_m < 0.15 and 0.0 < res.final_error_m < 0.3, (res.median_error_m, res.final_error_m)

    t = np.array([t for t, _ in g.feedback])
    progress = np.array([f.progress for _, f in g.feedback])
    err = np.array([f.tracking_error_m for _, f in g.feedback])
    rate = (len(t) - 1) / (t[-1] - t[0])
    print(
        f"action: {len(t)} feedback messages in {t[-1] - t[0]:.2f} s ({rate:.1f} Hz); tracking error median "
        f"{100 * res.median_error_m:.2f} cm, final {100 * res.final_error_m:.2f} cm over {res.samples} samples"
    )
    assert rate >= 10.0 and len(t) >= 10 * 0.9 * res.duration_s, (len(t), rate)
    assert np.all((progress >= 0) & (progress <= 1)) and np.all(np.diff(progress) >= 0) and progress[-1] >= 0.9
    assert np.all(np.isfinite(err)) and np.all(err >= 0)
    assert abs(np.median(err) - res.median_error_m) < 0.03  # the result summarises the same errors

    # the executed path: published after the execution, ends where the sim's end effector is
    assert spin_until(
        probe.ex,
        lambda: (
            "executed" in by_ns(got[-1])
            and by_ns(got[-1])["executed"].action == Marker.ADD
            and len(by_ns(got[-1])["executed"].points) >= 150
        ),
        5.0,
    )
    xp = points(by_ns(got[-1])["executed"])
    assert np.all(np.isfinite(xp)) and len(xp) <= 1000
    assert spin_until(probe.ex, lambda: len(ee) > 0, 2.0)
    # FK of /joint_states = the sim's EE: the sim publishes both at the same instants, so every executed point is
    # one the EE topic also reported. Compared with the nearest EE sample, not the latest: the arm moves on until
    # the controller's zero command arrives, and under load that lag is tens of ms (centimetres at speed).
    sim_ee = np.array(ee)
    nearest = np.array([np.linalg.norm(sim_ee - p, axis=1).min() for p in xp])
    print(
        f"executed path vs /sim/end_effector: nearest sample {1000 * nearest[-1]:.2f} mm (last point), median "
        f"{1000 * np.median(nearest):.2f} mm"
    )
    assert nearest[-1] < 0.01 and np.median(nearest) < 0.005, (nearest[-1], np.median(nearest), xp[-1], ee[-1])


def test_cancel_mid_motion_zero_command_within_50ms_and_the_arm_holds(arm, action_client):
    ctrl, probe = arm
    client = action_client
    assert spin_until(probe.ex, client.server_is_ready, STARTUP_S), ctrl.output()
    js: list[tuple[float, np.ndarray, np.ndarray]] = []
    probe.node.create_subscription(
        JointState,
        "/joint_states",
        lambda m: js.append((time.monotonic(), np.array(m.position), np.array(m.velocity))),
        100,
    )
    learn(probe)
    g = goal_fresh(probe, client, time_scale=2.0)  # 4.98 s: mid-motion for sure
    assert spin_until(probe.ex, lambda: g.feedback and g.feedback[-1][1].progress >= 0.3, 10.0), g.feedback[-1:]
    moving = max(np.abs(v[:2]).max() for _, _, v in js[-10:])
    assert moving > 0.02, f"the arm is not moving before the cancel ({moving} rad/s)"
    t_cancel = time.monotonic()
    cancel = g.handle.cancel_goal_async()
    n_cmds = len(probe.cmds)

    # the commands recorded before the cancel request are all non-zero-at-once streaming commands; the first
    # all-zero command received after it is the stop
    def zero_seen():
        return any(t >= t_cancel and not any(c) for t, c in probe.cmds[n_cmds:])

    assert spin_until(probe.ex, zero_seen, 2.0), "no zero velocity command after the cancel"
    t_zero = next(t for t, c in probe.cmds[n_cmds:] if t >= t_cancel and not any(c))
    latency = t_zero - t_cancel
    assert spin_until(probe.ex, cancel.done, 5.0)
    assert len(cancel.result().goals_canceling) == 1
    status, res = g.wait(5.0)
    print(
        f"cancel: zero velocity command received {1e3 * latency:.1f} ms after the cancel request "
        f"(progress {g.feedback[-1][1].progress:.2f})"
    )
    assert latency <= 0.050, f"{1e3 * latency:.1f} ms"
    assert status == GoalStatus.STATUS_CANCELED and res.code == R.CANCELED and not res.success
    assert res.samples > 0 and math.isfinite(res.median_error_m)

    spin_until(probe.ex, lambda: False, 0.8)  # the arm holds
    assert not any(any(c) for t, c in probe.cmds if t > t_zero), "a non-zero command after the cancel"
    late = [(p, v) for t, p, v in js if t > t_zero + 0.3]
    assert len(late) >= 20, len(late)
    vel = np.array([v for _, v in late])
    pos = np.array([p for p, _ in late])
    print(
        f"after the cancel: |joint velocity| max {np.abs(vel).max():.2e} rad/s, position drift "
        f"{np.abs(pos[-1] - pos[0]).max():.2e} rad over {len(late)} /joint_states"
    )
    assert np.abs(vel).max() < 0.01 and np.abs(pos[-1] - pos[0]).max() < 0.002
    assert np.abs(pos[-1, :2]).max() > 0.01  # it stopped mid-way, not at home


def test_goal_without_an_arm_is_refused(no_shm_leak, node_process, ros_node, action_client):
    """No /joint_states at all: the goal is aborted with STALE_JOINT_STATES (a client may retry) and nothing moves."""
    node, ex = ros_node
    ctrl = node_process("pcm_l2l_ros.nodes.controller_node")
    probe = Probe(node, ex)
    client = action_client
    probe.wait_ready(ctrl)
    assert spin_until(ex, client.server_is_ready, STARTUP_S), ctrl.output()
    learn(probe)
    status, res = Goal(probe, client).wait()
    assert status == GoalStatus.STATUS_ABORTED and res.code == R.STALE_JOINT_STATES, res.message
    assert "joint_states" in res.message and res.samples == 0
    assert not probe.cmds
