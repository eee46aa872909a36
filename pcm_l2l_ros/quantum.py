"""Rounding of weight updates to the update quantum of the PCM chip: the one home of that operation.

A weight update ΔW is written to the chip in multiples of the update quantum q (the programming resolution;
q = w_max / 16 by default, see docs/device_model.md §7). Two roundings:

* ``"nearest"``: round half to even (``np.rint``; also ``tf.round`` of the paper's code);
* ``"stochastic"``: floor(ΔW/q + u), u ~ U(0, 1), i.e. up with probability equal to the remainder (unbiased).

:func:`round_to_quantum_ste` is the differentiable version for meta-training: rounded in the forward pass,
identity gradient (straight-through estimator).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["ROUNDINGS", "check_rounding", "quantum_steps", "round_to_quantum", "round_to_quantum_ste"]

ROUNDINGS = ("nearest", "stochastic")


def check_rounding(rounding: str) -> None:
    """Raise ValueError unless ``rounding`` is one of :data:`ROUNDINGS`."""
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be 'nearest' or 'stochastic', got {rounding!r}")


def quantum_steps(v: np.ndarray, rounding: str = "nearest", rng: np.random.Generator | None = None) -> np.ndarray:
    """Whole numbers of quanta (float array) for ``v`` = ΔW / q; ``rng`` is required for stochastic rounding."""
    check_rounding(rounding)
    if rounding == "nearest":
        return np.rint(v)
    if rng is None:
        raise ValueError("stochastic rounding needs a numpy Generator")
    return np.floor(v + rng.random(np.shape(v)))


def round_to_quantum(
    dw: np.ndarray, quantum: float | None, rounding: str = "nearest", rng: np.random.Generator | None = None
) -> np.ndarray:
    """ΔW rounded to multiples of ``quantum`` (weight units); ``quantum`` None or 0 returns ``dw`` unchanged."""
    if not quantum:
        return dw
    return quantum_steps(np.asarray(dw) / quantum, rounding, rng) * quantum


def round_to_quantum_ste(dW: Any, quantum: float, rounding: str, generator: Any = None) -> Any:
    """torch: ``dW`` rounded to multiples of ``quantum`` in the forward pass, identity gradient (straight-through).

    ``generator``: a ``torch.Generator`` for the stochastic rounding (None = torch's default generator)."""
    import torch  # noqa: PLC0415 - lazy: the core must import without torch

    check_rounding(rounding)
    x = dW.detach() / quantum
    if rounding == "nearest":
        q = torch.round(x)
    else:
        lo = torch.floor(x)
        q = lo + (torch.rand(x.shape, generator=generator, dtype=x.dtype) < (x - lo)).to(x.dtype)
    return dW + (q * quantum - dW).detach()
