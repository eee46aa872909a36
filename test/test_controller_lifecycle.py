"""The controller as a managed (lifecycle) node over real DDS (issue #17, item 2): the standard services
``/controller/change_state`` and ``/controller/get_state`` (lifecycle_msgs) drive configure, activate, deactivate,
activate, deactivate, cleanup, configure, activate and shutdown, and every interface answers as documented in each
state: learn, reset, the ``~/execute`` alias, the demonstration and ExecuteLearned goals are refused with
``inactive: ...`` (goals aborted, code INTERRUPTED) unless the node is active. ``deactivate`` mid-execution commands
zero velocity (seen on the velocity topic after the request; in trajectory mode also an empty JointTrajectory) and
aborts the running goal; cleanup stops the learner worker and drops what was learned. The runner brings the
controller up (in-process graph). The test process is the arm driver (``FakeArm``: /joint_states at 100 Hz)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from action_msgs.msg import GoalStatus  # noqa: E402
from conftest import lifecycle_ops, spin_until  # noqa: E402
from pcm_l2l_interfaces.action import ExecuteLearned  # noqa: E402
from pcm_l2l_interfaces.srv import LearnDemonstration, LearnTrajectory  # noqa: E402
from rclpy.action import ActionClient  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from test_controller_action import ACTION, Goal  # noqa: E402
from test_controller_node import STARTUP_S, Probe, target_msg  # noqa: E402
from test_node_safety import FakeArm  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from pcm_l2l_ros.nodes.lifecycle import LifecycleManager  # noqa: E402

CTRL = "pcm_l2l_ros.nodes.controller_node"
REPO = Path(__file__).resolve().parent.parent
R = ExecuteLearned.Result


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


@pytest.fixture
def managed_controller(no_shm_leak, node_process, ros_node):
    """Factory: the controller in its own process (unconfigured), with the probe's clients ready, a fake arm, a
    lifecycle manager and an ExecuteLearned client: ``start(args) -> (proc, probe, manager, action_client)``."""
    node, ex = ros_node
    manager = LifecycleManager(node, lambda t: ex.spin_once(timeout_sec=t))
    made: dict = {}

    def start(args: list[str] | None = None):
        proc = node_process(CTRL, args)
        probe = Probe(node, ex)
        probe.demo_start = node.create_client(Trigger, "/controller/demonstration/start")
        probe.demo_learn = node.create_client(LearnDemonstration, "/controller/demonstration/learn")
        for c in (probe.learn, probe.execute, probe.reset, probe.demo_start, probe.demo_learn):
            assert spin_until(ex, c.service_is_ready, STARTUP_S), proc.output()
        made["arm"] = FakeArm(node)
        made["client"] = client = ActionClient(node, ExecuteLearned, ACTION)
        assert spin_until(ex, client.server_is_ready, STARTUP_S), proc.output()
        return proc, probe, manager, client

    yield start
    if "arm" in made:
        made["arm"].stop()
    if "client" in made:
        made["client"].destroy()
    manager.close()


def _refuses_everything(probe, client, label: str) -> None:
    """Every service and a goal answer at once with 'inactive: ... <label> ...'; nothing is commanded."""
    n_cmds = len(probe.cmds)
    for c, req in (
        (probe.learn, LearnTrajectory.Request(target=target_msg(), quantize_update=True)),
        (probe.execute, Trigger.Request()),
        (probe.reset, Trigger.Request()),
        (probe.demo_start, Trigger.Request()),
        (probe.demo_learn, LearnDemonstration.Request(window_s=0.5)),
    ):
        res = probe.call(c, req, 30.0)
        assert not res.success and res.message.startswith("inactive:") and label in res.message, (c.srv_name, res)
    status, res = Goal(probe, client).wait()
    assert status == GoalStatus.STATUS_ABORTED and res.code == R.INTERRUPTED, (status, res)
    assert res.message.startswith("inactive:") and label in res.message and res.samples == 0, res.message
    assert len(probe.cmds) == n_cmds, "a refused request commanded the arm"


def _learn(probe) -> None:
    res = probe.call(probe.learn, LearnTrajectory.Request(target=target_msg(), quantize_update=True))
    assert res.success, res.message


def _running_goal(probe, client) -> Goal:
    """A goal that runs (re-sent while the controller has not yet seen fresh /joint_states on a loaded machine)."""
    deadline = time.monotonic() + 5.0
    while True:
        g = Goal(probe, client)
        if not spin_until(probe.ex, g._result.done, 0.3):
            return g
        res = g._result.result().result
        assert res.code == R.STALE_JOINT_STATES and time.monotonic() < deadline, res.message
        time.sleep(0.05)


def test_transitions_over_dds_and_the_interfaces_in_each_state(managed_controller):
    start = managed_controller
    proc, probe, manager, client = start(["--ros-args", "-p", "watchdog_timeout_s:=0.5"])
    alive = proc.alive

    state, change = lifecycle_ops(manager, "controller", alive)

    # unconfigured: the interfaces exist and refuse; nothing of the chip is built (no learner thread)
    assert state() == "unconfigured"
    _refuses_everything(probe, client, "unconfigured")
    threads_unconfigured = _threads(proc.pid)
    assert not change("activate") and state() == "unconfigured"

    assert change("configure") and state() == "inactive"
    _refuses_everything(probe, client, "inactive")
    assert _threads(proc.pid) >= threads_unconfigured + 1  # the learner worker
    assert not change("configure")
    assert change("activate") and state() == "active"
    _learn(probe)

    # deactivate mid-execution: zero velocity on the topic after the request, the goal aborted, nothing after
    probe.cmds.clear()
    goal = _running_goal(probe, client)
    assert spin_until(probe.ex, lambda: len(probe.cmds) >= 30, 10.0), len(probe.cmds)
    assert any(any(c) for _, c in probe.cmds), "the execution commanded nothing"
    t_request = time.monotonic()
    assert change("deactivate") and state() == "inactive"
    assert spin_until(
        probe.ex, lambda: any(t >= t_request and not any(c) for t, c in probe.cmds), 0.5
    ), (  # the trajectory's own end is > 0.5 s away
        "no zero velocity command after deactivate"
    )
    t_zero = next(t for t, c in probe.cmds if t >= t_request and not any(c))
    print(f"deactivate mid-execution: zero velocity seen {1e3 * (t_zero - t_request):.1f} ms after the request")
    status, res = goal.wait(10.0)
    assert status == GoalStatus.STATUS_ABORTED and res.code == R.INTERRUPTED, (status, res)
    assert res.message.startswith("inactive:") and "deactivated" in res.message and res.samples > 0, res.message
    spin_until(probe.ex, lambda: False, 0.5)  # the arm's /joint_states keep coming: nothing is commanded now
    assert not any(any(c) for t, c in probe.cmds if t >= t_zero), "commands after the deactivation"
    _refuses_everything(probe, client, "inactive")

    # re-activation: what was learned is still there (nothing rebuilt); the execution runs to its end
    assert change("activate") and state() == "active"
    probe.cmds.clear()
    status, res = _running_goal(probe, client).wait(20.0)
    assert status == GoalStatus.STATUS_SUCCEEDED and res.code == R.SUCCEEDED, res.message
    assert not any(probe.cmds[-1][1])

    # cleanup: the worker stops, the learned trajectory and the chip are dropped
    configured_threads = _threads(proc.pid)
    assert change("deactivate") and change("cleanup") and state() == "unconfigured"
    assert _threads(proc.pid) <= configured_threads - 1
    _refuses_everything(probe, client, "unconfigured")

    # the whole cycle again: a fresh chip (nothing learned), then shutdown from active
    assert change("configure") and change("activate") and state() == "active"
    status, res = Goal(probe, client).wait()
    assert status == GoalStatus.STATUS_ABORTED and res.code == R.NOT_LEARNED, res.message
    _learn(probe)
    assert change("shutdown") and state() == "finalized"
    _refuses_everything(probe, client, "finalized")
    assert not change("configure") and state() == "finalized"
    assert proc.alive()  # the process lives on until SIGTERM (the fixture checks that it then exits 0)


def test_deactivate_in_trajectory_mode_sends_an_empty_trajectory(managed_controller):
    proc, probe, manager, client = managed_controller(
        ["--ros-args", "-p", "command_mode:=trajectory", "-p", "watchdog_timeout_s:=0.5"]
    )
    trajs: list[tuple[float, JointTrajectory]] = []
    probe.node.create_subscription(
        JointTrajectory,
        "/joint_trajectory_controller/joint_trajectory",
        lambda m: trajs.append((time.monotonic(), m)),
        10,
    )
    assert manager.change_state("controller", "configure", 60.0, proc.alive)
    assert manager.change_state("controller", "activate", 10.0, proc.alive)
    _learn(probe)
    goal = _running_goal(probe, client)
    assert spin_until(probe.ex, lambda: len(trajs) >= 1 and len(trajs[0][1].points) > 0, 5.0)
    t_request = time.monotonic()
    assert manager.change_state("controller", "deactivate", 10.0, proc.alive)
    assert spin_until(probe.ex, lambda: any(t >= t_request and not m.points for t, m in trajs), 2.0), (
        "no empty JointTrajectory after deactivate"
    )
    assert spin_until(probe.ex, lambda: any(t >= t_request and not any(c) for t, c in probe.cmds), 2.0)
    status, res = goal.wait(10.0)
    assert status == GoalStatus.STATUS_ABORTED and res.code == R.INTERRUPTED and "deactivated" in res.message


def test_the_runner_brings_the_controller_up_to_active(no_shm_leak, ros_domain):
    """What `pcm-l2l demo` relies on (the in-process graph; the subprocess graph: test_demo_e2e.py)."""
    from pcm_l2l_ros.graph import load_graph
    from pcm_l2l_ros.nodes.runner import InProcessGraph

    spec = next(n for n in load_graph(REPO / "config" / "demo.yaml") if n.name == "controller")
    assert spec.lifecycle
    with InProcessGraph([dataclasses.replace(spec)], REPO / "config") as graph:
        ctrl = graph.made["controller"]
        assert ctrl.lifecycle_state == "active" and ctrl.learner is not None and ctrl._inactive() is None
        assert np.isfinite(ctrl.learner.drift_time_s)
    assert ctrl.lifecycle_state == "finalized" and ctrl.learner is None and ctrl.pool is None
