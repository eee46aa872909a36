"""Drift compensation of a PCM array (the ``PCMArray`` part that computes the digital factors alpha).

aihwkit ``GlobalDriftCompensation`` semantics (docs/device_model.md §6): right after programming a one-hot
readout (eye) is sent through the same noisy periphery and mean|Y_ref| stored per core (``"global"``) or per
column (``"per_column"``); at every ``drift(t)`` (and after every sparse reprogramming) the readout is
repeated and alpha = mean|Y_ref| / mean|Y(t)| is applied digitally to the outputs.
``drift_reference="exact"`` uses the ideal target weights as the reference instead.
"""

from __future__ import annotations

import numpy as np

from ._kernels import adc_epilogue, dac_quantize
from .periphery import _EMPTY
from .state import ArrayState

__all__ = ["DriftCompensation"]


class DriftCompensation(ArrayState):
    """Readout and compensation factors of ``PCMArray`` (a mixin over the array's state)."""

    def _column_means(self, a: np.ndarray) -> np.ndarray:
        """Mean over the rows of each core, per column, of a (n_in, k) array (all or some columns):
        (row blocks, k). C order, so every column is summed row after row whatever k is."""
        out = np.empty((len(self._row_blocks), a.shape[1]))
        for r, rs in enumerate(self._row_blocks):
            out[r] = np.ascontiguousarray(a[rs]).mean(axis=0)
        return out

    def _group_of(self, colmean: np.ndarray) -> np.ndarray:
        """Per-column means (row blocks, n_out) -> the drift-compensation groups' means: the same array
        (``"per_column"``) or the mean over each core's columns (``"global"``)."""
        if self.cfg.drift_compensation == "per_column":
            return colmean.copy()
        out = np.empty_like(colmean)
        for r in range(len(self._row_blocks)):
            for cb in self._col_blocks:
                out[r, cb] = colmean[r, cb].mean()
        return out

    def _group_mean(self, a: np.ndarray) -> np.ndarray:
        """Mean of a (n_in, n_out) array per core ("global") or per core column ("per_column"),
        returned as (row blocks, n_out)."""
        return self._group_of(self._column_means(a))

    def _group_max(self, a: np.ndarray) -> np.ndarray:
        """Max of a (n_in, n_out) array per core, or per core column with ``scale="per_column"``."""
        out = np.empty((len(self._row_blocks), self.n_out))
        for r, rs in enumerate(self._row_blocks):
            colmax = a[rs].max(axis=0)
            if self.cfg.scale == "per_column":
                out[r] = colmax
            else:
                for cb in self._col_blocks:
                    out[r, cb] = colmax[cb].max()
        return out

    def _readout(self) -> np.ndarray:
        """One-hot (eye) readout of every core through the periphery, normalised units, (n_in, n_out).

        Row i of the eye drives one input at the DAC level v of the input 1 (full scale s), so the
        crossbar gives v * Wn[i] and the read-noise variance v^2 * V[i] exactly (one non-zero term per
        output): the readout is computed elementwise, with the same noise draws and the same float32
        numbers as the MVM of the eye, at a cost of one pass over the matrices instead of a matmul."""
        p = self._periph
        y = np.empty((self.n_in, self.n_out))
        ones = np.ones(self.n_out, np.float32)
        one_hot = np.zeros((1, self._row_blocks[0].stop), np.float32)
        one_hot[0, 0] = 1.0
        xn, xs = np.empty_like(one_hot), np.empty(1, np.float32)
        dac_quantize(one_hot, 0, p.dac_nlev, p.dac_range, p.normalise, xn, xs, _EMPTY)
        v, s = xn[0, 0], xs[0]
        for r, rs in enumerate(self._row_blocks):
            n = rs.stop - rs.start
            mat, var = self._mats[r], _EMPTY if self._vars is None else self._vars[r]
            if v != 1.0:
                mat = v * mat
                var = var if self._vars is None else np.float32(v * v) * var
            noise = self._normals.take((n, self.n_out)) if p.noise else _EMPTY
            out = np.empty((n, self.n_out), np.float32)
            xs = np.full(n, s, np.float32)
            adc_epilogue(mat, noise, var, p.out_noise, p.adc_nlev, p.adc_range, xs, ones, out, False)
            y[rs] = out
        return y

    def _set_reference(self) -> None:
        c = self.cfg
        if c.drift_compensation == "none":
            self._baseline = np.ones((len(self._row_blocks), self.n_out))
            return
        ref = np.abs(self._W_target / self._wmax_full if c.drift_reference == "exact" else self._readout())
        self._baseline = np.maximum(self._group_mean(ref), 1e-4)

    def _update_alpha(self) -> None:
        c = self.cfg
        if c.drift_compensation == "none":
            self._alpha = np.ones((len(self._row_blocks), self.n_out))
        else:
            cur = np.maximum(self._group_mean(np.abs(self._readout())), 1e-4)
            self._alpha = self._baseline / cur
        self._refresh_colf()
