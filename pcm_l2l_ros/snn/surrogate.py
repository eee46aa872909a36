"""The surrogate-gradient recurrent LIF/ALIF run for meta-training: a ``torch.autograd.Function`` whose forward
loop runs without an autograd graph and whose backward is a hand-written BPTT (adjoint) loop.

Spikes are differentiated with the surrogate gradient ``dz/dv = psi``, the pseudo-derivative
``psi = gamma/v_th * max(0, 1 - |v - A|/v_th)`` (0 while refractory; ``A`` the threshold, adaptive for the LSG's
ALIF neurons: ``dz/dA = -psi``), also through the reset term and the adaptation variable (Bellec et al. 2020).
Checked against finite differences and an autograd reference in ``test/test_snn_metatrain.py``. Used by
:mod:`pcm_l2l_ros.snn.metatrain`.
"""

from __future__ import annotations

import torch

__all__ = ["LIFRun", "lif_run", "leaky_filter_matrix", "leaky_filter"]


class LIFRun(torch.autograd.Function):
    """A whole recurrent LIF/ALIF run (time-major), with a hand-written BPTT backward.

    forward(I, W, beta, v_th, alpha, rho, n_ref, gamma, ref_gate) -> (Z, V, NR)

    * ``I``: (T, B, N) input currents ``x^t W_in`` (already projected);
    * ``W``: (N, N) shared or (B, N, N) per-task recurrent weights, diagonal already masked;
    * ``beta``: (N,) adaptation strength (0 = LIF) or None for an all-LIF network;
    * returns spikes ``Z`` (T, B, N), membrane potentials ``V`` (T, B, N) and the float mask ``NR`` of
      non-refractory steps (``r^{t-1} <= ref_gate``; not differentiable).

    Update order (Ortner): ``a^t = rho a^{t-1} + z^{t-1}``, ``A^t = v_th + beta a^t``,
    ``v^t = alpha v^{t-1} + I^t + z^{t-1} W - A^t z^{t-1}``, ``z^t = H(v^t - A^t) * NR^t``,
    ``r^t = clip(r^{t-1} + n_ref z^t - 1, 0, n_ref)``.
    Surrogate: ``dz^t/dv^t = -dz^t/dA^t = psi^t = gamma/v_th * max(0, 1 - |v^t - A^t|/v_th) * NR^t``.
    """

    @staticmethod
    def forward(ctx, I, W, beta, v_th: float, alpha: float, rho: float, n_ref: int, gamma: float,  # noqa: E741
                ref_gate: float = 0.1):
        T, B, N = I.shape
        per_task = W.dim() == 3
        adaptive = beta is not None
        Z = torch.empty_like(I)
        V = torch.empty_like(I)
        NR = torch.empty_like(I)
        Aall = torch.empty_like(I) if adaptive else None
        v = torch.zeros(B, N, dtype=I.dtype)
        z = torch.zeros(B, N, dtype=I.dtype)
        r = torch.zeros(B, N, dtype=I.dtype)
        a = torch.zeros(B, N, dtype=I.dtype) if adaptive else None
        for t in range(T):
            if adaptive:
                a = rho * a + z
                A = v_th + beta * a
                Aall[t] = A
                reset = A * z
            else:
                A = v_th
                reset = v_th * z
            if per_task:  # event-driven: add the rows of the neurons that spiked (spikes are sparse)
                bi, ii = z.nonzero(as_tuple=True)
                rec = torch.zeros_like(z).index_add_(0, bi, W[bi, ii])
            else:
                rec = z @ W
            v = alpha * v + I[t] + rec - reset
            nr = (r <= ref_gate).to(I.dtype)
            z = (v > A).to(I.dtype) * nr
            r = torch.clamp(r + n_ref * z - 1.0, 0.0, float(n_ref))
            Z[t] = z
            V[t] = v
            NR[t] = nr
        ctx.save_for_backward(W, Z, V, NR, beta, Aall)
        ctx.consts = (v_th, alpha, rho, gamma)
        ctx.mark_non_differentiable(NR)
        return Z, V, NR

    @staticmethod
    def backward(ctx, gZ, gV, _gNR):
        W, Z, V, NR, beta, Aall = ctx.saved_tensors
        v_th, alpha, rho, gamma = ctx.consts
        T, B, N = Z.shape
        per_task = W.dim() == 3
        adaptive = beta is not None
        if gZ is None:
            gZ = torch.zeros_like(Z)
        A = Aall if adaptive else v_th
        psi = (gamma / v_th) * torch.clamp(1.0 - (V - A).abs() / v_th, min=0.0) * NR
        Wt = W.transpose(-1, -2)
        dV = torch.empty_like(Z)
        dv = torch.zeros(B, N, dtype=Z.dtype)
        da = torch.zeros(B, N, dtype=Z.dtype) if adaptive else None
        for t in range(T - 1, -1, -1):
            dz = gZ[t]
            if t + 1 < T:
                back = torch.bmm(dv.unsqueeze(1), Wt).squeeze(1) if per_task else dv @ Wt
                dz = dz + back - (Aall[t + 1] if adaptive else v_th) * dv
                if adaptive:
                    dz = dz + da
            dzs = dz * psi[t]
            dv_new = dzs + alpha * dv
            if gV is not None:
                dv_new = dv_new + gV[t]
            if adaptive:
                zprev = Z[t - 1] if t > 0 else torch.zeros_like(dzs)
                da = rho * da - beta * (dzs + zprev * dv_new)
            dv = dv_new
            dV[t] = dv
        dI = dV if ctx.needs_input_grad[0] else None
        dW = None
        if ctx.needs_input_grad[1]:
            Zp = torch.zeros_like(Z)
            Zp[1:] = Z[:-1]
            dW = torch.einsum("tbi,tbj->bij", Zp, dV) if per_task else Zp.reshape(T * B, N).t() @ dV.reshape(T * B, N)
        return dI, dW, None, None, None, None, None, None, None


def lif_run(I, W, beta, v_th, alpha, rho, n_ref, gamma, ref_gate=0.1):  # noqa: E741
    """Differentiable recurrent run, see :class:`LIFRun`."""
    return LIFRun.apply(I, W, beta, v_th, alpha, rho, n_ref, gamma, ref_gate)


def leaky_filter_matrix(T: int, decay: float, dtype=torch.float32) -> torch.Tensor:
    """(T, T) lower-triangular Toeplitz matrix K with K[t, s] = decay**(t-s), so that K @ x is the
    leaky integral y^t = decay * y^{t-1} + x^t along the (first) time axis."""
    t = torch.arange(T, dtype=torch.float64)
    d = t[:, None] - t[None, :]
    K = torch.where(d >= 0, torch.tensor(decay, dtype=torch.float64) ** d.clamp(min=0), torch.zeros(()))
    return K.to(dtype)


def leaky_filter(K: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Apply the filter matrix K (T, T) along the first axis of x (T, ...)."""
    T = x.shape[0]
    return (K @ x.reshape(T, -1)).reshape(x.shape)
