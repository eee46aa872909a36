"""The ROS-free PyBullet wrapper: velocity/position/hold modes, limits, reset, determinism, trajectories."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pybullet")

from pcm_l2l_ros.arm.sim import ArmSim, TrajectoryError, TrajectoryPlan  # noqa: E402
from pcm_l2l_ros.arm.urdf import ee_position  # noqa: E402

TASK = ["base_joint", "shoulder"]


@pytest.fixture
def sim():
    s = ArmSim()
    yield s
    s.close()


def _profile(t):
    return np.array([0.8 * np.sin(2 * np.pi * 0.5 * t), 0.6 * np.cos(2 * np.pi * 0.7 * t)])


def test_velocity_mode_integrates_commands(sim):
    dt = sim.time_step_s
    n = int(1.5 / dt)
    expected = sim.home[:2].copy()
    err = []
    for k in range(n):
        v = _profile(k * dt)
        sim.command_velocity(v, joints=TASK)
        sim.step()
        expected += v * dt
        err.append(sim.q[:2] - expected)
    err = np.array(err)
    np.testing.assert_allclose(sim.reference[:2], expected, atol=1e-12)  # the reference is the exact integral
    # the servo lags the reference by about one step: |v| dt <= 1.6 mrad
    assert np.abs(err).max() < 3e-3, np.abs(err).max(0)
    assert np.abs(sim.q[2:]).max() < 1e-3  # the other joints hold home
    sim.hold()
    sim.step(250)
    assert np.abs(sim.qd).max() < 1e-6  # stopping stops the arm
    q_stop = sim.q
    sim.step(250)
    np.testing.assert_allclose(sim.q, q_stop, atol=1e-6)  # and it stays there under gravity


def test_velocity_is_clamped_and_invalid_input_rejected(sim):
    applied = sim.command_velocity([5.0, -3.0], joints=TASK)
    np.testing.assert_array_equal(applied, [1.0, -1.0])
    sim.step(500)  # 1 s at the limit speed
    np.testing.assert_allclose(sim.q[:2], [1.0, -1.0], atol=5e-3)
    before = sim.reference
    for bad in ([np.nan, 0.0], [np.inf, 0.0], [0.1], [0.1, 0.2, 0.3]):
        with pytest.raises(ValueError):
            sim.command_velocity(bad, joints=TASK)
    np.testing.assert_array_equal(sim.reference, before)
    with pytest.raises(KeyError):
        sim.command_velocity([0.1], joints=["wrist"])


def test_joint_limits_are_enforced(sim):
    sim.command_velocity([1.0, 1.0], joints=TASK)
    sim.step(int(3.0 / sim.time_step_s))  # 3 rad of commanded motion, beyond both limits
    q = sim.q
    assert q[0] <= sim.upper[0] + 1e-3 and q[1] <= sim.upper[1] + 1e-3
    np.testing.assert_allclose(q[:2], sim.upper[:2], atol=5e-3)
    sim.command_position([10.0, -10.0], joints=TASK)  # clamped targets
    sim.step(int(5.0 / sim.time_step_s))
    np.testing.assert_allclose(sim.q[:2], [sim.upper[0], sim.lower[1]], atol=5e-3)
    assert np.all(np.abs(sim.qd) <= sim.velocity_limits + 1e-3)


def test_position_mode_respects_velocity_limit(sim):
    sim.command_position([0.5, -0.4], joints=TASK)
    speeds = []
    for _ in range(int(1.2 / sim.time_step_s)):
        sim.step()
        speeds.append(np.abs(sim.qd[:2]))
    assert np.max(speeds) <= 1.0 + 1e-3  # PyBullet's maxVelocity is a soft constraint (measured 2e-4)
    np.testing.assert_allclose(sim.q[:2], [0.5, -0.4], atol=2e-3)


def test_reset_and_determinism():
    def run(s):
        s.reset()
        out = []
        for k in range(300):
            s.command_velocity(_profile(k * s.time_step_s), joints=TASK)
            s.step()
            out.append(np.concatenate(s.joint_state()))
        return np.array(out)

    with ArmSim() as a, ArmSim() as b:
        ra = run(a)
        rb = run(b)
        ra2 = run(a)  # same instance after reset
        assert a.steps == 300 and a.time_s == pytest.approx(0.6)
        a.reset()
        np.testing.assert_array_equal(a.q, a.home)
        assert a.modes == ("hold",) * 5
    np.testing.assert_array_equal(ra, rb)
    np.testing.assert_array_equal(ra, ra2)


def test_end_effector_matches_fk(sim):
    sim.command_position([0.7, 0.3], joints=TASK)
    sim.step(800)
    np.testing.assert_allclose(sim.ee_position(), ee_position(sim.chain, sim.q), atol=1e-6)


def test_home_parameter_validated():
    with pytest.raises(ValueError):
        ArmSim(home=[0.0, 0.0])
    with pytest.raises(ValueError):
        ArmSim(home=[3.0, 0.0, 0.0, 0.0, 0.0])
    with pytest.raises(ValueError):
        ArmSim(time_step_s=0.0)


def test_gui_without_display_fails_cleanly(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(RuntimeError, match="display"):
        ArmSim(gui=True)


def test_trajectory_plan_interpolation():
    lin = TrajectoryPlan.build([1.0, 2.0], [[1.0], [3.0]], start=[0.0])
    assert lin.sample(0.5)[0] == pytest.approx([0.5]) and lin.sample(0.5)[1] == pytest.approx([1.0])
    assert lin.sample(1.5)[0] == pytest.approx([2.0])
    q, qd = lin.sample(5.0)
    assert q == pytest.approx([3.0]) and qd == pytest.approx([0.0])
    cub = TrajectoryPlan.build([1.0], [[1.0]], velocities=[[0.0]], start=[0.0])
    # cubic Hermite from rest to rest: q(0.5) = 0.5, qd(0.5) = 1.5, zero velocity at the ends
    assert cub.sample(0.5)[0] == pytest.approx([0.5]) and cub.sample(0.5)[1] == pytest.approx([1.5])
    assert cub.sample(0.0)[1] == pytest.approx([0.0]) and cub.sample(0.999999)[1] == pytest.approx([0.0], abs=1e-4)
    for bad in (dict(times=[1.0, 1.0], positions=[[0.0], [1.0]]),
                dict(times=[1.0], positions=[[np.nan]]),
                dict(times=[-1.0], positions=[[0.0]]),
                dict(times=[1.0], positions=[[0.0, 1.0], [1.0, 2.0]]),
                dict(times=[1.0], positions=[[5.0]], lower=[-1.0], upper=[1.0])):
        with pytest.raises(TrajectoryError):
            TrajectoryPlan.build(**bad)


def test_tracks_a_trajectory(sim):
    plan = TrajectoryPlan.build([1.0, 2.0, 3.0], [[0.4, 0.2], [0.8, -0.2], [0.3, 0.0]],
                                velocities=[[0.5, 0.0], [0.0, 0.0], [0.0, 0.0]], start=sim.q[:2])
    err = []
    while sim.time_s < 3.5:
        q, qd = plan.sample(sim.time_s)
        sim.command_position(q, qd, joints=TASK)
        sim.step()
        err.append(sim.q[:2] - plan.sample(sim.time_s)[0])
    rmse = np.sqrt(np.mean(np.square(err)))
    assert rmse < 2e-3, rmse
    np.testing.assert_allclose(sim.q[:2], [0.3, 0.0], atol=1e-3)
