"""Task family of the SNN robot-arm experiment: clock, coordinate code, Brownian trajectories, loss."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pcm_l2l_ros.arm.kinematics import TaskKinematics
from pcm_l2l_ros.snn import tasks
from pcm_l2l_ros.snn.params import SNNConfig, SNNWeights

CFG = SNNConfig()
KIN = TaskKinematics.paper()


def test_config_defaults_and_roundtrip():
    assert CFG.n_lsg_lif == 560 and CFG.n_lsg_alif == 240 and CFG.n_lsg_in == 53
    assert math.isclose(CFG.alpha, math.exp(-1 / 20)) and math.isclose(CFG.rho, math.exp(-1 / 600))
    d = CFG.to_dict()
    d["unknown_key"] = 1
    assert SNNConfig.from_dict(d) == CFG


def test_reference_weights_shapes():
    w = SNNWeights.reference()
    w.check(CFG)
    assert w.W_in_lsg.shape == (53, 800) and w.W_out_trainee.shape == (250, 2)


def test_clock():
    x = tasks.clock_input(CFG)
    assert x.shape == (249, 5)
    assert x.sum(axis=0).tolist() == [5, 5, 5, 5, 5]
    for k in range(5):
        assert np.nonzero(x[:, k])[0].tolist() == [50 * k + d for d in (0, 10, 20, 30, 40)]
    assert x.sum(axis=1).max() == 1


def test_coordinate_code_lsb_first():
    xyz = np.array([[0.0, -1.0, 0.5]])
    bits = tasks.encode_coords(xyz, 16)
    assert bits.shape == (1, 48)
    # 0.0 -> 2^15: only bit 15 set (the last of the first 16 columns)
    assert bits[0, :16].tolist() == [0] * 15 + [1]
    assert bits[0, 16:32].sum() == 0  # -1.0 -> 0
    code = int((0.5 + 1) * 2**15)
    assert bits[0, 32:].tolist() == [(code >> i) & 1 for i in range(16)]
    rng = np.random.default_rng(0)
    c = rng.uniform(-0.99, 0.99, (100, 3))
    assert np.abs(tasks.decode_coords(tasks.encode_coords(c)) - c).max() <= 2.0**-15


def test_hann_window_and_smoothing():
    w = tasks.hann_periodic(120)
    assert math.isclose(w.sum(), 1.0) and w[0] == 0.0 and math.isclose(w[1], w[119])
    const = np.full((1, 249, 2), 0.7)  # a constant is preserved away from the zero-padded front
    sm = tasks.smooth_hann(const, 120)
    assert np.allclose(sm[0, 60:], 0.7)
    assert sm[0, 0, 0] < 0.7


def test_brownian_statistics():
    om = tasks.brownian_omega(2000, np.random.default_rng(1), CFG)
    assert om.shape == (2000, 249, 2) and np.abs(om).max() <= math.pi
    # Raw walk: var at step t = (t+1) * 0.065^2; the smoothing lowers it; the end variance must lie between
    # the smoothed-window prediction and the raw one.
    v_end = om[:, -1].var()
    assert 0.3 * 249 * 0.065**2 < v_end < 249 * 0.065**2


@pytest.mark.parametrize("kin", [TaskKinematics.paper(), TaskKinematics.from_urdf()])
def test_resampled_targets_respect_limits_and_are_consistent(kin):
    tr = tasks.sample_trajectories(60, 3, CFG, kin, mode="resample")
    lim = tasks.joint_limits(kin)
    assert len(tr) == 60 and not tr.hit_limit.any()
    assert (tr.q >= lim[:, 0]).all() and (tr.q <= lim[:, 1]).all()
    assert np.allclose(tr.q, tasks.integrate_angles(tr.omega, CFG))
    assert np.allclose(tr.xyz, kin.xyz(tr.q[..., 0], tr.q[..., 1]))
    # the target is reachable exactly: producing omega* gives zero loss
    assert tasks.task_loss(tr.omega, tr.omega, tr.xyz, kin, CFG) < 1e-20


def test_clip_mode_reproduces_paper_statistics():
    tr = tasks.sample_trajectories(400, 5, CFG, KIN, mode="clip")
    frac = tr.hit_limit.mean()
    # reference: 44 of 90 targets hit a joint limit (binomial sd ~ 0.025 at n=400)
    assert 0.38 < frac < 0.60
    lim = np.deg2rad([130.0, 70.0])
    assert (np.abs(tr.q) <= lim + 1e-12).all()
    # clipped targets are inconsistent: integrating omega* leaves the limits
    assert not np.allclose(tasks.integrate_angles(tr.omega[tr.hit_limit], CFG), tr.q[tr.hit_limit])


def test_seeded_and_lsg_input():
    a = tasks.sample_trajectories(10, 11, CFG, KIN)
    b = tasks.sample_trajectories(10, 11, CFG, KIN)
    assert np.array_equal(a.omega, b.omega)
    x = a.lsg_input(CFG)
    assert x.shape == (10, 249, 53)
    assert np.array_equal(x[0, :, :5], tasks.clock_input(CFG))


def test_joint_code_is_a_smooth_place_code_of_omega_and_q():
    # tuning curves: the curve centred on a value peaks there (1), its neighbours at exp(-1/2); a small change of
    # the value changes the code a little (the binary code's low bits flip at every 2^-15 m)
    c = np.linspace(-1.5, 1.5, 7)
    code = tasks.tuning_curves(c, 7, 1.5)
    np.testing.assert_allclose(np.diag(code), 1.0, rtol=1e-6)
    np.testing.assert_allclose(code[3, [2, 4]], np.exp(-0.5), rtol=1e-6)
    np.testing.assert_allclose(tasks.tuning_curves(c, 7, 1.5, gain=10.0), 10.0 * code, rtol=1e-6)
    assert np.abs(tasks.tuning_curves(0.30, 7, 1.5) - tasks.tuning_curves(0.31, 7, 1.5)).max() < 0.05
    beyond = tasks.tuning_curves(1.8, 7, 1.5)  # past the range: the outermost curve, weaker
    assert 0.5 < beyond[-1] < 1.0 and beyond[-1] > beyond[:-1].max()
    with pytest.raises(ValueError):
        tasks.tuning_curves(0.0, 1, 1.5)
    # the LSG input: clock, binary xyz code, then omega of base and shoulder, then q of base and shoulder
    cfg = CFG.replace(n_joint_code=5)
    assert cfg.n_lsg_in == 53 + 20
    tr = tasks.sample_trajectories(3, 11, CFG, KIN)
    x = tr.lsg_input(cfg)
    assert x.shape == (3, 249, 73)
    np.testing.assert_array_equal(x[..., :53], tr.lsg_input(CFG))
    for j, (v, vmax) in enumerate(
        [(tr.omega[..., 0], 1.5), (tr.omega[..., 1], 1.5), (tr.q[..., 0], 1.6), (tr.q[..., 1], 1.6)]
    ):
        np.testing.assert_allclose(x[..., 53 + 5 * j : 58 + 5 * j], tasks.tuning_curves(v, 5, vmax), rtol=1e-6)
    with pytest.raises(ValueError, match="omega and q"):
        tasks.lsg_input(tr.xyz, cfg)


def test_loss_numpy_and_torch_agree():
    torch = pytest.importorskip("torch")
    tr = tasks.sample_trajectories(4, 2, CFG, KIN)
    y = tr.omega + 0.1 * np.random.default_rng(0).standard_normal(tr.omega.shape)
    ln = tasks.task_loss(y, tr.omega, tr.xyz, KIN, CFG)
    yt = torch.tensor(y, requires_grad=True)
    lt = tasks.task_loss(yt, torch.tensor(tr.omega), torch.tensor(tr.xyz), KIN, CFG)
    lt.backward()
    assert math.isclose(float(lt.detach()), float(ln), rel_tol=1e-10)
    assert yt.grad is not None and torch.isfinite(yt.grad).all()
    per = tasks.task_loss(y, tr.omega, tr.xyz, KIN, CFG, per_trajectory=True)
    assert per.shape == (4,) and math.isclose(per.mean(), ln, rel_tol=1e-12)
    z = np.zeros((2, 10, 3))
    z[:, ::2, 0] = 1  # neuron 0 at 500 Hz, others silent
    reg = tasks.rate_regulariser(z, 20.0, 0.25, CFG)
    assert math.isclose(reg, 0.25 * ((0.5 - 0.02) ** 2 + 2 * 0.02**2))
