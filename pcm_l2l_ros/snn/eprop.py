"""The one e-prop update of the trainee's input and recurrent weights, and the e-prop baselines' learning signals.

Natural e-prop (Scherr et al. 2020; e-prop: Bellec et al. 2020): with the training run's pseudo-derivative psi^t
and eligibility traces xbar^t (inputs) and zbar^t (recurrent), and learning signals L^t (from the LSG, or from the
output error for the baselines)

    ΔW_in  = -eta Σ_t xbar^tᵀ (psi^t ⊙ L^t)          (n_in, N)
    ΔW_rec = -eta Σ_t zbar^tᵀ (psi^t ⊙ L^t)          (N, N), diagonal zeroed (no autapses)

computed after the run as one (batched) GEMM per matrix, never inside the time loop. The optional quantisation
rounds ΔW to the nearest multiple of ``quantum`` (round half to even as ``tf.round``: the paper's software
emulation of its PCM update). :func:`chip_update` is the update exactly as the simulated chip applies it
(``PCMArray.reprogram``: rounding to the quantum, nearest or stochastic, and clipping to ±w_max).
"""

from __future__ import annotations

import numpy as np

from pcm_l2l_ros.quantum import quantum_steps, round_to_quantum


def quantise(dw: np.ndarray, quantum: float | None) -> np.ndarray:
    """Round to the nearest multiple of ``quantum`` (None or 0: unchanged); ``quantum.round_to_quantum``."""
    return round_to_quantum(dw, quantum, "nearest")


def chip_update(dw: np.ndarray, W: np.ndarray, w_max: np.ndarray | float | None, quantum: float, rounding: str,
                rng: np.random.Generator | None = None) -> np.ndarray:
    """The change of the weights ``W`` (..., n_in, n_out) that the chip makes for the update ``dw`` (same shape,
    batched over leading axes), as ``PCMArray.reprogram``: ΔW/quantum rounded to whole steps (``rounding``
    ``"nearest"``: half to even; ``"stochastic"``: floor(ΔW/q + u), u ~ U(0, 1) from ``rng``), then
    W + steps·quantum clipped to ±``w_max`` (the weight mapped to full conductance, broadcast against W; None
    = no clipping). Weight units; returns float64."""
    steps = quantum_steps(np.asarray(dw, dtype=np.float64) / quantum, rounding, rng)
    W = np.asarray(W, dtype=np.float64)
    new = W + steps * quantum
    if w_max is not None:
        new = np.clip(new, -np.asarray(w_max, dtype=np.float64), np.asarray(w_max, dtype=np.float64))
    return new - W


def eprop_update(psi: np.ndarray, L: np.ndarray, xbar: np.ndarray, zbar: np.ndarray, eta: float, *,
                 quantum: float | None = None, zero_diag: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """One update per trial: returns (ΔW_in (B, n_in, N), ΔW_rec (B, N, N)).

    psi, zbar: (Bp, T, N); xbar: (Bp, T, n_in); L: (B, T, N); Bp ∈ {1, B} (Bp = 1 when the training run is
    shared by all trials, as with the clock input and common initial weights).
    """
    G = psi * L                                            # (B, T, N)
    dw_in = -eta * np.matmul(np.swapaxes(xbar, 1, 2), G)   # (B, n_in, N)
    dw_rec = -eta * np.matmul(np.swapaxes(zbar, 1, 2), G)  # (B, N, N)
    if zero_diag:
        n = dw_rec.shape[-1]
        dw_rec[:, np.arange(n), np.arange(n)] = 0.0
    return quantise(dw_in, quantum), quantise(dw_rec, quantum)


def feedback_learning_signal(y: np.ndarray, omega_target: np.ndarray, B_fb: np.ndarray) -> np.ndarray:
    """Classic e-prop learning signal L_j^t = Σ_k B_jk (y_k^t - y*_k^t) for the regression loss on omega.

    y (Bp, T, n_out) trainee readout of the training run, omega_target (B, T, n_out), B_fb (N, n_out):
    ``W_out`` for symmetric e-prop, a fixed random matrix for random e-prop (broadcast alignment).
    Only the velocity error is used (it is the instantaneous part of the loss gradient).
    """
    return np.matmul(y - omega_target, B_fb.T)


def random_feedback(W_out: np.ndarray, rng: np.random.Generator | int | None) -> np.ndarray:
    """Random feedback matrix with the shape and overall scale (rms) of ``W_out``."""
    rng = np.random.default_rng(rng)
    scale = float(np.sqrt(np.mean(np.square(W_out))))
    return (rng.standard_normal(W_out.shape) * scale).astype(W_out.dtype)
