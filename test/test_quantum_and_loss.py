"""The one home of the update rounding (pcm_l2l_ros.quantum) and of the task loss (snn.tasks.loss_terms)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pcm_l2l_ros.arm.kinematics import PAPER_TASK_LIMITS
from pcm_l2l_ros.quantum import quantum_steps, round_to_quantum, round_to_quantum_ste
from pcm_l2l_ros.snn import tasks
from pcm_l2l_ros.snn.eprop import quantise
from pcm_l2l_ros.snn.params import SNNConfig

Q = 1.0 / 16.0


def test_nearest_rounding_is_half_to_even_and_shared_by_eprop():
    dw = np.array([0.5, 1.5, 2.5, -0.5, 0.49, 0.51, -1.51]) * Q
    expect = np.array([0.0, 2.0, 2.0, -0.0, 0.0, 1.0, -2.0]) * Q
    np.testing.assert_array_equal(round_to_quantum(dw, Q), expect)
    np.testing.assert_array_equal(quantise(dw, Q), expect)
    np.testing.assert_array_equal(quantum_steps(dw / Q), expect / Q)
    assert round_to_quantum(dw, None) is dw and round_to_quantum(dw, 0.0) is dw


def test_stochastic_rounding_is_unbiased_on_the_two_neighbours():
    dw = np.full(200_000, 0.3 * Q)
    out = round_to_quantum(dw, Q, "stochastic", np.random.default_rng(0))
    assert set(np.unique(out).tolist()) == {0.0, Q}
    assert abs(out.mean() - 0.3 * Q) < 5 * Q * 0.5 / np.sqrt(dw.size)
    with pytest.raises(ValueError):
        round_to_quantum(dw, Q, "stochastic")  # needs a Generator
    with pytest.raises(ValueError):
        round_to_quantum(dw, Q, "floor")


def test_ste_forward_equals_numpy_nearest():
    x = torch.tensor([0.5, 1.5, 2.5, -0.5, 0.49, 0.51, -1.51], dtype=torch.float64) * Q
    np.testing.assert_array_equal(round_to_quantum_ste(x, Q, "nearest").numpy(), round_to_quantum(x.numpy(), Q))


def test_loss_terms_is_the_task_loss_for_numpy_and_torch():
    cfg = SNNConfig()
    kin = tasks.default_kinematics()
    tr = tasks.sample_trajectories(3, 0, cfg, kin)
    y = tr.omega + 0.1 * np.random.default_rng(1).standard_normal(tr.omega.shape)
    xyz = tasks.forward_xyz(y, kin, cfg)
    loss, mse_w, mse_x = tasks.loss_terms(y, tr.omega, xyz, tr.xyz)
    assert mse_w == pytest.approx(np.mean((y - tr.omega) ** 2)) and mse_x == pytest.approx(np.mean((xyz - tr.xyz) ** 2))
    assert loss == pytest.approx(0.5 * mse_w + 0.5 * mse_x)
    assert tasks.task_loss(y, tr.omega, tr.xyz, kin, cfg) == pytest.approx(loss)
    per = tasks.loss_terms(y, tr.omega, xyz, tr.xyz, per_trajectory=True)[0]
    assert per.shape == (3,) and per.mean() == pytest.approx(loss)
    t = [torch.as_tensor(a) for a in (y, tr.omega, xyz, tr.xyz)]
    assert float(tasks.loss_terms(*t)[0]) == pytest.approx(loss)


def test_task_kinematics_default_and_joint_limits_have_one_home():
    assert tasks.default_kinematics().convention == "urdf"
    assert tasks.default_kinematics(paper=True).convention == "paper"
    np.testing.assert_allclose(tasks.joint_limits(None), np.asarray(PAPER_TASK_LIMITS))
    np.testing.assert_allclose(np.rad2deg(tasks.joint_limits(None)[:, 1]), [130.0, 70.0])
