"""The ROS-free one-shot controller behind the controller node: target validation, consistency of the chip
path with the software path, sparse writes, reset, determinism (with the paper's released weights, which are
only ever used for such checks)."""

from __future__ import annotations

import numpy as np
import pytest

from pcm_l2l_ros.snn import tasks
from pcm_l2l_ros.snn.controller import OneShotController, TargetError
from pcm_l2l_ros.snn.params import SNNConfig, SNNWeights

CFG = SNNConfig()


@pytest.fixture(scope="module")
def weights():
    return SNNWeights.reference()


@pytest.fixture(scope="module")
def targets():
    from pcm_l2l_ros.arm.kinematics import TaskKinematics

    return tasks.sample_trajectories(4, 2024, CFG, TaskKinematics.paper())


def _ctl(weights, **kw):
    return OneShotController(weights, CFG, kinematics="paper", **kw)


def test_software_update_learns_the_target(weights, targets):
    c = _ctl(weights, pcm=False)
    for i in range(len(targets)):
        r = c.learn(targets.subset(slice(i, i + 1)), quantize=False)
        assert r.loss_after < 0.5 * r.loss_before
        assert r.omega.shape == (CFG.T, 2) and np.all(np.isfinite(r.omega))


def test_ideal_chip_equals_software_with_the_same_rounding(weights, targets):
    """Every non-ideality off: the chip path (MVM, sparse reprogramming) gives the software result."""
    sw = _ctl(weights, pcm=False, update_rounding="nearest")
    chip = _ctl(weights, pcm=True, pcm_preset="ideal", drift_time_s=0.0, update_rounding="nearest")
    t = targets.subset(slice(0, 1))
    a, b = sw.learn(t, quantize=True), chip.learn(t, quantize=True)
    np.testing.assert_allclose(b.omega, a.omega, atol=2e-4)
    assert b.loss_after == pytest.approx(a.loss_after, rel=1e-3, abs=1e-5)
    n_changed = chip.chip.n_devices  # sparse: a small fraction of the 255 x 250 core is written
    assert 0 < b.devices_written < 0.2 * n_changed


def test_reset_restores_the_meta_trained_weights(weights, targets):
    chip = _ctl(weights, pcm=True, pcm_preset="ideal", drift_time_s=0.0)
    w0 = chip.chip.target_weights().copy()
    r1 = chip.learn(targets.subset(slice(0, 1)))
    assert r1.devices_written > 0 and r1.devices_restored == 0
    assert not np.array_equal(chip.chip.target_weights(), w0)
    r2 = chip.learn(targets.subset(slice(1, 2)))
    assert r2.devices_restored > 0                 # the previous update was undone first
    assert chip.reset() > 0
    np.testing.assert_array_equal(chip.chip.target_weights(), w0)
    assert chip.reset() == 0                      # nothing left to restore: nothing written


def test_same_seed_same_result_on_the_noisy_chip(weights, targets):
    t = targets.subset(slice(2, 3))
    a = _ctl(weights, pcm=True, drift_time_s=3600.0, seed=5).learn(t)
    b = _ctl(weights, pcm=True, drift_time_s=3600.0, seed=5).learn(t)
    np.testing.assert_array_equal(a.omega, b.omega)
    assert a.devices_written == b.devices_written


@pytest.mark.parametrize("names,times,positions,why", [
    (["base_joint", "elbow"], [0.1, 0.2], [[0, 0], [0, 0]], "joint_names"),
    (["base_joint", "shoulder"], [0.1], [[0, 0]], "at least 2"),
    (["base_joint", "shoulder"], [0.1, 0.1], [[0, 0], [0, 0]], "increasing"),
    (["base_joint", "shoulder"], [0.1, 3.0], [[0, 0], [0, 0]], "duration"),
    (["base_joint", "shoulder"], [0.0, 1.0], [[0.5, 0], [0.5, 0]], "home"),
    (["base_joint", "shoulder"], [0.1, 1.0], [[0, 0], [0, 1.5]], "joint limits"),
    (["base_joint", "shoulder"], [0.1, 1.0], [[0, 0], [0, np.nan]], "finite"),
    (["base_joint", "shoulder"], [0.01, 0.02], [[0, 0], [0.5, 0]], "velocity"),
])
def test_bad_targets_are_refused(weights, names, times, positions, why):
    c = OneShotController(weights, CFG, pcm=False, velocity_limits=np.array([1.0, 1.0]))
    with pytest.raises(TargetError, match=why):
        c.target_from_samples(names, times, np.array(positions, dtype=float))


def test_a_target_is_resampled_to_the_trainee_grid(weights):
    c = OneShotController(weights, CFG, pcm=False)
    t = c.target_from_samples(["shoulder", "base_joint"], [1.0, 2.49], np.array([[0.1, 0.2], [0.3, 0.4]]))
    assert t.q.shape == (1, CFG.T, 2)
    np.testing.assert_allclose(t.q[0, 99], [0.2, 0.1])         # t = 1.00 s; columns reordered to base, shoulder
    np.testing.assert_allclose(t.q[0, -1], [0.4, 0.3])
    np.testing.assert_allclose(np.cumsum(t.omega[0], axis=0) * CFG.arm_time_per_step_s, t.q[0], atol=1e-12)
