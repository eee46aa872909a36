"""Test-time shift augmentation of a few-shot task (optional; off in the paper's protocol).

With ``shift_px = r > 0`` every image of a task is also used as its copies translated by (dy, dx) pixels,
max(|dy|, |dx|) <= r (zero-filled, no wrap-around): 9 copies for r = 1, 25 for r = 2, the original first.

* support set: the copies are extra training examples of the same class ("pseudo-shots"): the delta rule
  averages its update over all of them, so the readout learns a class from features of the character at
  several positions rather than from one drawing's exact placement;
* query set: each query is classified on the mean of its copies' features (the readout is linear, so this is
  the mean of the copies' logits).

Both sets keep one BatchNorm statistic each (over all their copies), as without the shifts. Only the readout
is written, as before: the shifts cost conv reads (``copies`` times the images through the chip), not device
writes. Augmenting the support set at test time is common practice for few-shot classifiers on a learned embedding
(the evaluation code of Tian et al. 2020, "Rethinking few-shot image classification: a good embedding is all you
need?", uses five augmented copies of each support image); it is an addition to the readout-only learning of
Ortner et al. (2025), not part of it. Measured gains: docs/vision_training.md §7.
"""

from __future__ import annotations

import numpy as np

MAX_SHIFT_PX = 2  # 25 copies; larger shifts move Omniglot strokes across a quarter of the 28 px frame


def shift_offsets(shift_px: int) -> list[tuple[int, int]]:
    """The (dy, dx) pixel offsets with max(|dy|, |dx|) <= shift_px, (0, 0) first, then row-major."""
    r = check_shift_px(shift_px)
    rest = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if (dy, dx) != (0, 0)]
    return [(0, 0), *rest]


def check_shift_px(shift_px: int) -> int:
    """``shift_px`` as an int in [0, MAX_SHIFT_PX], else ValueError."""
    if isinstance(shift_px, bool) or int(shift_px) != shift_px or not 0 <= shift_px <= MAX_SHIFT_PX:
        raise ValueError(f"shift_px must be an integer in [0, {MAX_SHIFT_PX}], got {shift_px!r}")
    return int(shift_px)


def n_copies(shift_px: int) -> int:
    """Images per original image with ``shift_px``: (2 r + 1)^2."""
    return (2 * check_shift_px(shift_px) + 1) ** 2


def translate(x: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Images x (..., H, W) moved down by dy and right by dx pixels; uncovered pixels are 0 (no ink)."""
    out = np.zeros_like(x)
    h, w = x.shape[-2:]
    src_y, dst_y = slice(max(0, -dy), h - max(0, dy)), slice(max(0, dy), h - max(0, -dy))
    src_x, dst_x = slice(max(0, -dx), w - max(0, dx)), slice(max(0, dx), w - max(0, -dx))
    out[..., dst_y, dst_x] = x[..., src_y, src_x]
    return out


def shifted_set(x: np.ndarray, shift_px: int) -> np.ndarray:
    """An image set x (..., n, H, W) -> (..., copies * n, H, W), copy-major: rows [k n, (k+1) n) are all images
    moved by the k-th offset of :func:`shift_offsets` (the first n rows are x itself)."""
    offsets = shift_offsets(shift_px)
    if len(offsets) == 1:
        return x
    return np.concatenate([translate(x, dy, dx) for dy, dx in offsets], axis=-3)


def random_shifts(x: np.ndarray, max_px: int, rng: np.random.Generator) -> np.ndarray:
    """Training-time augmentation: each image of x (..., H, W) moved by its own (dy, dx), drawn uniformly from
    the offsets of :func:`shift_offsets` (max(|dy|, |dx|) <= max_px, zero-filled); ``max_px = 0`` returns x and
    draws nothing from ``rng`` (a run without augmentation keeps its random stream)."""
    offsets = shift_offsets(max_px)
    if len(offsets) == 1:
        return x
    lead = x.shape[:-2]
    flat = x.reshape(-1, *x.shape[-2:])
    pick = rng.integers(len(offsets), size=flat.shape[0])
    out = np.empty_like(flat)
    for k, (dy, dx) in enumerate(offsets):
        rows = np.flatnonzero(pick == k)
        if rows.size:
            out[rows] = translate(flat[rows], dy, dx)
    return out.reshape(*lead, *x.shape[-2:])


def tile_labels(y: np.ndarray, shift_px: int) -> np.ndarray:
    """Support labels (..., n) -> (..., copies * n), matching :func:`shifted_set`."""
    return np.concatenate([y] * n_copies(shift_px), axis=-1)


def mean_over_copies(h, shift_px: int):
    """Features of a shifted query set (..., copies * n, C) -> the mean over each image's copies (..., n, C);
    numpy arrays or torch tensors."""
    a = n_copies(shift_px)
    if a == 1:
        return h
    n = h.shape[-2] // a
    return h.reshape(*h.shape[:-2], a, n, h.shape[-1]).mean(-3)
