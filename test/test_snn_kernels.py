"""Numba kernels (trainee LIF, LSG LIF+ALIF, e-prop update) against a dense NumPy transcription of the equations."""

from __future__ import annotations

import numpy as np
import pytest

from pcm_l2l_ros.snn.eprop import eprop_update, feedback_learning_signal, quantise
from pcm_l2l_ros.snn.lif import run_trainee, trainee_step_kernel
from pcm_l2l_ros.snn.lsg import run_lsg
from pcm_l2l_ros.snn.params import SNNConfig

CFG = SNNConfig(n_trainee=12, n_lsg=10, frac_alif=0.3, T=80)


def ref_trainee(x, W_in, W_rec, W_out, cfg):
    """Dense transcription of the trainee's equations (snn/lif.py), float64, one trial."""
    T, N = x.shape[0], W_rec.shape[0]
    a, k, th = cfg.alpha, cfg.kappa, cfg.v_th_trainee
    Wm = W_rec * (1 - np.eye(N))
    v, z, r, y = np.zeros(N), np.zeros(N), np.zeros(N), np.zeros(W_out.shape[1])
    xb, zb = np.zeros(x.shape[1]), np.zeros(N)
    out = {k_: [] for k_ in ("z", "y", "psi", "xbar", "zbar")}
    for t in range(T):
        xb = a * xb + x[t]
        zb = a * zb + z
        v = a * v + x[t] @ W_in + z @ Wm - th * z
        psi = np.maximum(0, cfg.gamma * (1 - np.abs(v - th) / th)) / th
        psi = np.where(r > 0.1, 0.0, psi)
        z = np.where(r > 0.1, 0.0, (v - th) / th > 0).astype(float)
        r = np.clip(r + cfg.n_ref * z - 1, 0, cfg.n_ref)
        y = k * y + z @ W_out
        for k_, val in zip(("z", "y", "psi", "xbar", "zbar"), (z, y, psi, xb, zb), strict=True):
            out[k_].append(val.copy())
    return {k_: np.array(v_) for k_, v_ in out.items()}


def ref_lsg(x, W_in, W_rec, W_out, beta, cfg):
    T, N = x.shape[0], W_rec.shape[0]
    Wm = W_rec * (1 - np.eye(N))
    v, z, r, b, L = np.zeros(N), np.zeros(N), np.zeros(N), np.zeros(N), np.zeros(W_out.shape[1])
    Ls, zs = [], []
    for t in range(T):
        b = cfg.rho * b + z
        A = cfg.v_th_lsg + beta * b
        v = cfg.alpha * v + x[t] @ W_in + z @ Wm - A * z
        z = np.where(r > 0.1, 0.0, (v - A) / cfg.v_th_lsg > 0).astype(float)
        r = np.clip(r + cfg.n_ref * z - 1, 0, cfg.n_ref)
        L = cfg.kappa * L + z @ W_out
        Ls.append(L.copy())
        zs.append(z.copy())
    return np.array(Ls), np.array(zs)


def _net(rng, n_in, N, n_out, gain):
    W_in = rng.standard_normal((n_in, N)) * gain
    W_rec = rng.standard_normal((N, N)) * gain / np.sqrt(N)
    W_out = rng.standard_normal((N, n_out)) * 0.1
    return W_in, W_rec, W_out


def test_trainee_matches_dense_reference():
    rng = np.random.default_rng(0)
    B, n_in, N = 3, 5, CFG.n_trainee
    x = (rng.random((B, CFG.T, n_in)) < 0.3).astype(float)
    W_in, W_rec, W_out = _net(rng, n_in, N, 2, 1.2)
    W_rec += np.diag(np.full(N, 50.0))  # a huge autapse must have no effect
    run = run_trainee(x, W_in, W_rec, W_out, CFG, record_eprop=True)
    n_spikes = 0
    for b in range(B):
        ref = ref_trainee(x[b], W_in, W_rec, W_out, CFG)
        assert np.array_equal(run.z[b], ref["z"])
        for k in ("y", "psi", "xbar", "zbar"):
            assert np.allclose(getattr(run, k)[b], ref[k], rtol=0, atol=1e-12), k
        n_spikes += ref["z"].sum()
    assert n_spikes > 50  # the test network is active enough to exercise reset and refractoriness


def test_refractory_and_psi():
    rng = np.random.default_rng(1)
    x = np.ones((1, CFG.T, 5))
    W_in, W_rec, W_out = _net(rng, 5, CFG.n_trainee, 2, 3.0)
    run = run_trainee(x, np.abs(W_in), W_rec, W_out, CFG, record_eprop=True)
    z, psi = run.z[0], run.psi[0]
    assert z.sum() > 0
    for j in range(CFG.n_trainee):
        t_sp = np.nonzero(z[:, j])[0]
        assert (np.diff(t_sp) >= CFG.n_ref).all()  # spike, then n_ref - 1 blocked steps
        for t in t_sp:
            assert (psi[t + 1:t + CFG.n_ref, j] == 0).all()  # psi = 0 while refractory


def test_per_trial_weights_and_float32():
    rng = np.random.default_rng(2)
    B, N = 4, CFG.n_trainee
    x = (rng.random((CFG.T, 5)) < 0.3).astype(float)
    W_in, W_rec, W_out = _net(rng, 5, N, 2, 1.2)
    W_in_b = W_in + 0.3 * rng.standard_normal((B, 5, N))
    run = run_trainee(x, W_in_b, np.broadcast_to(W_rec, (B, N, N)), W_out, CFG)
    for b in range(B):
        single = run_trainee(x, W_in_b[b], W_rec, W_out, CFG)
        assert np.array_equal(run.z[b], single.z[0])
    r32 = run_trainee(x.astype(np.float32), W_in.astype(np.float32), W_rec.astype(np.float32),
                      W_out.astype(np.float32), CFG)
    assert r32.y.dtype == np.float32


def test_step_kernel_equals_run_kernel():
    rng = np.random.default_rng(3)
    B, n_in, N = 2, 5, CFG.n_trainee
    x = (rng.random((B, CFG.T, n_in)) < 0.3).astype(float)
    W_in, W_rec, W_out = _net(rng, n_in, N, 2, 1.2)
    full = run_trainee(x, W_in, W_rec, W_out, CFG, record_eprop=True)
    Wm = W_rec * (1 - np.eye(N))
    v, zp, y = np.zeros((B, N)), np.zeros((B, N)), np.zeros((B, 2))
    xbar, zbar, r = np.zeros((B, n_in)), np.zeros((B, N)), np.zeros((B, N), np.int64)
    z_o, y_o, psi_o = np.zeros((B, CFG.T, N)), np.zeros((B, CFG.T, 2)), np.zeros((B, CFG.T, N))
    xb_o, zb_o = np.zeros((B, CFG.T, n_in)), np.zeros((B, CFG.T, N))
    for t in range(CFG.T):
        cur = np.concatenate([x[:, t], zp], axis=1) @ np.concatenate([W_in, Wm])  # as the PCM core's MVM
        trainee_step_kernel(t, cur, np.ascontiguousarray(x[:, t]), v, zp, r, y, xbar, zbar, W_out, CFG.alpha,
                            CFG.kappa, CFG.v_th_trainee, CFG.n_ref, CFG.gamma, True, z_o, y_o, psi_o, xb_o, zb_o)
    assert np.array_equal(z_o, full.z)
    for a, b_ in ((y_o, full.y), (psi_o, full.psi), (xb_o, full.xbar), (zb_o, full.zbar)):
        assert np.allclose(a, b_, rtol=0, atol=1e-12)


def test_lsg_matches_dense_reference():
    rng = np.random.default_rng(4)
    B, n_in, N, n_L = 2, 6, CFG.n_lsg, 4
    x = (rng.random((B, CFG.T, n_in)) < 0.4).astype(float)
    W_in, W_rec, W_out = _net(rng, n_in, N, n_L, 2.0)
    W_in[:, N - 3:] = np.abs(W_in[:, N - 3:]) + 0.5  # drive the ALIF neurons hard
    beta = np.zeros(N)
    beta[N - int(CFG.frac_alif * N):] = CFG.beta
    run = run_lsg(x, W_in, W_rec + np.diag(np.full(N, 50.0)), W_out, CFG, record_spikes=True)
    tot = 0
    for b in range(B):
        L, z = ref_lsg(x[b], W_in, W_rec, W_out, beta, CFG)
        assert np.array_equal(run.z[b], z)
        assert np.allclose(run.L[b], L, rtol=0, atol=1e-12)
        assert np.array_equal(run.counts[b], z.sum(0))
        tot += z[:, N - 3:].sum()
    assert tot > 10  # the ALIF neurons spike, so adaptation is exercised


def test_eprop_update_is_the_sum_over_time():
    rng = np.random.default_rng(5)
    T, n_in, N, B = 30, 3, 6, 2
    psi, xbar, zbar = rng.random((1, T, N)), rng.random((1, T, n_in)), rng.random((1, T, N))
    L = rng.standard_normal((B, T, N))
    dwi, dwr = eprop_update(psi, L, xbar, zbar, 0.5)
    for b in range(B):
        ref_in = -0.5 * sum(np.outer(xbar[0, t], psi[0, t] * L[b, t]) for t in range(T))
        ref_rec = -0.5 * sum(np.outer(zbar[0, t], psi[0, t] * L[b, t]) for t in range(T))
        np.fill_diagonal(ref_rec, 0.0)
        assert np.allclose(dwi[b], ref_in) and np.allclose(dwr[b], ref_rec)
    q = quantise(np.array([0.03, 0.032, -0.1, 0.5 / 16, 1.5 / 16]), 1 / 16)
    assert np.allclose(q, [0.0, 1 / 16, -2 / 16, 0.0, 2 / 16])  # round half to even, as tf.round
    _, dq = eprop_update(psi, L, xbar, zbar, 0.5, quantum=1 / 16)
    assert np.allclose(dq * 16, np.round(dq * 16))


def test_feedback_signal():
    y = np.ones((1, 5, 2))
    tgt = np.zeros((3, 5, 2))
    Bfb = np.arange(8.0).reshape(4, 2)
    L = feedback_learning_signal(y, tgt, Bfb)
    assert L.shape == (3, 5, 4) and np.allclose(L[0, 0], Bfb.sum(1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtypes_compile(dtype):
    rng = np.random.default_rng(6)
    W_in, W_rec, W_out = _net(rng, 53, 10, 12, 1.0)
    run = run_lsg((rng.random((1, 20, 53)) < 0.5).astype(dtype), W_in.astype(dtype), W_rec.astype(dtype),
                  W_out.astype(dtype), CFG)
    assert run.L.dtype == dtype
