"""Numba kernel of the host's digital post-processing on the chip path (:mod:`pcm_l2l_ros.vision.deploy`)."""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["nonzero_rows", "relu_batchnorm_"]


@njit(cache=True)
def relu_batchnorm_(y, bounds, src, eps):  # pragma: no cover - compiled
    """In place on channels-last activations y (rows, C) float32: ReLU, then BatchNorm without affine with
    per-set statistics. Set g is rows bounds[g]:bounds[g+1] (rows = image x position) and is normalised with
    the mean / biased variance of set src[g] (sums in float64, one pass for the statistics, one to normalise).
    """
    c = y.shape[1]
    g = len(bounds) - 1
    mean = np.zeros((g, c))
    inv_sd = np.zeros((g, c))
    for k in range(g):
        for r in range(bounds[k], bounds[k + 1]):
            for j in range(c):
                v = y[r, j]
                if v < 0.0:
                    v = np.float32(0.0)
                    y[r, j] = v
                mean[k, j] += v
                inv_sd[k, j] += v * v
        n = max(bounds[k + 1] - bounds[k], 1)
        for j in range(c):
            m = mean[k, j] / n
            mean[k, j] = m
            inv_sd[k, j] = 1.0 / np.sqrt(max(inv_sd[k, j] / n - m * m, 0.0) + eps)
    for k in range(g):
        s = src[k]
        for r in range(bounds[k], bounds[k + 1]):
            for j in range(c):
                y[r, j] = np.float32((y[r, j] - mean[s, j]) * inv_sd[s, j])


@njit(cache=True)
def nonzero_rows(x):  # pragma: no cover - compiled
    """Indices (int64, ascending) of the rows of a 2-D array with at least one non-zero element (NaN counts as
    non-zero, -0.0 as zero: ``np.flatnonzero(x.any(axis=1))``), stopping at a row's first non-zero."""
    out = np.empty(x.shape[0], np.int64)
    k = 0
    for r in range(x.shape[0]):
        for j in range(x.shape[1]):
            if x[r, j] != 0.0:
                out[k] = r
                k += 1
                break
    return out[:k]
