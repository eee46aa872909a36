"""Helpers for code that takes numpy arrays and torch tensors alike (the task's kinematics and loss are evaluated
with numpy in evaluation and differentiated with torch in meta-training). torch is never imported here unless a
tensor was passed in."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["is_torch", "cumsum", "stack", "mean"]


def is_torch(x: Any) -> bool:
    """True for a torch tensor (checked by type, without importing torch)."""
    return type(x).__module__.startswith("torch")


def cumsum(x: Any, axis: int) -> Any:
    """Cumulative sum along ``axis``."""
    return x.cumsum(dim=axis) if is_torch(x) else np.cumsum(x, axis=axis)


def stack(xs: list, axis: int) -> Any:
    """Stack along a new ``axis`` (torch if the first element is a tensor)."""
    if is_torch(xs[0]):
        import torch  # noqa: PLC0415 - only reached with tensors: the core imports without torch

        return torch.stack(xs, dim=axis)
    return np.stack(xs, axis=axis)


def mean(x: Any, axis: int | tuple[int, ...] | None = None) -> Any:
    """Mean over ``axis`` (all elements if None)."""
    if is_torch(x):
        return x.mean() if axis is None else x.mean(dim=axis)
    return np.mean(x) if axis is None else np.mean(x, axis=axis)
