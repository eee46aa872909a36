"""The trainee: a recurrent LIF network, Numba kernel in the update order of Ortner et al. 2025's code.

Per step t (state v, z, r, y = 0 at t = 0; dt = 1 ms):

    v^t = alpha v^{t-1} + x^t W_in + z^{t-1} (W_rec ⊙ (1 - I)) - v_th z^{t-1}     (no autapses, reset by subtraction)
    z^t = 0 if r^{t-1} > 0 else H(v^t - v_th)                                   (refractory gate; r is an integer)
    r^t = clip(r^{t-1} + n_ref z^t - 1, 0, n_ref)                               (spike, then n_ref-1 blocked steps)
    y^t = kappa y^{t-1} + z^t W_out                                             (leaky readout, rad/s)

and, for e-prop (``record_eprop``):

    psi^t   = max(0, gamma (1 - |v^t - v_th| / v_th)) / v_th,  0 if r^{t-1} > 0   (pseudo-derivative)
    xbar^t  = alpha xbar^{t-1} + x^t                                             (input eligibility trace)
    zbar^t  = alpha zbar^{t-1} + z^{t-1}                                         (recurrent eligibility trace)

The inner loops are event-driven: only active inputs and neurons that spiked at t-1 add their weight rows.
Weights are ``(n_pre, n_post)``. ``W_in`` and ``W_rec`` may be per trajectory (leading batch axis of size B) or
shared (size 1); the input ``x`` likewise (B or 1). The integer refractory counter makes the official
``r > 0.1`` gate the same as ``r > 0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from pcm_l2l_ros.snn.params import DEFAULT_CONFIG, SNNConfig


@njit(cache=True, fastmath=False)
def _lif_update(b, t, cur, v, zprev, r, idx, y, W_out, alpha, kappa, v_th, n_ref, gamma, record_eprop,
                z_out, y_out, psi_out):
    """Membrane, spike, refractory counter, pseudo-derivative and readout of one step for trial b.

    cur (N,) is this step's synaptic current x^t W_in + z^{t-1} W_rec (diagonal excluded). Updates v, zprev
    (-> z^t), r, y in place, writes z_out[b, t], y_out[b, t], psi_out[b, t]; returns the number of spikes,
    whose indices are in idx[:nz].
    """
    N = v.shape[0]
    nz = 0
    for j in range(N):
        v[j] = alpha * v[j] + cur[j] - v_th * zprev[j]
        refractory = r[j] > 0
        spike = (not refractory) and (v[j] > v_th)
        if record_eprop:
            if refractory:
                psi_out[b, t, j] = 0.0
            else:
                h = gamma * (1.0 - abs(v[j] - v_th) / v_th)
                psi_out[b, t, j] = (h if h > 0.0 else 0.0) / v_th
        if spike:
            zprev[j] = 1.0
            z_out[b, t, j] = 1.0
            idx[nz] = j
            nz += 1
            r[j] = n_ref - 1
        else:
            zprev[j] = 0.0
            z_out[b, t, j] = 0.0
            if r[j] > 0:
                r[j] -= 1
    for o in range(y.shape[0]):
        acc = kappa * y[o]
        for k in range(nz):
            acc += W_out[idx[k], o]
        y[o] = acc
        y_out[b, t, o] = acc
    return nz


@njit(cache=True, fastmath=False)
def _trace_update(b, t, x_t, zprev, xbar, zbar, alpha, xbar_out, zbar_out):
    """xbar = alpha xbar + x^t; zbar = alpha zbar + z^{t-1} (call before :func:`_lif_update` of step t)."""
    for i in range(xbar.shape[0]):
        xbar[i] = alpha * xbar[i] + x_t[i]
        xbar_out[b, t, i] = xbar[i]
    for j in range(zbar.shape[0]):
        zbar[j] = alpha * zbar[j] + zprev[j]
        zbar_out[b, t, j] = zbar[j]


@njit(cache=True, fastmath=False)
def trainee_kernel(x, W_in, W_rec, W_out, alpha, kappa, v_th, n_ref, gamma, record_eprop,
                   z_out, y_out, psi_out, xbar_out, zbar_out):
    """Run B trials of the trainee; fills the preallocated outputs in place.

    x (Bx, T, n_in); W_in (Bw, n_in, N); W_rec (Bw, N, N); W_out (N, n_out); Bx, Bw ∈ {1, B}.
    z_out (B, T, N) spikes; y_out (B, T, n_out) readout; if record_eprop: psi_out (B, T, N),
    xbar_out (B, T, n_in), zbar_out (B, T, N) (else they may have size 0).
    """
    B, T, N = z_out.shape
    n_in = W_in.shape[1]
    n_out = W_out.shape[1]
    dt = W_rec.dtype
    v = np.zeros(N, dt)
    cur = np.zeros(N, dt)
    zprev = np.zeros(N, dt)
    xbar = np.zeros(n_in, dt)
    zbar = np.zeros(N, dt)
    y = np.zeros(n_out, dt)
    r = np.zeros(N, np.int64)
    idx = np.zeros(N, np.int64)
    for b in range(B):
        xb = b if x.shape[0] > 1 else 0
        wb = b if W_rec.shape[0] > 1 else 0
        v[:] = 0.0
        zprev[:] = 0.0
        xbar[:] = 0.0
        zbar[:] = 0.0
        y[:] = 0.0
        r[:] = 0
        nz = 0
        for t in range(T):
            # synaptic current, event-driven: active inputs and last step's spikes (no autapse: skip j == i)
            cur[:] = 0.0
            for i in range(n_in):
                xi = x[xb, t, i]
                if xi != 0.0:
                    for j in range(N):
                        cur[j] += xi * W_in[wb, i, j]
            for k in range(nz):
                i = idx[k]
                for j in range(i):
                    cur[j] += W_rec[wb, i, j]
                for j in range(i + 1, N):
                    cur[j] += W_rec[wb, i, j]
            if record_eprop:
                _trace_update(b, t, x[xb, t], zprev, xbar, zbar, alpha, xbar_out, zbar_out)
            nz = _lif_update(b, t, cur, v, zprev, r, idx, y, W_out, alpha, kappa, v_th, n_ref, gamma,
                             record_eprop, z_out, y_out, psi_out)


@njit(cache=True, fastmath=False)
def trainee_step_kernel(t, cur, x_t, v, zprev, r, y, xbar, zbar, W_out, alpha, kappa, v_th, n_ref, gamma,
                        record_eprop, z_out, y_out, psi_out, xbar_out, zbar_out):
    """One step t for B trials whose synaptic currents cur (B, N) were computed elsewhere (e.g. by the PCM
    core's MVM of [x^t, z^{t-1}]). State arrays v, zprev, xbar, zbar, y (B, ·) and r (B, N) int are updated
    in place; x_t (B, n_in) is this step's input (for the input trace)."""
    B, N = cur.shape
    idx = np.zeros(N, np.int64)
    for b in range(B):
        if record_eprop:
            _trace_update(b, t, x_t[b], zprev[b], xbar[b], zbar[b], alpha, xbar_out, zbar_out)
        _lif_update(b, t, cur[b], v[b], zprev[b], r[b], idx, y[b], W_out, alpha, kappa, v_th, n_ref, gamma,
                    record_eprop, z_out, y_out, psi_out)


@dataclass
class TraineeRun:
    """Result of a trainee run. z (B, T, N) spikes; y (B, T, n_out) readout (rad/s); e-prop records or None."""

    z: np.ndarray
    y: np.ndarray
    psi: np.ndarray | None = None
    xbar: np.ndarray | None = None
    zbar: np.ndarray | None = None

    def rate_hz(self, cfg: SNNConfig = DEFAULT_CONFIG) -> float:
        """Mean firing rate over neurons, time and batch, in Hz."""
        return float(self.z.mean()) * 1000.0 / cfg.dt_ms


def _as3(a: np.ndarray, dtype) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=dtype)
    return a[None] if a.ndim == 2 else a


def run_trainee(x: np.ndarray, W_in: np.ndarray, W_rec: np.ndarray, W_out: np.ndarray,
                cfg: SNNConfig = DEFAULT_CONFIG, *, record_eprop: bool = False, batch: int | None = None,
                dtype=None) -> TraineeRun:
    """Run the trainee on x ((T, n_in) shared or (B, T, n_in)) with shared (2-D) or per-trial (3-D) W_in, W_rec.

    The batch size B is the largest leading size among x, W_in, W_rec (or ``batch``).
    """
    dtype = np.dtype(dtype or W_rec.dtype)
    x3, wi3, wr3 = _as3(x, dtype), _as3(W_in, dtype), _as3(W_rec, dtype)
    B = batch or max(x3.shape[0], wi3.shape[0], wr3.shape[0])
    if wi3.shape[0] != wr3.shape[0]:
        wi3 = np.ascontiguousarray(np.broadcast_to(wi3, (B,) + wi3.shape[1:]))
        wr3 = np.ascontiguousarray(np.broadcast_to(wr3, (B,) + wr3.shape[1:]))
    T, n_in, N = x3.shape[1], wi3.shape[1], wr3.shape[1]
    z = np.empty((B, T, N), dtype)
    y = np.empty((B, T, W_out.shape[1]), dtype)
    if record_eprop:
        psi, xbar, zbar = np.empty((B, T, N), dtype), np.empty((B, T, n_in), dtype), np.empty((B, T, N), dtype)
    else:
        psi = xbar = zbar = np.empty((0, 0, 0), dtype)
    trainee_kernel(x3, wi3, wr3, np.ascontiguousarray(W_out, dtype=dtype), dtype.type(cfg.alpha),
                   dtype.type(cfg.kappa), dtype.type(cfg.v_th_trainee), int(cfg.n_ref), dtype.type(cfg.gamma),
                   bool(record_eprop), z, y, psi, xbar, zbar)
    if not record_eprop:
        psi = xbar = zbar = None
    return TraineeRun(z=z, y=y, psi=psi, xbar=xbar, zbar=zbar)
