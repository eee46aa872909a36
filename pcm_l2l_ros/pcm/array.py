"""Simulated PCM in-memory-computing cores: weight mapping, tiling, device state, programming.

A weight matrix W of shape (n_in, n_out) is computed as y = x @ W. It is tiled over square crossbar
cores of ``core_size`` rows (inputs) x ``core_size`` columns (outputs). Each weight is a differential
cell: positive weights live on the G+ side, negative ones on the G- side, the other side is RESET
(target 0 µS, still programmed with noise, as in aihwkit). Each side holds ``devices_per_polarity``
devices (1, or the paper's 2 + 2 cell of HERMES).

Mapping (per core, or per column of a core): w_max of the core maps to the full conductance of one
side, G_tot = units_per_polarity * g_max. The target of each modelled unit is
g_T = clip(+-w / w_max, 0, 1) * g_max (equal split over the units of a side).

The conductances and matrices the MVM reads are computed in ``pcm.conductance``, the MVM through the
periphery is in ``pcm.periphery``, the drift compensation in ``pcm.compensation``, the
noise draws in ``pcm.noise``, the configuration in ``pcm.config`` (named chips: ``pcm.presets``).

Time: the array has a clock (s since the last full ``program()``); every unit remembers when it was last
programmed, so sparsely reprogrammed units drift from their own programming time.
"""

from __future__ import annotations

import copy
import dataclasses
import logging

import numpy as np

from . import _device_kernels as K
from .compensation import DriftCompensation
from .conductance import ConductanceState
from .config import PCMConfig
from .device import DeviceModel, device_model
from .noise import NormalStream
from .periphery import CrossbarMVM
from .programming import (
    EnduranceError,
    ProgramReport,
    UpdateReport,
    program_and_verify,
)

__all__ = ["PCMArray"]

log = logging.getLogger(__name__)


class PCMArray(ConductanceState, DriftCompensation, CrossbarMVM):
    """A weight matrix W (n_in, n_out) held as PCM conductances on one or more crossbar cores.

    Args:
        W: weights, shape (n_in, n_out); y = x @ W.
        cfg: configuration (default ``PCMConfig()``).
        rng: ``numpy.random.Generator`` or int seed; every random draw of this array comes from it.
        program: program the devices right away (call ``program()`` yourself otherwise).

    Not thread-safe (per-array random streams and MVM scratch buffers): give each thread its own ``fork()``.

    Attributes:
        write_counts: int64 array (2, devices_per_polarity, n_in, n_out): write pulses each physical
            device received (axis 0: G+ / G-).
        devices_written_total: physical devices written by ``reprogram`` calls so far (sum over calls).
        pulses_total, energy_total_J: all write pulses (incl. ``program``) and their energy, J.
        t_s: the array clock, s since the last full ``program()``.
    """

    #: ``reprogram`` rebuilds only the written weights (False: the whole array, the reference the tests
    #: compare the incremental update with)
    _incremental = True

    def __init__(
        self,
        W: np.ndarray,
        cfg: PCMConfig | None = None,
        rng: np.random.Generator | int | None = None,
        *,
        program: bool = True,
    ) -> None:
        self.cfg = cfg if cfg is not None else PCMConfig()
        W = np.asarray(W, dtype=np.float64)
        if W.ndim != 2:
            raise ValueError(f"W must be 2-D (n_in, n_out), got shape {W.shape}")
        self.n_in, self.n_out = W.shape
        self.reseed(rng)
        c = self.cfg
        model, units = device_model(c.device, c.devices_per_polarity)
        if c.g_max_uS is not None:
            model = dataclasses.replace(model, g_max_uS=float(c.g_max_uS))
        self.model: DeviceModel = model
        self.units = units  # modelled conductance units per polarity
        self.phys_per_unit = c.devices_per_polarity // units
        self.g_tot_uS = units * model.g_max_uS  # full conductance of one side of a cell, µS

        cs = c.core_size
        self._row_blocks = [slice(i, min(i + cs, self.n_in)) for i in range(0, self.n_in, cs)]
        self._col_blocks = [slice(j, min(j + cs, self.n_out)) for j in range(0, self.n_out, cs)]
        self.n_cores = len(self._row_blocks) * len(self._col_blocks)
        self._single_block = len(self._row_blocks) == 1
        self._scratch: dict = {}  # MVM work buffers per row block (periphery._Scratch)

        # w_max per (row block, column): the weight mapped to G_tot
        R = len(self._row_blocks)
        self._wmax = np.empty((R, self.n_out))
        for r, rs in enumerate(self._row_blocks):
            for cb in self._col_blocks:
                blk = np.abs(W[rs, cb])
                if c.w_max is not None:
                    self._wmax[r, cb] = c.w_max
                elif c.scale == "per_core":
                    self._wmax[r, cb] = blk.max() if blk.size else 1.0
                else:
                    self._wmax[r, cb] = blk.max(axis=0)
        self._wmax[self._wmax <= 0] = 1.0
        self._wmax_full = self._expand_rows(self._wmax)  # (n_in, n_out)
        self._W_target = np.clip(W, -self._wmax_full, self._wmax_full)
        if c.w_max is not None and np.any(np.abs(W) > c.w_max):
            log.warning(
                "PCMArray: %d weights beyond w_max=%g were clipped", int(np.sum(np.abs(W) > c.w_max)), c.w_max
            )

        shape = (2, units, self.n_in, self.n_out)
        self._g_target = np.zeros(shape)
        self._g_prog = np.zeros(shape)
        self._nu = np.zeros(shape)
        self._t_prog = np.zeros(shape)
        self._xi = np.zeros(shape, np.float32)  # frozen read-noise draws
        self.write_counts = np.zeros((2, c.devices_per_polarity, self.n_in, self.n_out), np.int64)
        self._n_over_endurance = 0  # devices of write_counts beyond endurance_writes
        # update_rounding="accumulate": the host's digital accumulator chi, per weight, in update quanta
        self._carry = np.zeros((self.n_in, self.n_out)) if c.update_rounding == "accumulate" else None
        self._abs_colmean = np.zeros((R, self.n_out))  # mean |W_target / w_max| per core and column
        self.devices_written_total = 0
        self.pulses_total = 0
        self.energy_total_J = 0.0
        self.t_s = 0.0
        self._programmed = False
        self._frozen_active = False
        self._baseline = np.ones((R, self.n_out))
        self._alpha = np.ones((R, self.n_out))
        self._mats: list[np.ndarray] = []
        self._mats_shared = False
        self._vars: list[np.ndarray] | None = None
        self._colf: list[np.ndarray] = []
        self._weff: np.ndarray | None = None
        if program:
            self.program()

    # ------------------------------------------------------------------ helpers
    def reseed(self, rng: np.random.Generator | int | None) -> None:
        """Draw all future randomness (programming, drift, read and output noise) from ``rng``."""
        self._rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        self._normals = NormalStream(int(self._rng.integers(0, 2**62)), self._noise_chunk())

    def _noise_chunk(self) -> int:
        """Buffered normal draws per refill: 2^16, less for small arrays (a forked readout)."""
        return int(min(1 << 16, max(1 << 10, 64 * self.n_out)))

    def fork(self, rng: np.random.Generator | int | None) -> PCMArray:
        """An independent copy of this array (same device state, same clock) whose future random draws
        come from ``rng`` (use it to evaluate several tasks from one programmed chip).

        Cheaper than ``copy.deepcopy`` (the vision service forks the readout per request): every numpy
        array attribute is copied; the derived per-core matrices (``_mats``, ``_vars``, ``_colf`` and their
        torch views) are shared, which is safe because they are never written in place, only replaced
        (``_rebuild``, ``_refresh_colf``); MVM scratch buffers and the noise stream are the copy's own."""
        new = copy.copy(self)
        for name, value in vars(self).items():
            if isinstance(value, np.ndarray):
                setattr(new, name, value.copy())
        new._scratch = {}
        self._mats_shared = new._mats_shared = True  # copy-on-write in _rebuild_at
        new.reseed(rng)
        return new

    @property
    def n_devices(self) -> int:
        """Physical PCM devices used: 2 * devices_per_polarity * n_in * n_out."""
        return int(self.write_counts.size)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_in, self.n_out)

    @property
    def alpha(self) -> np.ndarray:
        """Current drift-compensation factors, (row blocks, n_out)."""
        return self._alpha.copy()

    @property
    def w_max_map(self) -> np.ndarray:
        """w_max mapped to full conductance per (core row block, output column): (row blocks, n_out)."""
        return self._wmax.copy()

    def programmed_conductances(self) -> np.ndarray:
        """Conductances right after programming (2, units, n_in, n_out), µS (axis 0: G+ / G-)."""
        return self._g_prog.copy()

    def drift_exponents(self) -> np.ndarray:
        """Drift exponent nu of every unit (2, units, n_in, n_out)."""
        return self._nu.copy()

    def target_weights(self) -> np.ndarray:
        """The digital target weights (what the host believes is programmed), (n_in, n_out)."""
        return self._W_target.copy()

    def _expand_rows(self, a: np.ndarray) -> np.ndarray:
        out = np.empty((self.n_in, self.n_out), dtype=a.dtype)
        for r, rs in enumerate(self._row_blocks):
            out[rs] = a[r]
        return out

    def _unit_targets(self, W: np.ndarray) -> np.ndarray:
        """Target conductance of every unit, µS, shape (2, units, n_in, n_out)."""
        out = np.empty((2 * self.units, W.size))
        K.unit_targets_array(np.ascontiguousarray(W, np.float64).reshape(-1), self._wmax_full.reshape(-1),
                             float(self.model.g_max_uS), out)
        return out.reshape(2, self.units, *W.shape)

    def _age(self) -> np.ndarray:
        return np.maximum(self.t_s - self._t_prog, 0.0)

    def _commit_writes(self, pulses: np.ndarray, units_idx: np.ndarray | None = None) -> tuple[int, int, int]:
        """Add write pulses to the device counters; returns (devices written, pulses, devices beyond the
        endurance limit). ``pulses``: per unit, (2, units, n_in, n_out) (``units_idx`` None), or of the units
        with flat indices ``units_idx`` into (2, units, n_in * n_out) (only those counters are touched).
        Raises ``EnduranceError`` before any change with ``endurance_action="raise"``."""
        c = self.cfg
        if units_idx is None:
            units_idx = np.arange(pulses.size, dtype=np.int64)
        lim = -1 if c.endurance_writes is None else int(c.endurance_writes)
        written, n_pulses, exceeded, applied = K.commit_pulses(
            self.write_counts.reshape(-1), units_idx, np.ascontiguousarray(pulses).reshape(-1), self.units,
            c.devices_per_polarity, self.n_in * self.n_out, lim, c.endurance_action == "raise",
            self._n_over_endurance)
        if not applied:
            raise EnduranceError(f"{exceeded} PCM devices would exceed the endurance limit of {lim} writes")
        self._n_over_endurance = int(exceeded)
        self.pulses_total += int(n_pulses)
        self.energy_total_J += int(n_pulses) * c.energy_per_pulse_J
        return int(written), int(n_pulses), int(exceeded)

    # ------------------------------------------------------------------ programming
    def program(self) -> ProgramReport:
        """Program-and-verify every device to the current target weights; resets the clock to t = 0 s."""
        c = self.cfg
        gT = self._unit_targets(self._W_target)
        g_prog, pulses, nconv = self._program_units(gT)
        written, npulses, exceeded = self._commit_writes(pulses)
        self._g_target = gT
        self._g_prog = g_prog
        if self._carry is not None:
            self._carry[...] = 0.0
        self._nu = self._sample_nu(gT)
        self._t_prog[...] = 0.0
        self.t_s = 0.0
        self._draw_xi()
        self._programmed = True
        self._frozen_active = False  # as aihwkit: no read-noise snapshot until the first drift() call
        self._alpha = np.ones((len(self._row_blocks), self.n_out))
        self._abs_colmean = self._column_means(np.abs(self._W_target / self._wmax_full))
        self._rebuild()
        self._set_reference()
        self._refresh_colf()
        return ProgramReport(
            devices_written=written,
            pulses=npulses,
            energy_J=npulses * c.energy_per_pulse_J,
            max_iterations_used=int(pulses.max()) if pulses.size else 0,
            not_converged=nconv,
            endurance_exceeded=exceeded,
        )

    def _program_units(self, gT: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        c = self.cfg
        return program_and_verify(
            gT,
            self.model,
            self._rng,
            noise_scale=c.prog_noise_scale if c.programming_noise else 0.0,
            tolerance_uS=c.program_tolerance_uS,
            max_iterations=c.max_program_iterations,
            mode=c.program_mode,
        )

    def _sample_nu(self, gT: np.ndarray) -> np.ndarray:
        if not self.cfg.drift:
            return np.zeros_like(gT)
        return self.model.sample_nu(gT, self._rng, self.cfg.drift_scale)

    def _draw_xi(self) -> None:
        """A new frozen read-noise snapshot for every unit (``read_noise="frozen"``)."""
        if self.cfg.read_noise == "frozen":
            self._xi = self._rng.standard_normal(self._xi.shape, dtype=np.float32)

    def drift(self, t_s: float) -> None:
        """Set the clock to ``t_s`` seconds after the last full ``program()``: drift every device from
        its own programming time, draw a new frozen read-noise snapshot (``read_noise="frozen"``) and
        recompute the drift-compensation factors through the noisy periphery."""
        if not self._programmed:
            raise RuntimeError("program() the array before drift()")
        if t_s < 0:
            raise ValueError("t_s must be >= 0")
        self.t_s = float(t_s)
        self._draw_xi()
        self._frozen_active = True
        self._rebuild()
        self._update_alpha()

    def reprogram(self, delta_w: np.ndarray) -> UpdateReport:
        """Apply a weight update by sparse reprogramming.

        ``delta_w`` (n_in, n_out, weight units) is rounded to multiples of the update quantum, added to the
        digital target and clipped to +-w_max; only the units whose target conductance changed are
        program-and-verified (new programming noise, new nu, drift clock restarted for them). The other
        devices are not touched.

        Cost: the rounding reads ``delta_w`` once; the device state, the normalised matrices and the
        per-MVM read-noise variances are updated for the written weights only (``_rebuild_at``; with
        ``drift_reencode`` every weight of a group depends on the group's max, so the whole array is
        rebuilt), with exactly the numbers a full rebuild gives. The drift-compensation readout is then
        repeated as after ``drift()`` (one elementwise pass, fresh noise draws).
        """
        if not self._programmed:
            raise RuntimeError("program() the array before reprogram()")
        c = self.cfg
        d = np.asarray(delta_w, dtype=np.float64)
        if d.shape != (self.n_in, self.n_out):
            raise ValueError(f"delta_w shape {d.shape} != {(self.n_in, self.n_out)}")
        q = self._wmax_full / 16.0 if c.update_quantum is None else float(c.update_quantum)
        v = d / q
        if self._carry is not None:  # "accumulate": what earlier updates left unwritten is written with this one
            v = v + self._carry
        steps = np.floor(v + self._rng.random(v.shape)) if c.update_rounding == "stochastic" else np.rint(v)
        # only weights with a non-zero step can change: everything below works on those (flat indices), in one
        # compiled pass: their new targets, and the units (side, unit, weight) whose target conductance changed
        widx = np.flatnonzero(steps)
        rows, nw, nk = 2 * self.units, self.n_in * self.n_out, len(widx)
        w_new, gT_new = np.empty(nk), np.empty((rows, nk))
        units_idx, g_sel, hit = np.empty(rows * nk, np.int64), np.empty(rows * nk), np.empty(nk, bool)
        q_flat = np.reshape(q, -1)
        weights_changed, n_units = K.sparse_targets(
            widx, steps.reshape(-1), self._W_target.reshape(-1), self._wmax_full.reshape(-1), q_flat,
            self._g_target.reshape(rows, nw), float(self.model.g_max_uS), w_new, gT_new, units_idx, g_sel, hit)
        if n_units == 0:
            self._W_target.reshape(-1)[widx] = w_new
            self._keep_remainder(v, steps)
            return UpdateReport(0, 0, 0, 0.0, 0, 0, self.devices_written_total)
        units_idx, g_sel = units_idx[:n_units], g_sel[:n_units]
        g_sub, p_sub, nconv = self._program_units(g_sel)
        written, npulses, exceeded = self._commit_writes(p_sub, units_idx)  # raises before any state change
        self._keep_remainder(v, steps)
        self._g_target.reshape(rows, nw)[:, widx] = gT_new
        self._g_prog.reshape(-1)[units_idx] = g_sub
        self._nu.reshape(-1)[units_idx] = self._sample_nu(g_sel)
        self._t_prog.reshape(-1)[units_idx] = self.t_s
        if c.read_noise == "frozen":
            self._xi.reshape(-1)[units_idx] = self._rng.standard_normal(n_units, dtype=np.float32)
        self._W_target.reshape(-1)[widx] = w_new
        if c.drift_compensation != "none" and c.drift_reference == "noisy":
            # the noisy reference follows the change of mean|target| of each group (columns re-averaged
            # only where a weight changed)
            old = self._group_of(self._abs_colmean)
            touched = np.zeros(self.n_out, bool)
            touched[widx % self.n_out] = True
            cols = np.flatnonzero(touched) if not touched.all() else slice(None)  # (no gather when all are)
            self._abs_colmean[:, cols] = self._column_means(np.abs(self._W_target[:, cols] / self._wmax_full[:, cols]))
            new = self._group_of(self._abs_colmean)
            self._baseline = self._baseline * np.where(old > 0, new / np.maximum(old, 1e-12), 1.0)
        if c.drift_reference == "exact":
            self._set_reference()
        if self._incremental and not c.drift_reencode:
            self._rebuild_at(widx[hit], refresh_colf=False)  # the written weights, sorted;
            # the column factors are refreshed by _update_alpha below
        else:
            self._rebuild()
        self._update_alpha()
        self.devices_written_total += written
        return UpdateReport(
            weights_changed=weights_changed,
            devices_written=written,
            pulses=npulses,
            energy_J=npulses * c.energy_per_pulse_J,
            not_converged=nconv,
            endurance_exceeded=exceeded,
            devices_written_total=self.devices_written_total,
        )

    def _keep_remainder(self, v: np.ndarray, steps: np.ndarray) -> None:
        """``update_rounding="accumulate"``: the accumulator chi keeps what this update's rounding left unwritten
        (quanta)."""
        if self._carry is not None:
            np.subtract(v, steps, out=self._carry)

    @property
    def endurance_exceeded(self) -> np.ndarray:
        """Boolean mask (like ``write_counts``) of devices beyond the endurance limit."""
        if self.cfg.endurance_writes is None:
            return np.zeros(self.write_counts.shape, bool)
        return self.write_counts > self.cfg.endurance_writes

    def weights(self) -> np.ndarray:
        """Weights the array currently represents (n_in, n_out): drifted conductances incl. the frozen
        read-noise snapshot, times w_max and the drift-compensation factor; no periphery noise."""
        return self._wn * self._expand_rows(self._wmax * self._alpha)
