"""From the device state to what the MVM reads (the ``PCMArray`` part that rebuilds its matrices).

Per weight: the drifted conductances g(t) = g_prog ((age + t0) / t0)^-nu of its units (with the frozen read-noise
snapshot), the normalised weight Wn = (sum G+ - sum G-) / G_tot and the per-MVM read-noise variance V; stored
per core as float32 matrices. Everything is elementwise per weight, so a sparse reprogramming recomputes only
the weights it wrote (``_rebuild_at``) and gets exactly the numbers of a full ``_rebuild``.
"""

from __future__ import annotations

import numpy as np
import torch

from . import _device_kernels as K
from .state import ArrayState

__all__ = ["ConductanceState"]

_NO_G = np.empty((0, 0))  # the kernel's "do not return the conductances"
_NO_VAR = np.empty(0)     # ... "no variances" / "no re-encoding factor"


class ConductanceState(ArrayState):
    """Conductances, normalised matrices and read-noise variances of ``PCMArray`` (a mixin over its state)."""

    def conductances(self) -> np.ndarray:
        """Current unit conductances (2, units, n_in, n_out), µS, with drift and the frozen read-noise
        snapshot (drawn by ``drift()``; right after ``program()`` there is none, as in aihwkit)."""
        g, _, _ = self._device_state(conductances=True)
        assert g is not None
        return g

    def _prog_state(self) -> tuple[np.ndarray, np.ndarray]:
        """(programmed conductances, factor) the drift acts on; with ``drift_reencode`` the programmed
        weights re-encoded as a fresh pair scaled to max|W_prog| per group, and the factor that converts
        their difference back (normalised weight = factor * (sum G+ - sum G-) / G_tot)."""
        if not self.cfg.drift_reencode:
            return self._g_prog, np.ones((self.n_in, self.n_out))
        wn = (self._g_prog[0].sum(axis=0) - self._g_prog[1].sum(axis=0)) / self.g_tot_uS
        m = self._expand_rows(np.maximum(self._group_max(np.abs(wn)), 1e-7))
        g_unit = self.model.g_max_uS
        gp = np.clip(wn / m, 0.0, 1.0) * g_unit
        gm = np.clip(-wn / m, 0.0, 1.0) * g_unit
        g = np.broadcast_to(np.stack([gp, gm])[:, None], self._g_prog.shape).copy()
        return g, m

    def _device_state(
        self, widx: np.ndarray | None = None, conductances: bool = False
    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
        """(conductances µS or None, normalised weights, per-MVM read-noise variances or None) of every weight
        (``widx`` None: arrays of shape (2, units, n_in, n_out) / (n_in, n_out)) or of the weights with flat
        indices ``widx`` ((2, units, K) / (K,)); the conductances only with ``conductances=True``. Purely
        elementwise per weight (one compiled kernel, ``_device_kernels.device_state``), so a subset gives exactly
        the numbers of the full computation (``reprogram`` recomputes only the weights it wrote)."""
        c = self.cfg
        md = self.model
        if widx is not None and c.drift_reencode:
            raise ValueError("drift_reencode couples every weight of a group: no per-weight state")
        g_prog, factor = self._prog_state() if c.drift_reencode else (self._g_prog, None)
        g_q = g_prog if c.q_s_from == "g_prog" else self._g_target
        rows, nw = 2 * self.units, self.n_in * self.n_out
        idx = np.arange(nw) if widx is None else np.asarray(widx, dtype=np.int64)
        noisy = c.read_noise_scale != 0
        frozen = c.read_noise_scale if c.read_noise == "frozen" and noisy and self._frozen_active else 0.0
        per_mvm = c.read_noise_scale if c.read_noise == "per_mvm" and noisy else 0.0
        g_d = np.empty((rows, len(idx))) if conductances else _NO_G
        wn = np.empty(len(idx))
        want_var = c.read_noise == "per_mvm" or c.pcm_read_noise > 0
        var = np.empty(len(idx)) if want_var else _NO_VAR
        K.device_state(idx, g_prog.reshape(rows, nw), g_q.reshape(rows, nw), self._t_prog.reshape(rows, nw),
                       self._nu.reshape(rows, nw), self._xi.reshape(rows, nw),
                       _NO_VAR if factor is None else np.ascontiguousarray(factor).reshape(-1), float(self.t_s),
                       bool(c.drift), float(frozen), float(per_mvm), float(c.pcm_read_noise), float(self.g_tot_uS),
                       md.g_max_uS, md.t0_s, md.t_read_s, md.variant, g_d, wn, var)
        shape = (self.n_in, self.n_out) if widx is None else (len(idx),)
        return (g_d.reshape(2, self.units, *shape) if conductances else None, wn.reshape(shape),
                var.reshape(shape) if want_var else None)

    def _rebuild(self) -> None:
        """Recompute the normalised matrices (and per-MVM read-noise variances) from the device state."""
        _, wn, var = self._device_state()
        self._wn = wn
        self._mats = [np.ascontiguousarray(wn[rs], dtype=np.float32) for rs in self._row_blocks]
        if var is not None:
            self._vars = [np.ascontiguousarray(var[rs], dtype=np.float32) for rs in self._row_blocks]
            self._vars_t = [torch.from_numpy(v) for v in self._vars]
        else:
            self._vars = None
        self._mats_t = [torch.from_numpy(m) for m in self._mats]
        self._mats_shared = False
        self._refresh_colf()

    def _rebuild_at(self, widx: np.ndarray, refresh_colf: bool = True) -> None:
        """``_rebuild`` for the weights with flat indices ``widx`` only (the others are unchanged): the same
        numbers, at a cost proportional to len(widx). The per-core matrices are written in place, or copied
        first while a fork shares them (``_mats_shared``). ``refresh_colf=False``: the caller refreshes the
        column factors itself right after (``reprogram`` recomputes the drift compensation next)."""
        _, wn, var = self._device_state(widx)
        self._wn.reshape(-1)[widx] = wn
        rows, cols = np.divmod(widx, self.n_out)
        own = not self._mats_shared  # a fork shares the matrices until one of the two writes
        mats = self._mats if own else [m.copy() for m in self._mats]
        vars_ = None if self._vars is None or var is None else (self._vars if own else [v.copy() for v in self._vars])
        for r, rs in enumerate(self._row_blocks):
            sel = (rows >= rs.start) & (rows < rs.stop) if not self._single_block else slice(None)
            mats[r][rows[sel] - rs.start, cols[sel]] = wn[sel]
            if vars_ is not None:
                vars_[r][rows[sel] - rs.start, cols[sel]] = var[sel]
        if not own:
            self._mats, self._mats_t = mats, [torch.from_numpy(m) for m in mats]
            if vars_ is not None:
                self._vars, self._vars_t = vars_, [torch.from_numpy(v) for v in vars_]
            self._mats_shared = False
        if refresh_colf:
            self._refresh_colf()
