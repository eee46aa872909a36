"""The learning-signal generator (LSG): recurrent LIF + ALIF network (LSNN, Bellec et al. 2020), Numba kernel.

The first ``n_lsg_lif`` neurons are LIF (beta = 0), the last ``n_lsg_alif`` ALIF. Per step t (all state 0 at t=0):

    a^t = rho a^{t-1} + z^{t-1};     A^t = v_th + beta a^t                          (adaptive threshold)
    v^t = alpha v^{t-1} + x^t W_in + z^{t-1} (W_rec ⊙ (1 - I)) - A^t z^{t-1}        (reset subtracts A^t)
    z^t = 0 if r^{t-1} > 0 else H((v^t - A^t) / v_th)
    r^t = clip(r^{t-1} + n_ref z^t - 1, 0, n_ref)
    L^t = kappa L^{t-1} + z^t W_out          (learning signals, one per trainee neuron)

The input x^t W_in is computed for all steps at once as one GEMM before the run (the LSG input is dense: about
half of the 48 coordinate bits are 1 at any step, so a BLAS GEMM beats an event-driven loop); the recurrent
input and the readout are event-driven (only neurons that spiked add their weight rows).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from pcm_l2l_ros.snn.params import DEFAULT_CONFIG, SNNConfig


@njit(cache=True, fastmath=False)
def lsg_kernel(cur_in, W_rec, W_out, beta, alpha, rho, kappa, v_th, n_ref, record_spikes, L_out, counts_out, z_out):
    """Run B trials of the LSG in place.

    cur_in (B, T, N): input currents x^t W_in; W_rec (N, N); W_out (N, n_L); beta (N,).
    L_out (B, T, n_L) learning signals; counts_out (B, N) spike counts; z_out (B, T, N) if record_spikes.
    """
    B, T, n_L = L_out.shape
    N = W_rec.shape[0]
    dt = W_rec.dtype
    v = np.zeros(N, dt)
    a = np.zeros(N, dt)
    cur = np.zeros(N, dt)
    thr = np.zeros(N, dt)
    zprev = np.zeros(N, dt)
    L = np.zeros(n_L, dt)
    n_lif = 0  # the LIF neurons come first (beta = 0)
    while n_lif < N and beta[n_lif] == 0.0:
        n_lif += 1
    r = np.zeros(N, np.int64)
    idx = np.zeros(N, np.int64)
    for b in range(B):
        v[:] = 0.0
        a[:] = 0.0
        thr[:] = v_th
        zprev[:] = 0.0
        L[:] = 0.0
        r[:] = 0
        nz = 0
        for t in range(T):
            cur[:] = cur_in[b, t]
            for k in range(nz):
                i = idx[k]
                for j in range(i):
                    cur[j] += W_rec[i, j]
                for j in range(i + 1, N):
                    cur[j] += W_rec[i, j]
            # threshold: v_th for the LIF neurons, v_th + beta a for the ALIF ones (a^t = rho a^{t-1} + z^{t-1})
            for j in range(n_lif, N):
                a[j] = rho * a[j] + zprev[j]
                thr[j] = v_th + beta[j] * a[j]
            for j in range(N):
                v[j] = alpha * v[j] + cur[j] - thr[j] * zprev[j]
                zprev[j] = 0.0
            nz = 0
            for j in range(N):
                if v[j] > thr[j] and r[j] <= 0:  # == H((v - A) / v_th) for v_th > 0, unless refractory
                    zprev[j] = 1.0
                    idx[nz] = j
                    nz += 1
                    r[j] = n_ref
                    counts_out[b, j] += 1
            for j in range(N):
                r[j] = r[j] - 1 if r[j] > 0 else 0
            if record_spikes:
                for j in range(N):
                    z_out[b, t, j] = zprev[j]
            for o in range(n_L):
                L[o] *= kappa
            for k in range(nz):
                i = idx[k]
                for o in range(n_L):
                    L[o] += W_out[i, o]
            for o in range(n_L):
                L_out[b, t, o] = L[o]


@dataclass
class LSGRun:
    """L (B, T, n_trainee) learning signals; counts (B, N) spikes per neuron; z (B, T, N) or None."""

    L: np.ndarray
    counts: np.ndarray
    z: np.ndarray | None = None

    def rate_hz(self, cfg: SNNConfig = DEFAULT_CONFIG) -> float:
        return float(self.counts.mean()) / self.L.shape[1] * 1000.0 / cfg.dt_ms


def run_lsg(x: np.ndarray, W_in: np.ndarray, W_rec: np.ndarray, W_out: np.ndarray,
            cfg: SNNConfig = DEFAULT_CONFIG, *, record_spikes: bool = False, dtype=None,
            chunk: int = 32) -> LSGRun:
    """Run the LSG on x ((B, T, n_lsg_in), e.g. :func:`pcm_l2l_ros.snn.tasks.lsg_input`).

    The input currents x @ W_in are computed ``chunk`` trials at a time (one GEMM each) to bound memory.
    """
    dtype = np.dtype(dtype or W_rec.dtype)
    x = np.asarray(x, dtype=dtype)
    if x.ndim == 2:
        x = x[None]
    B, T, _ = x.shape
    N, n_L = W_out.shape
    L = np.empty((B, T, n_L), dtype)
    counts = np.zeros((B, N), np.int64)
    z = np.zeros((B, T, N), dtype) if record_spikes else np.zeros((0, 0, 0), dtype)
    beta = np.zeros(N, dtype)
    beta[N - int(cfg.frac_alif * N):] = cfg.beta  # the last int(frac*N) neurons are ALIF (official code)
    W_in = np.ascontiguousarray(W_in, dtype=dtype)
    W_rec = np.ascontiguousarray(W_rec, dtype=dtype)
    W_out = np.ascontiguousarray(W_out, dtype=dtype)
    for s in range(0, B, chunk):
        sl = slice(s, min(s + chunk, B))
        cur_in = np.matmul(x[sl], W_in)
        lsg_kernel(cur_in, W_rec, W_out, beta, dtype.type(cfg.alpha), dtype.type(cfg.rho), dtype.type(cfg.kappa),
                   dtype.type(cfg.v_th_lsg), int(cfg.n_ref), bool(record_spikes), L[sl], counts[sl],
                   z[sl] if record_spikes else z)
    return LSGRun(L=L, counts=counts, z=z if record_spikes else None)
