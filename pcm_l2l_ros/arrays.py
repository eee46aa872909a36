"""Helpers for code that takes numpy arrays and torch tensors alike (the task's kinematics and loss are evaluated
with numpy in evaluation and differentiated with torch in meta-training). torch is never imported here unless a
tensor was passed in."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["is_torch", "cumsum", "stack", "mean", "work_array", "WORK_MAX_BYTES"]

#: work arrays up to this size are kept between calls (:func:`work_array`)
WORK_MAX_BYTES = 16 << 20


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


def work_array(store: dict, key: Any, shape: tuple[int, ...], max_bytes: int = WORK_MAX_BYTES) -> np.ndarray:
    """A float32 array of ``shape`` (contents undefined) cut from the buffer ``store[key]``, which is grown as needed
    and kept for the next call when the array is at most ``max_bytes``: the same memory every time instead of fresh
    pages (a process with a low mmap threshold, as the vision node, maps and faults in every large array again).
    Larger arrays are new and not kept. ``store`` is the owner's dict (one per chip, one per thread, ...)."""
    size = int(np.prod(shape))
    if 4 * size > max_bytes:
        return np.empty(shape, np.float32)
    buf = store.get(key)
    if buf is None or buf.size < size:
        buf = store[key] = np.empty(size, np.float32)
    return buf[:size].reshape(shape)
