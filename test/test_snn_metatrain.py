"""Meta-training (PyTorch) of natural e-prop: one model, two backends; hand-written BPTT; training loop.

* the torch episode (no grad, float64) reproduces the Numba kernels (spikes, outputs, the one update, the test
  run) on the paper's released weights;
* the hand-written backward of ``surrogate.LIFRun`` equals autograd through a step-by-step reference that uses the
  same surrogate (pseudo-derivative) for the spike; a Heaviside network has no useful finite differences, so the
  finite-difference check is done on the smooth path of the outer loss (the trainee readout W_out through the
  kinematics);
* a few Adam iterations lower the meta-loss on a fixed batch; ``train-snn`` resumes bit-exactly and exports.
"""

from __future__ import annotations

import argparse
import csv

import numpy as np
import pytest
import torch

from pcm_l2l_ros.checkpoint import load_checkpoint
from pcm_l2l_ros.quantum import round_to_quantum_ste
from pcm_l2l_ros.snn import episode, tasks, train_cmd
from pcm_l2l_ros.snn import metatrain as mt
from pcm_l2l_ros.snn.params import WEIGHT_NAMES, SNNConfig, SNNWeights
from pcm_l2l_ros.snn.surrogate import lif_run


# ----------------------------------------------------------------------------------------------- parity
def test_torch_episode_reproduces_numba_kernels_on_reference_weights():
    cfg = SNNConfig()
    w = SNNWeights.reference(np.float64)
    kin = tasks.default_kinematics(paper=True)
    traj = tasks.sample_trajectories(4, 7, cfg, kin, mode="clip")
    res = episode.one_shot(w, traj, cfg, keep_dw=True)
    train = episode.training_run(w, cfg)

    model = mt.NaturalEprop(cfg, w, dtype=torch.float64)
    X = mt.clock_tensor(cfg, torch.float64)
    X_lsg = torch.as_tensor(traj.lsg_input(cfg, np.float64)).transpose(0, 1).contiguous()
    with torch.no_grad():
        out = model.episode(X, X_lsg)

    # training run: identical spikes, readout to float64 rounding
    np.testing.assert_array_equal(out.z_train[:, 0].numpy(), train.z[0])
    np.testing.assert_allclose(out.omega_before[:, 0].numpy(), train.y[0], rtol=0, atol=1e-12)
    # the one update (float64: only summation order differs)
    np.testing.assert_allclose(out.dW_in.numpy(), res.dW_in, rtol=0, atol=1e-12)
    np.testing.assert_allclose(out.dW_rec.numpy(), res.dW_rec, rtol=0, atol=1e-12)
    # test run after the update
    np.testing.assert_allclose(out.omega.transpose(0, 1).numpy(), res.y_after, rtol=0, atol=1e-9)
    assert abs(float(out.z_lsg.mean()) * 1000.0 - res.rate_lsg_hz) < 1e-9
    # and the released weights are in their regime (sanity of the shared setup, not a tight bound)
    assert 15.0 < res.rate_train_hz < 26.0


# ----------------------------------------------------------------------------------------------- gradients
class _SurrogateSpike(torch.autograd.Function):
    """H(v - A) * nr with dz/dv = -dz/dA = psi (the same pseudo-derivative as LIFRun)."""

    @staticmethod
    def forward(ctx, v, A, nr, v_th, gamma):
        ctx.save_for_backward(v, A, nr)
        ctx.c = (v_th, gamma)
        return (v > A).to(v.dtype) * nr

    @staticmethod
    def backward(ctx, g):
        v, A, nr = ctx.saved_tensors
        v_th, gamma = ctx.c
        psi = gamma / v_th * torch.clamp(1 - (v - A).abs() / v_th, min=0) * nr
        return g * psi, -g * psi, None, None, None


def _reference_run(I, W, beta, v_th, alpha, rho, n_ref, gamma):  # noqa: E741
    T, B, N = I.shape
    v = torch.zeros(B, N, dtype=I.dtype)
    z, r, a = torch.zeros_like(v), torch.zeros_like(v), torch.zeros_like(v)
    Z, V = [], []
    for t in range(T):
        a = rho * a + z
        A = v_th + (beta * a if beta is not None else 0 * a)
        rec = torch.bmm(z.unsqueeze(1), W).squeeze(1) if W.dim() == 3 else z @ W
        v = alpha * v + I[t] + rec - A * z
        nr = (r <= 0.1).to(I.dtype)
        z = _SurrogateSpike.apply(v, A, nr, v_th, gamma)
        r = torch.clamp(r + n_ref * z.detach() - 1, 0, n_ref)
        Z.append(z)
        V.append(v)
    return torch.stack(Z), torch.stack(V)


@pytest.mark.parametrize("adaptive", [False, True])
@pytest.mark.parametrize("per_task", [False, True])
def test_lif_backward_equals_autograd_reference(adaptive, per_task):
    g = torch.Generator().manual_seed(3 + 2 * adaptive + per_task)
    T, B, N = 20, 3, 8
    I = (torch.randn(T, B, N, generator=g, dtype=torch.float64) * 0.8 + 0.3).requires_grad_()  # noqa: E741
    shape = (B, N, N) if per_task else (N, N)
    W = (torch.randn(*shape, generator=g, dtype=torch.float64) / 3).requires_grad_()
    beta = torch.tensor([0.0] * 5 + [1.6] * 3, dtype=torch.float64) if adaptive else None
    gz = torch.randn(T, B, N, generator=g, dtype=torch.float64)
    gv = torch.randn(T, B, N, generator=g, dtype=torch.float64)
    args = (beta, 0.6, float(np.exp(-1 / 20)), float(np.exp(-1 / 30)), 5, 0.3)
    Z, V, _ = lif_run(I, W, *args)
    Z2, V2 = _reference_run(I, W, *args)
    assert 10 < int(Z.sum()) < T * B * N / 2          # the network spikes, and is not saturated
    torch.testing.assert_close(Z, Z2, rtol=0, atol=0)
    torch.testing.assert_close(V, V2, rtol=0, atol=1e-12)
    g1 = torch.autograd.grad((Z * gz).sum() + (V * gv).sum(), (I, W))
    g2 = torch.autograd.grad((Z2 * gz).sum() + (V2 * gv).sum(), (I, W))
    for a, b in zip(g1, g2, strict=True):
        assert float(b.abs().max()) > 0.1
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def _tiny(n_trainee=8, n_lsg=10, T=20):
    return SNNConfig(n_trainee=n_trainee, n_lsg=n_lsg, T=T, traj_hann_len=min(120, T // 2))


def test_outer_loss_finite_differences_on_smooth_path():
    """d loss / d W_out_trainee by central differences (spikes do not depend on W_out): N=8, T=20."""
    cfg = _tiny()
    kin = tasks.default_kinematics()
    model = mt.NaturalEprop(cfg, SNNWeights.init_random(cfg, 5), dtype=torch.float64)
    with torch.no_grad():
        model.W_out_trainee.mul_(20.0)       # outputs of order 1 so the kinematics is non-linear
        model.W_in_trainee.mul_(3.0)
    batch = mt.make_batch(3, np.random.default_rng(1), cfg, kin, dtype=torch.float64)
    X = mt.clock_tensor(cfg, torch.float64)
    loss, m, out = mt.outer_loss(model, X, batch, kin)
    assert float(out.z_test.detach().sum()) > 0
    (grad,) = torch.autograd.grad(loss, model.W_out_trainee)
    eps = 1e-6
    num = torch.zeros_like(grad)
    with torch.no_grad():
        for idx in np.ndindex(*grad.shape):
            model.W_out_trainee[idx] += eps
            lp = mt.outer_loss(model, X, batch, kin)[0]
            model.W_out_trainee[idx] -= 2 * eps
            lm = mt.outer_loss(model, X, batch, kin)[0]
            model.W_out_trainee[idx] += eps
            num[idx] = (lp - lm) / (2 * eps)
    assert float(grad.abs().max()) > 1e-4
    torch.testing.assert_close(grad, num, rtol=1e-5, atol=1e-8)


def test_first_and_second_order_gradients_differ_only_through_the_training_run():
    cfg = _tiny(T=60)
    kin = tasks.default_kinematics()
    w = SNNWeights.init_random(cfg, 2)
    batch = mt.make_batch(2, np.random.default_rng(0), cfg, kin, dtype=torch.float64)
    X = mt.clock_tensor(cfg, torch.float64)
    grads = {}
    for so in (True, False):
        model = mt.NaturalEprop(cfg, w, dtype=torch.float64, second_order=so)
        loss, _, _ = mt.outer_loss(model, X, batch, kin)
        grads[so] = dict(zip(WEIGHT_NAMES, torch.autograd.grad(loss, [getattr(model, k) for k in WEIGHT_NAMES]),
                             strict=True))
    # the readout of the test run and the LSG's input to the update do not see the difference
    for k in ("W_out_trainee",):
        torch.testing.assert_close(grads[True][k], grads[False][k])
    assert not torch.allclose(grads[True]["W_rec_trainee"], grads[False]["W_rec_trainee"])


def test_a_few_iterations_lower_the_loss_on_a_fixed_batch():
    cfg = _tiny(n_trainee=40, n_lsg=40, T=249)
    kin = tasks.default_kinematics()
    torch.manual_seed(0)
    model = mt.NaturalEprop(cfg, SNNWeights.init_random(cfg, 0))
    batch = mt.make_batch(4, np.random.default_rng(0), cfg, kin)
    X = mt.clock_tensor(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        total, m, _ = mt.outer_loss(model, X, batch, kin)
        total.backward()
        opt.step()
        losses.append(float(total.detach()))
    assert np.isfinite(losses).all()
    assert np.mean(losses[-3:]) < 0.8 * losses[0], losses


# ----------------------------------------------------------------------------------------------- command
def _args(tmp_path, **kw):
    p = argparse.ArgumentParser()
    train_cmd.add_arguments(p)
    a = p.parse_args(["--run-dir", str(tmp_path / "run"), "--n-trainee", "20", "--n-lsg", "20", "--batch", "2",
                      "--val-size", "4", "--val-every", "2", "--save-every", "2", "--seed", "3",
                      "--export-eval-n", "6"])
    for k, v in kw.items():
        setattr(a, k, v)
    a.command_line = "pcm-l2l train-snn (test)"
    return a


def test_train_snn_resumes_exactly_and_exports(tmp_path):
    assert train_cmd.run(_args(tmp_path / "a", iterations=4)) == 0
    assert train_cmd.run(_args(tmp_path / "b", iterations=2)) == 0
    dest = tmp_path / "models" / "snn_l2l.npz"
    assert train_cmd.run(_args(tmp_path / "b", iterations=4, resume=True, export=dest)) == 0
    sa = torch.load(tmp_path / "a" / "run" / "state.pt", weights_only=False)
    sb = torch.load(tmp_path / "b" / "run" / "state.pt", weights_only=False)
    assert sa["iteration"] == sb["iteration"] == 4
    for k in WEIGHT_NAMES:
        torch.testing.assert_close(sa["model"][k], sb["model"][k], rtol=0, atol=0)
    with open(tmp_path / "b" / "run" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3, 4]
    assert rows[1]["val_loss_after"] and rows[3]["val_ee_median_cm_after"]
    arrays, side = load_checkpoint(dest, kind="snn_l2l")
    assert set(arrays) == set(WEIGHT_NAMES)
    assert side["config"]["n_lsg"] == 20 and side["seed"] == 3
    assert "val_loss_after" in side["metrics"]["training_validation"]
    assert side["metrics"]["n_trajectories"] == 6 and side["metrics"]["after_ee_median_cm"] > 0
    assert side["metrics"]["pcm_after_ee_median_cm"] > 0 and side["metrics"]["pcm_drift_s"] == 3600.0
    assert side["config"]["init"] is None and side["git_hash"]
    w, cfg = SNNWeights.load(dest)
    assert cfg.n_trainee == 20
    # a run started from that checkpoint records where it came from, even when its export overwrites it
    assert train_cmd.run(_args(tmp_path / "c", iterations=2, init=dest, export=dest)) == 0
    _, side2 = load_checkpoint(dest, kind="snn_l2l")
    assert side2["config"]["init"]["command"] == side["command"]
    assert side2["config"]["init"]["git_hash"] == side["git_hash"]


# ----------------------------------------------------------------------------------------------- chip in the loop
def test_quantise_ste_rounds_forward_and_passes_the_gradient_straight_through():
    q = 1.0 / 16.0
    x = torch.tensor([0.01, 0.04, -0.05, 0.2, -0.3], dtype=torch.float64, requires_grad=True)
    y = round_to_quantum_ste(x, q, "nearest")
    torch.testing.assert_close(y.detach(), torch.round(x.detach() / q) * q)
    (y * torch.arange(5.0, dtype=torch.float64)).sum().backward()
    torch.testing.assert_close(x.grad, torch.arange(5.0, dtype=torch.float64))
    # stochastic: on the grid, neighbours of x only, unbiased
    xs = torch.full((200_000,), 0.02, dtype=torch.float64)
    ys = round_to_quantum_ste(xs, q, "stochastic", torch.Generator().manual_seed(0))
    assert set(torch.unique(ys).tolist()) == {0.0, q}
    assert abs(float(ys.mean()) - 0.02) < 5 * q * 0.5 / np.sqrt(len(xs))
    with pytest.raises(ValueError):
        round_to_quantum_ste(xs, q, "floor")


def test_chip_in_the_loop_uses_the_chip_weights_and_the_rounded_update():
    cfg = _tiny(n_trainee=30, n_lsg=20, T=60)
    w = SNNWeights.init_random(cfg, 1)
    kin = tasks.default_kinematics()
    batch = mt.make_batch(3, np.random.default_rng(0), cfg, kin)
    X = mt.clock_tensor(cfg)
    chip = mt.ChipInTheLoop(drift_s=3600.0, seed=4)
    E_in, E_rec = chip.weight_error(torch.as_tensor(w.W_in_trainee), torch.as_tensor(w.W_rec_trainee), cfg)
    rel = float(torch.cat([E_in, E_rec]).std() / np.abs(np.concatenate([w.W_in_trainee, w.W_rec_trainee])).max())
    assert 0.005 < rel < 0.1, rel        # a few % of the column range, as PCM programming + drift
    ideal = mt.ChipInTheLoop(chip_noise=False, update_quantum=0.0)
    soft = mt.NaturalEprop(cfg, w)
    hw0 = mt.NaturalEprop(cfg, w, chip=ideal)
    hw = mt.NaturalEprop(cfg, w, chip=chip)
    with torch.no_grad():
        o_soft, o_0 = soft.episode(X, batch.X_lsg), hw0.episode(X, batch.X_lsg)
        chip.reset()
        o_hw = hw.episode(X, batch.X_lsg)
    torch.testing.assert_close(o_0.omega, o_soft.omega)          # an ideal chip is the software model
    q = chip.update_quantum
    dw = torch.cat([o_hw.dW_in, o_hw.dW_rec], dim=1)
    torch.testing.assert_close(dw, torch.round(dw / q) * q)     # the update is on the 1/16 grid
    assert not torch.equal(o_hw.z_train, o_soft.z_train)        # the chip's weights changed the spikes
    # the gradient still reaches every meta-learned matrix
    chip.reset()
    total, _, _ = mt.outer_loss(hw, X, batch, kin)
    total.backward()
    for k in WEIGHT_NAMES:
        assert getattr(hw, k).grad is not None and torch.isfinite(getattr(hw, k).grad).all(), k
    assert float(hw.W_out_lsg.grad.abs().sum()) > 0


def test_train_snn_chip_in_the_loop_resumes_exactly(tmp_path):
    assert train_cmd.run(_args(tmp_path / "a", iterations=4, chip_in_the_loop=True, chip_every=2)) == 0
    assert train_cmd.run(_args(tmp_path / "b", iterations=2, chip_in_the_loop=True, chip_every=2)) == 0
    assert train_cmd.run(_args(tmp_path / "b", iterations=4, chip_in_the_loop=True, chip_every=2, resume=True)) == 0
    sa = torch.load(tmp_path / "a" / "run" / "state.pt", weights_only=False)
    sb = torch.load(tmp_path / "b" / "run" / "state.pt", weights_only=False)
    for k in WEIGHT_NAMES:
        torch.testing.assert_close(sa["model"][k], sb["model"][k], rtol=0, atol=0)
    with open(tmp_path / "b" / "run" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows[1]["val_chip_loss_after"] and float(rows[3]["val_chip_ee_median_cm_after"]) > 0
    _, side = load_checkpoint(tmp_path / "b" / "run" / "best.npz", kind="snn_l2l")
    assert side["config"]["chip_in_the_loop"]["update_quantum"] == 1.0 / 16.0
    assert side["config"]["chip_in_the_loop"]["every"] == 2


# ----------------------------------------------------------------------------------------------- task families
def test_make_batch_default_is_the_brownian_family_and_mixes_families():
    cfg = SNNConfig()
    kin = tasks.default_kinematics()
    old = tasks.sample_trajectories(6, np.random.default_rng(2), cfg, kin)
    b = mt.make_batch(6, np.random.default_rng(2), cfg, kin)           # what every run drew before --families
    np.testing.assert_array_equal(b.omega.numpy(), old.omega.astype(np.float32))
    m = mt.make_batch(40, np.random.default_rng(2), cfg, kin, families="ellipse:1,stroke:1")
    assert set(m.traj.family) == {"ellipse", "stroke"} and m.X_lsg.shape == (cfg.T, 40, cfg.n_lsg_in)
    np.testing.assert_array_equal(m.X_lsg[:, 3].numpy(), m.traj.subset(slice(3, 4)).lsg_input(cfg)[0])


def test_train_snn_families_option(tmp_path):
    # a family mixture trains, resumes bit-exactly and is recorded in the sidecar
    mix = "brownian:2,lemniscate:1,point_to_point:1"
    assert train_cmd.run(_args(tmp_path / "a", iterations=4, families=mix)) == 0
    assert train_cmd.run(_args(tmp_path / "b", iterations=2, families=mix)) == 0
    assert train_cmd.run(_args(tmp_path / "b", iterations=4, families=mix, resume=True)) == 0
    sa = torch.load(tmp_path / "a" / "run" / "state.pt", weights_only=False)
    sb = torch.load(tmp_path / "b" / "run" / "state.pt", weights_only=False)
    for k in WEIGHT_NAMES:
        torch.testing.assert_close(sa["model"][k], sb["model"][k], rtol=0, atol=0)
    _, side = load_checkpoint(tmp_path / "b" / "run" / "last.npz", kind="snn_l2l")
    assert side["config"]["families"] == {"brownian": 0.5, "lemniscate": 0.25, "point_to_point": 0.25}
    # the validation set covers every family of the mixture; its per-family errors are in the CSV and sidecar
    with open(tmp_path / "b" / "run" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    for fam in ("brownian", "lemniscate", "point_to_point"):
        assert float(rows[1][f"val_ee_median_cm_after_{fam}"]) > 0 and not rows[0][f"val_ee_median_cm_after_{fam}"]
        assert side["metrics"][f"val_ee_median_cm_after_{fam}"] > 0
    # the mixture changes what is learned: other weights than the Brownian-only run of the same seed
    assert train_cmd.run(_args(tmp_path / "c", iterations=4)) == 0
    sc = torch.load(tmp_path / "c" / "run" / "state.pt", weights_only=False)
    assert not torch.equal(sa["model"]["W_out_lsg"], sc["model"]["W_out_lsg"])
    _, side_c = load_checkpoint(tmp_path / "c" / "run" / "last.npz", kind="snn_l2l")
    assert side_c["config"]["families"] == {"brownian": 1.0}
    with open(tmp_path / "c" / "run" / "metrics.csv") as f:
        assert tuple(next(csv.reader(f))) == train_cmd.CSV_FIELDS  # a Brownian-only run's CSV is unchanged
    # bad mixtures and seeds whose streams are evaluation seeds are refused before anything is written
    assert train_cmd.run(_args(tmp_path / "d", iterations=2, families="circle:1")) == 2
    assert train_cmd.run(_args(tmp_path / "e", iterations=2, seed=20261129)) == 2
    assert train_cmd.run(_args(tmp_path / "f", iterations=2, seed=20261129 - 2_000_003)) == 2
    assert not any((tmp_path / d / "run").exists() for d in "def")  # not even an empty run directory


# ----------------------------------------------------------------------------------------------- wider LSG
def test_widen_lsg_keeps_the_learning_signals_and_the_one_shot_result():
    cfg = SNNConfig(n_trainee=30, n_lsg=20)
    w = SNNWeights.init_random(cfg, 4)
    wide = w.widen_lsg(cfg, 50, rng=1)
    cfg50 = cfg.replace(n_lsg=50)
    wide.check(cfg50)
    place = np.r_[0:cfg.n_lsg_lif, cfg50.n_lsg_lif:cfg50.n_lsg_lif + cfg.n_lsg_alif]  # LIF first, ALIF after
    added = np.setdiff1d(np.arange(50), place)
    np.testing.assert_array_equal(wide.W_out_lsg[added], 0.0)       # the new neurons say nothing yet ...
    np.testing.assert_array_equal(wide.W_rec_lsg[added], 0.0)
    assert np.abs(wide.W_in_lsg[:, added]).min(axis=0).max() > 0     # ... but they receive input and spike
    for k in ("W_in_trainee", "W_rec_trainee", "W_out_trainee"):
        np.testing.assert_array_equal(getattr(wide, k), getattr(w, k))
    kin = tasks.default_kinematics()
    batch = mt.make_batch(3, np.random.default_rng(5), cfg, kin, families="ellipse:1,brownian:1")
    X = mt.clock_tensor(cfg)
    with torch.no_grad():
        small = mt.NaturalEprop(cfg, w).episode(X, batch.X_lsg)
        big = mt.NaturalEprop(cfg50, wide).episode(X, batch.X_lsg)
    torch.testing.assert_close(big.z_lsg[..., place], small.z_lsg, rtol=0, atol=0)   # same spikes, old neurons
    torch.testing.assert_close(big.omega, small.omega)                             # same one-shot result
    rate_new = float(big.z_lsg[..., added].mean())
    assert rate_new > 0.1 * float(small.z_lsg.mean())                              # copies of live neurons spike
    with pytest.raises(ValueError, match="smaller"):
        wide.widen_lsg(cfg50, 20)


def test_train_snn_widen_lsg_from_init(tmp_path):
    dest = tmp_path / "models" / "snn_l2l.npz"
    assert train_cmd.run(_args(tmp_path / "a", iterations=2, export=dest)) == 0
    # a wider LSG needs --widen-lsg; without it the shapes are refused with a clear error, nothing is written
    assert train_cmd.run(_args(tmp_path / "b", iterations=2, init=dest, n_lsg=30)) == 2
    assert not (tmp_path / "b" / "run").exists()
    wide = tmp_path / "models" / "wide.npz"
    assert train_cmd.run(_args(tmp_path / "c", iterations=2, init=dest, n_lsg=30, widen_lsg=True, export=wide)) == 0
    _, side = load_checkpoint(wide, kind="snn_l2l")
    assert side["config"]["n_lsg"] == 30 and side["config"]["init"]["path"] == str(dest)
    w, cfg = SNNWeights.load(wide)
    assert w.W_out_lsg.shape == (30, 20) and cfg.n_lsg == 30


# ----------------------------------------------------------------------------------------------- joint code
def test_add_joint_code_keeps_the_one_shot_result_and_then_learns_from_it():
    cfg = SNNConfig(n_trainee=30, n_lsg=20)
    w = SNNWeights.init_random(cfg, 4)
    coded = w.add_joint_code(cfg, 6)
    cfg6 = cfg.replace(n_joint_code=6)
    coded.check(cfg6)
    np.testing.assert_array_equal(coded.W_in_lsg[:cfg.n_lsg_in], w.W_in_lsg)
    np.testing.assert_array_equal(coded.W_in_lsg[cfg.n_lsg_in:], 0.0)
    with pytest.raises(ValueError, match="already"):
        coded.add_joint_code(cfg6, 6)
    kin = tasks.default_kinematics()
    tr = tasks.sample_trajectories(3, 5, cfg, kin)
    a = episode.one_shot(w, tr, cfg)
    b = episode.one_shot(coded, tr, cfg6)
    np.testing.assert_array_equal(a.y_after, b.y_after)          # function-preserving: zero weights
    # the outer gradient reaches the new input rows (they can learn), and a non-zero code changes the result
    batch = mt.batch_from(tr, cfg6)
    model = mt.NaturalEprop(cfg6, coded)
    total, _, _ = mt.outer_loss(model, mt.clock_tensor(cfg6), batch, kin)
    total.backward()
    assert float(model.W_in_lsg.grad[cfg.n_lsg_in:].abs().sum()) > 0
    coded.W_in_lsg[cfg.n_lsg_in:] = np.random.default_rng(0).standard_normal((24, 20)).astype(np.float32)
    assert not np.array_equal(episode.one_shot(coded, tr, cfg6).y_after, a.y_after)


def test_train_snn_joint_code_from_init(tmp_path):
    dest = tmp_path / "models" / "snn_l2l.npz"
    assert train_cmd.run(_args(tmp_path / "a", iterations=2, export=dest)) == 0
    coded = tmp_path / "models" / "coded.npz"
    assert train_cmd.run(_args(tmp_path / "b", iterations=4, init=dest, joint_code=4, export=coded)) == 0
    w, cfg = SNNWeights.load(coded)
    assert cfg.n_joint_code == 4 and w.W_in_lsg.shape == (53 + 16, 20)
    assert np.abs(w.W_in_lsg[53:]).max() > 0                       # the new rows were meta-trained
    w0, _ = SNNWeights.load(dest)
    assert not np.array_equal(w.W_in_lsg[:53], w0.W_in_lsg)
    # a coded checkpoint continues with the same --joint-code; another size is refused, nothing written
    assert train_cmd.run(_args(tmp_path / "c", iterations=2, init=coded, joint_code=4)) == 0
    assert train_cmd.run(_args(tmp_path / "d", iterations=2, init=coded, joint_code=0)) == 2
    assert not (tmp_path / "d" / "run").exists()
    # the gain is part of what the checkpoint computes: another one is refused
    assert train_cmd.run(_args(tmp_path / "e", iterations=2, init=coded, joint_code=4, joint_code_gain=3.0)) == 2
    gained = tmp_path / "models" / "gained.npz"
    assert train_cmd.run(_args(tmp_path / "f", iterations=2, init=dest, joint_code=4, joint_code_gain=3.0,
                               export=gained)) == 0
    assert SNNWeights.load(gained)[1].joint_code_gain == 3.0
    # sizes and gains that make no code are refused before anything is written
    for i, (k, g) in enumerate([(1, 1.0), (-2, 1.0), (4, 0.0), (4, float("nan"))]):
        assert train_cmd.run(_args(tmp_path / f"bad{i}", iterations=2, joint_code=k, joint_code_gain=g)) == 2
        assert not (tmp_path / f"bad{i}" / "run" / "state.pt").exists()
