"""Simulated PCM in-memory-computing cores: weight mapping, tiling, periphery, drift compensation.

A weight matrix W of shape (n_in, n_out) is computed as y = x @ W. It is tiled over square crossbar
cores of ``core_size`` rows (inputs) x ``core_size`` columns (outputs). Each weight is a differential
cell: positive weights live on the G+ side, negative ones on the G- side, the other side is RESET
(target 0 µS, still programmed with noise, as in aihwkit). Each side holds ``devices_per_polarity``
devices (1, or the paper's 2 + 2 cell of HERMES).

Mapping (per core, or per column of a core): w_max of the core maps to the full conductance of one
side, G_tot = units_per_polarity * g_max. The target of each modelled unit is
g_T = clip(+-w / w_max, 0, 1) * g_max (equal split over the units of a side).

Analog MVM of one core, in normalised units (a full-scale input on a weight at w_max gives 1):

    xn = DAC(x / s)            signed, ``dac_bits``; s = max|x| per vector or the fixed ``dac_range``
    yn = xn @ Wn               Wn = (sum G+ - sum G-) / G_tot of the current (drifted) conductances
    yn += sqrt(out_noise^2 + xn^2 @ V) * xi     V = per-MVM read-noise variance (``read_noise="per_mvm"``)
    yq = ADC(yn)               ``adc_bits``, clipped to +-``adc_range``
    y += yq * s * w_max * alpha                  digital: rescale, drift compensation; summed over cores

The effective matrices (Wn, V, the column factors) are precomputed at program/drift/reprogram time, so an
MVM costs one float32 matmul (two with per-MVM read noise) plus two fused Numba passes.

Drift compensation (aihwkit ``GlobalDriftCompensation`` semantics, docs/device_model.md §6): right after programming a
one-hot readout (eye) is sent through the same noisy periphery and mean|Y_ref| stored per core
(``"global"``) or per column (``"per_column"``); at every ``drift(t)`` the readout is repeated and
alpha = mean|Y_ref| / mean|Y(t)| is applied digitally to the outputs. ``drift_reference="exact"`` uses
the ideal target weights as the reference instead.

Time: the array has a clock (s since the last full ``program()``); every unit remembers when it was last
programmed, so sparsely reprogrammed units drift from their own programming time.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from ._kernels import adc_epilogue, dac_quantize, fused_mvm
from .device import DeviceModel, device_model
from .programming import (
    DEFAULT_ENERGY_PER_PULSE_J,
    EnduranceError,
    ProgramReport,
    UpdateReport,
    program_and_verify,
)

__all__ = ["PCMConfig", "PCMArray", "FusedMVM"]

log = logging.getLogger(__name__)

_EMPTY = np.zeros((0, 0), np.float32)
_EMPTY1 = np.zeros(0, np.float32)


@dataclass(frozen=True)
class PCMConfig:
    """Configuration of a simulated PCM array (use the presets and ``dataclasses.replace``).

    Device and mapping:
        device: ``"aihwkit_compat"`` (PCMLikeNoiseModel, g_max 25 µS per device) or ``"hermes"``
            (HermesNoiseModel: ODP 10.35 µS, or TDP 20.7 µS per device pair).
        devices_per_polarity: 1 (single differential pair) or 2 (2 + 2 devices per weight).
        g_max_uS: maximal conductance of one modelled unit, µS; None = the device's calibrated value.
        w_max: weight magnitude mapped to full conductance; None = max|W| of each core (or column).
        scale: ``"per_core"`` or ``"per_column"`` (w_max per column of each core).
        core_size: rows and columns of one crossbar core.
    Non-idealities (each can be switched off):
        programming_noise, prog_noise_scale: programming noise on/off and its scale.
        drift, drift_scale: conductance drift on/off and the scale of nu.
        read_noise: ``"off"``, ``"frozen"`` (drawn once per drift()/program()/reprogram call, as aihwkit)
            or ``"per_mvm"`` (fresh 1/f read noise on every MVM, computed exactly as output noise of
            variance xn^2 @ V).
        read_noise_scale: scale of the 1/f read noise.
        q_s_from: ``"g_prog"`` (aihwkit code) or ``"g_target"`` (aihwkit docs) for Q_s.
        drift_reencode: aihwkit quirk (``BaseNoiseModel.apply_drift_noise``): drift and read noise act on
            the *programmed weights re-encoded* as a fresh conductance pair (one device at 0, per-core
            scale from max|W_prog|), not on the programmed conductances; nu stays per device slice.
            Needed to reproduce aihwkit's weight-level drift numbers (docs/device_model.md §9, T8/T9).
        pcm_read_noise: extra per-MVM output noise c * sqrt(sum |Wn| xn^2) (aihwkit PCM_READ w_noise;
            0.0175 in StandardHWATrainingPreset), normalised units.
        dac_bits: signed DAC bits (None = ideal inputs); 8 bits = 127 levels per sign.
        dac_range: fixed DAC full scale in input units (inputs clipped); None = max|x| per input vector.
        adc_bits: ADC bits (None = ideal); 8 bits = 127 levels per sign.
        adc_range: ADC clip bound, normalised output units.
        out_noise: additive Gaussian output noise std, normalised output units.
    Drift compensation:
        drift_compensation: ``"none"``, ``"global"`` (one alpha per core) or ``"per_column"``.
        drift_reference: ``"noisy"`` (readout through the periphery after programming) or ``"exact"``.
    Programming and updates:
        program_mode: ``"statistical"`` or ``"closed_loop"`` (see ``programming``).
        program_tolerance_uS, max_program_iterations: program-and-verify acceptance band (µS) and cap.
        update_quantum: weight-update step in weight units; None = w_max / 16 of each core.
        update_rounding: ``"nearest"`` or ``"stochastic"`` rounding of updates to the quantum.
        endurance_writes: write pulses a device survives (None = unlimited).
        endurance_action: ``"raise"`` (EnduranceError, nothing written) or ``"flag"`` (write and count).
        energy_per_pulse_J: energy per write pulse per physical device, J.
    """

    device: str = "aihwkit_compat"
    devices_per_polarity: int = 1
    g_max_uS: float | None = None
    w_max: float | None = None
    scale: str = "per_core"
    core_size: int = 256
    programming_noise: bool = True
    prog_noise_scale: float = 1.0
    drift: bool = True
    drift_scale: float = 1.0
    read_noise: str = "frozen"
    read_noise_scale: float = 1.0
    q_s_from: str = "g_prog"
    drift_reencode: bool = False
    pcm_read_noise: float = 0.0
    dac_bits: int | None = 8
    dac_range: float | None = None
    adc_bits: int | None = 8
    adc_range: float = 10.0
    out_noise: float = 0.04
    drift_compensation: str = "global"
    drift_reference: str = "noisy"
    program_mode: str = "statistical"
    program_tolerance_uS: float = 0.5
    max_program_iterations: int = 30
    update_quantum: float | None = None
    update_rounding: str = "nearest"
    endurance_writes: int | None = 10**8
    endurance_action: str = "raise"
    energy_per_pulse_J: float = DEFAULT_ENERGY_PER_PULSE_J

    def __post_init__(self) -> None:
        checks = {
            "scale": ("per_core", "per_column"),
            "read_noise": ("off", "frozen", "per_mvm"),
            "q_s_from": ("g_prog", "g_target"),
            "drift_compensation": ("none", "global", "per_column"),
            "drift_reference": ("noisy", "exact"),
            "program_mode": ("statistical", "closed_loop"),
            "update_rounding": ("nearest", "stochastic"),
            "endurance_action": ("raise", "flag"),
        }
        for field, allowed in checks.items():
            if getattr(self, field) not in allowed:
                raise ValueError(f"PCMConfig.{field}={getattr(self, field)!r}; allowed: {allowed}")
        device_model(self.device, self.devices_per_polarity)  # validates both
        for bits in (self.dac_bits, self.adc_bits):
            if bits is not None and bits < 2:
                raise ValueError("dac_bits/adc_bits must be >= 2 or None")
        if self.core_size < 1:
            raise ValueError("core_size must be >= 1")

    # ------------------------------------------------------------------ presets (pcm.presets holds the names)
    @classmethod
    def ideal(cls, **kw) -> PCMConfig:
        """Preset ``ideal``: every non-ideality off (``mvm`` is the exact float MVM x @ W up to float32)."""
        from .presets import chip  # noqa: PLC0415 - presets imports this module

        return chip("ideal", **kw)

    @classmethod
    def aihwkit_compat(cls, **kw) -> PCMConfig:
        """Preset ``aihwkit_compat``: aihwkit ``InferenceRPUConfig`` defaults (see ``pcm.presets``)."""
        from .presets import chip  # noqa: PLC0415

        return chip("aihwkit_compat", **kw)

    @classmethod
    def hermes_like(cls, **kw) -> PCMConfig:
        """Preset ``hermes_per_core``: HERMES TDP statistics (2 + 2 devices per weight), 8-bit DAC and ADC,
        per-MVM read noise, per-column drift compensation, one w_max per core (see ``pcm.presets``; the
        chip the nodes call ``hermes_like`` is ``hermes_per_column``)."""
        from .presets import chip  # noqa: PLC0415

        return chip("hermes_per_core", **kw)

    def replace(self, **kw) -> PCMConfig:
        """Shorthand for ``dataclasses.replace(self, **kw)``."""
        return dataclasses.replace(self, **kw)


def _levels(bits: int | None) -> int:
    return 0 if bits is None else 2 ** (bits - 1) - 1


_TORCH_MATMUL_MIN_BATCH = 16  # from this batch on torch.mm beats numpy's BLAS for one core (bench/pcm_mvm.py)
_torch_thread = threading.local()


def _torch_threads_here() -> None:
    """Apply the process's torch thread count in the calling thread (once per thread). With torch's OpenMP
    backend ``torch.set_num_threads`` sets the OpenMP thread count of the thread that calls it only: a
    worker thread (a service's request thread) would run every GEMM with OpenMP's default, one thread per
    core, measured 10-20x slower here on two busy cores."""
    if not getattr(_torch_thread, "ready", False):
        torch.set_num_threads(torch.get_num_threads())
        _torch_thread.ready = True


class _Periphery(NamedTuple):
    """Precomputed periphery constants handed to the Numba kernels."""

    dac_nlev: int
    dac_range: float
    normalise: bool
    out_noise: np.float32
    adc_nlev: int
    adc_range: np.float32
    noise: bool


_ASYNC_NOISE_MIN = 1 << 15  # draws from which a block's noise is generated on the worker thread
_noise_pool: ThreadPoolExecutor | None = None


def _noise_worker() -> ThreadPoolExecutor:
    """One process-wide worker thread that fills large noise buffers while the caller runs the crossbar
    GEMMs (torch's sampler releases the GIL, so the two overlap on two cores)."""
    global _noise_pool  # noqa: PLW0603 - created on first use, shared by every array
    if _noise_pool is None:
        _noise_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pcm-noise")
    return _noise_pool


def _forget_noise_worker() -> None:  # a forked child has no worker thread: it starts its own on first use
    global _noise_pool  # noqa: PLW0603
    _noise_pool = None


os.register_at_fork(after_in_child=_forget_noise_worker)


class _NormalStream:
    """Standard-normal float32 draws for the MVM noise, from a seeded torch generator, produced in chunks
    (torch's vectorised sampler, ~4 ns/draw) and handed out sequentially: every draw is used exactly once,
    so the stream is i.i.d. N(0, 1); buffering only removes the per-call overhead at small batches.
    Large draws can be generated in the background (``take_async``): the same draws in the same order."""

    def __init__(self, seed: int, chunk: int = 1 << 16) -> None:
        self._gen = torch.Generator().manual_seed(seed)
        self._buf = torch.empty(chunk, dtype=torch.float32)
        self._np = self._buf.numpy()
        self._pos = chunk
        self._chunk = chunk
        self._big: torch.Tensor | None = None  # reused for draws larger than a chunk (no page faults per call)
        self._pending: Future | None = None  # a background fill of _big (take_async) not yet waited for

    def __getstate__(self) -> dict:  # copies (deepcopy of a chip) re-attach the numpy view to their own buffer
        self._settle()
        state = self.__dict__.copy()
        del state["_np"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._np = self._buf.numpy()

    def _settle(self) -> None:
        """Wait for a background fill still running (the generator and _big are then free again)."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def _big_view(self, n: int) -> torch.Tensor:
        """The first ``n`` elements of the reused buffer for draws larger than a chunk (grown as needed)."""
        if self._big is None or self._big.numel() < n:
            self._big = torch.empty(n, dtype=torch.float32)
        return self._big[:n]

    def reserve(self, n: int) -> tuple[np.ndarray, int]:
        """(buffer, start): the next ``n`` draws are buffer[start:start + n]; they count as used. The buffer
        is reused: consume the draws before the next call."""
        self._settle()
        if n > self._chunk:
            big = self._big_view(n)
            big.normal_(generator=self._gen)
            return big.numpy(), 0
        if self._pos + n > self._chunk:
            self._buf.normal_(generator=self._gen)
            self._pos = 0
        start = self._pos
        self._pos += n
        return self._np, start

    def checkpoint(self) -> tuple[torch.Tensor, int, np.ndarray]:
        """The stream's position (generator state, place in the chunk, the chunk's draws), for ``restore``."""
        self._settle()
        return self._gen.get_state(), self._pos, self._np.copy()

    def restore(self, state: tuple[torch.Tensor, int, np.ndarray]) -> None:
        """Go back to a ``checkpoint``: the same draws follow (the buffers stay allocated)."""
        self._settle()
        gen_state, self._pos, chunk = state
        self._gen.set_state(gen_state)
        self._np[:] = chunk

    def window(self) -> tuple[np.ndarray, int, int]:
        """(chunk buffer, position, end): buffer[position:end] are the next draws of the stream, for a
        compiled loop that consumes them in order and then calls ``commit`` (``reserve`` for a request
        that does not fit)."""
        self._settle()
        return self._np, self._pos, self._chunk

    def commit(self, pos: int) -> None:
        """The draws of the current chunk before ``pos`` (from ``window``) have been used."""
        self._pos = pos

    def take(self, shape: tuple[int, int]) -> np.ndarray:
        """The next shape[0] * shape[1] draws as an array of ``shape`` (a view: use it before next call)."""
        n = shape[0] * shape[1]
        buf, start = self.reserve(n)
        return buf[start : start + n].reshape(shape)

    def take_async(self, shape: tuple[int, int]) -> Callable[[], np.ndarray]:
        """``take`` whose draws (if many) are generated on the worker thread while the caller goes on;
        call the returned function for the array. No other draw from this stream in between."""
        n = shape[0] * shape[1]
        if n <= self._chunk or n < _ASYNC_NOISE_MIN:
            a = self.take(shape)
            return lambda: a
        self._settle()
        big = self._big_view(n)
        self._pending = _noise_worker().submit(big.normal_, generator=self._gen)

        def wait() -> np.ndarray:
            self._settle()
            return big.numpy().reshape(shape)

        return wait


class FusedMVM(NamedTuple):
    """What :func:`pcm_l2l_ros.pcm._kernels.fused_mvm` needs to compute ``PCMArray.mvm`` of a small batch
    in a compiled loop (``PCMArray.fused_operands``): the normalised matrix, the per-MVM read-noise
    variances (or a (0, 0) array), the periphery constants, the per-column digital factors and the noise
    stream (``noise``: whether draws are used; ``stream.window()`` / ``commit`` / ``reserve``)."""

    mat: np.ndarray
    var_mat: np.ndarray
    dac_nlev: int
    dac_range: float
    normalise: bool
    out_noise: np.float32
    adc_nlev: int
    adc_range: np.float32
    colf: np.ndarray
    noise: bool
    stream: _NormalStream


class PCMArray:
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
        self._scratch: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # MVM buffers

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
        self._vars: list[np.ndarray] | None = None
        self._colf: list[np.ndarray] = []
        self._weff: np.ndarray | None = None
        if program:
            self.program()

    # ------------------------------------------------------------------ helpers
    def reseed(self, rng: np.random.Generator | int | None) -> None:
        """Draw all future randomness (programming, drift, read and output noise) from ``rng``."""
        self._rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        self._normals = _NormalStream(int(self._rng.integers(0, 2**62)), self._noise_chunk())

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
        return self._unit_targets_of(W, self._wmax_full)

    def _unit_targets_of(self, w: np.ndarray, wmax: np.ndarray) -> np.ndarray:
        """Target conductances (2, units, *w.shape), µS, of weights ``w`` whose w_max is ``wmax`` (elementwise)."""
        wn = w / wmax
        g_unit = self.model.g_max_uS
        gp = np.clip(wn, 0.0, 1.0) * g_unit
        gm = np.clip(-wn, 0.0, 1.0) * g_unit
        return np.broadcast_to(np.stack([gp, gm])[:, None], (2, self.units, *w.shape)).copy()

    def _age(self) -> np.ndarray:
        return np.maximum(self.t_s - self._t_prog, 0.0)

    def _commit_writes(self, pulses: np.ndarray, units_idx: np.ndarray | None = None) -> tuple[int, int, int]:
        """Add write pulses to the device counters; returns (devices written, pulses, devices beyond the
        endurance limit). ``pulses``: per unit, (2, units, n_in, n_out) (``units_idx`` None), or of the units
        with flat indices ``units_idx`` into (2, units, n_in * n_out) (only those counters are touched).
        Raises ``EnduranceError`` before any change with ``endurance_action="raise"``."""
        c = self.cfg
        ppu = self.phys_per_unit
        flat = self.write_counts.reshape(-1)
        if units_idx is None:
            dev_idx = slice(None)
            dev_pulses = np.repeat(pulses, ppu, axis=1).astype(np.int64).reshape(-1)
        else:
            nw = self.n_in * self.n_out
            side, rest = np.divmod(units_idx, self.units * nw)
            unit, k = np.divmod(rest, nw)
            first = side * c.devices_per_polarity + unit * ppu  # first physical device of each unit
            dev_idx = ((first[:, None] + np.arange(ppu)) * nw + k[:, None]).reshape(-1)
            dev_pulses = np.repeat(pulses.astype(np.int64), ppu)
        old = flat[dev_idx]
        new = old + dev_pulses
        exceeded = 0
        if c.endurance_writes is not None:
            lim = c.endurance_writes
            exceeded = self._n_over_endurance + int(np.count_nonzero(new > lim)) - int(np.count_nonzero(old > lim))
            if exceeded and c.endurance_action == "raise":
                raise EnduranceError(f"{exceeded} PCM devices would exceed the endurance limit of {lim} writes")
        flat[dev_idx] = new
        self._n_over_endurance = exceeded
        n_pulses = int(dev_pulses.sum())
        self.pulses_total += n_pulses
        self.energy_total_J += n_pulses * c.energy_per_pulse_J
        return int(np.count_nonzero(dev_pulses)), n_pulses, exceeded

    # ------------------------------------------------------------------ programming
    def program(self) -> ProgramReport:
        """Program-and-verify every device to the current target weights; resets the clock to t = 0 s."""
        c = self.cfg
        gT = self._unit_targets(self._W_target)
        g_prog, pulses, nconv = self._program_units(gT)
        written, npulses, exceeded = self._commit_writes(pulses)
        self._g_target = gT
        self._g_prog = g_prog
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
        steps = np.rint(v) if c.update_rounding == "nearest" else np.floor(v + self._rng.random(v.shape))
        # only weights with a non-zero step can change: everything below works on those (flat indices)
        widx = np.flatnonzero(steps)
        w_old = self._W_target.reshape(-1)[widx]
        wmax = self._wmax_full.reshape(-1)[widx]
        q_w = q if np.ndim(q) == 0 else q.reshape(-1)[widx]
        w_new = np.clip(w_old + steps.reshape(-1)[widx] * q_w, -wmax, wmax)
        weights_changed = int(np.count_nonzero(w_new != w_old))
        gT_new = self._unit_targets_of(w_new, wmax)  # (2, units, K)
        units_flat = self._g_target.reshape(2, self.units, -1)
        mask = gT_new != units_flat[:, :, widx]  # C order of (side, unit, weight) = order of the full mask
        n_units = int(mask.sum())
        if n_units == 0:
            self._W_target.reshape(-1)[widx] = w_new
            return UpdateReport(0, 0, 0, 0.0, 0, 0, self.devices_written_total)
        g_sub, p_sub, nconv = self._program_units(gT_new[mask])
        nw = self.n_in * self.n_out
        side, unit, k = np.nonzero(mask)
        units_idx = (side * self.units + unit) * nw + widx[k]  # flat indices into (2, units, n_in * n_out)
        written, npulses, exceeded = self._commit_writes(p_sub, units_idx)  # raises before any state change
        units_flat[:, :, widx] = gT_new
        self._g_prog.reshape(-1)[units_idx] = g_sub
        self._nu.reshape(-1)[units_idx] = self._sample_nu(gT_new[mask])
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
            cols = np.flatnonzero(touched)
            self._abs_colmean[:, cols] = self._column_means(np.abs(self._W_target[:, cols] / self._wmax_full[:, cols]))
            new = self._group_of(self._abs_colmean)
            self._baseline = self._baseline * np.where(old > 0, new / np.maximum(old, 1e-12), 1.0)
        if c.drift_reference == "exact":
            self._set_reference()
        if self._incremental and not c.drift_reencode:
            self._rebuild_at(widx[mask.any(axis=(0, 1))])  # the weights with a written device, sorted
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

    @property
    def endurance_exceeded(self) -> np.ndarray:
        """Boolean mask (like ``write_counts``) of devices beyond the endurance limit."""
        if self.cfg.endurance_writes is None:
            return np.zeros(self.write_counts.shape, bool)
        return self.write_counts > self.cfg.endurance_writes

    # ------------------------------------------------------------------ state -> matrices
    def conductances(self) -> np.ndarray:
        """Current unit conductances (2, units, n_in, n_out), µS, with drift and the frozen read-noise
        snapshot (drawn by ``drift()``; right after ``program()`` there is none, as in aihwkit)."""
        return self._conductances()[0]

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
        self, widx: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(conductances µS, normalised weights, per-MVM read-noise variances or None) of every weight
        (``widx`` None: arrays of shape (2, units, n_in, n_out) / (n_in, n_out)) or of the weights with flat
        indices ``widx`` ((2, units, K) / (K,)). Purely elementwise per weight, so a subset gives exactly
        the numbers of the full computation (``reprogram`` recomputes only the weights it wrote)."""
        c = self.cfg
        md = self.model
        g_prog, factor = self._prog_state()
        t_prog, nu, g_target, xi = self._t_prog, self._nu, self._g_target, self._xi
        if widx is not None:
            if c.drift_reencode:
                raise ValueError("drift_reencode couples every weight of a group: no per-weight state")
            shape = (2, self.units, len(widx))
            pick = lambda a: np.take(a.reshape(2 * self.units, -1), widx, axis=1).reshape(shape)  # noqa: E731
            g_prog, t_prog, nu, g_target, xi = (pick(a) for a in (g_prog, t_prog, nu, g_target, xi))
            factor = factor.reshape(-1)[widx]
        age = np.maximum(self.t_s - t_prog, 0.0)
        g_d = g_prog * md.drift_factor(age, nu) if c.drift else g_prog.copy()
        g_q = g_prog if c.q_s_from == "g_prog" else g_target
        if c.read_noise == "frozen" and c.read_noise_scale != 0 and self._frozen_active:
            sig = md.read_sigma_rel(g_q, age) * c.read_noise_scale
            g_d = np.maximum(g_d + np.abs(g_d) * sig * xi, 0.0)
        wn = factor * (g_d[0].sum(axis=0) - g_d[1].sum(axis=0)) / self.g_tot_uS
        var = None
        if c.read_noise == "per_mvm" or c.pcm_read_noise > 0:
            var = np.zeros_like(wn)
            if c.read_noise == "per_mvm" and c.read_noise_scale != 0:
                sd = md.read_sigma_rel(g_q, age) * c.read_noise_scale * g_d
                var += factor**2 * (sd**2).sum(axis=(0, 1)) / self.g_tot_uS**2
            if c.pcm_read_noise > 0:
                var += c.pcm_read_noise**2 * np.abs(wn)
        return g_d, wn, var

    def _conductances(self) -> tuple[np.ndarray, np.ndarray]:
        return self._device_state()[0], self._prog_state()[1]

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
        self._refresh_colf()

    def _rebuild_at(self, widx: np.ndarray) -> None:
        """``_rebuild`` for the weights with flat indices ``widx`` only (the others are unchanged): the same
        numbers, at a cost proportional to len(widx). The per-core matrices are copied before the write
        (forks share them)."""
        _, wn, var = self._device_state(widx)
        self._wn.reshape(-1)[widx] = wn
        rows, cols = np.divmod(widx, self.n_out)
        mats = [m.copy() for m in self._mats]
        vars_ = None if var is None else [v.copy() for v in self._vars]
        for r, rs in enumerate(self._row_blocks):
            sel = (rows >= rs.start) & (rows < rs.stop) if not self._single_block else slice(None)
            mats[r][rows[sel] - rs.start, cols[sel]] = wn[sel]
            if vars_ is not None:
                vars_[r][rows[sel] - rs.start, cols[sel]] = var[sel]
        self._mats = mats
        self._mats_t = [torch.from_numpy(m) for m in mats]
        if vars_ is not None:
            self._vars = vars_
            self._vars_t = [torch.from_numpy(v) for v in vars_]
        self._refresh_colf()

    def _refresh_colf(self) -> None:
        self._colf = [
            np.ascontiguousarray(self._wmax[r] * self._alpha[r], dtype=np.float32)
            for r in range(len(self._row_blocks))
        ]
        c = self.cfg
        linear = (
            c.dac_bits is None
            and c.dac_range is None
            and c.adc_bits is None
            and c.out_noise == 0
            and self._vars is None
        )
        self._periph = _Periphery(
            dac_nlev=_levels(c.dac_bits),
            dac_range=-1.0 if c.dac_range is None else float(c.dac_range),
            normalise=not linear,
            out_noise=np.float32(c.out_noise),
            adc_nlev=_levels(c.adc_bits),
            adc_range=np.float32(c.adc_range),
            noise=c.out_noise > 0 or self._vars is not None,
        )
        if linear:
            self._weff = np.ascontiguousarray(
                self._wn * self._expand_rows(self._wmax * self._alpha), dtype=np.float32
            )
        else:
            self._weff = None

    # ------------------------------------------------------------------ drift compensation
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

    # ------------------------------------------------------------------ MVM
    def _forward_block(
        self, r: int, x: np.ndarray, c0: int, colf: np.ndarray, out: np.ndarray | None
    ) -> np.ndarray:
        """Periphery + analog MVM of row block ``r`` for the inputs x[:, c0 : c0 + rows] (x float32
        C-contiguous, read in place); writes (or, with ``out`` given, adds) the digital result (B, n_out)."""
        p = self._periph
        bsz = x.shape[0]
        rows = self._row_blocks[r].stop - self._row_blocks[r].start
        key = (r, bsz)
        scratch = self._scratch.get(key)
        if scratch is None or (self._vars is not None) != (scratch[2].shape[0] > 0):
            scratch = (
                np.empty((bsz, rows), np.float32),
                np.empty(bsz, np.float32),
                np.empty((bsz, rows), np.float32) if self._vars is not None else _EMPTY,
            )
            if len(self._scratch) > 16:
                self._scratch.clear()
            self._scratch[key] = scratch
        xn, xs, xn2 = scratch
        noise_ready = self._normals.take_async((bsz, self.n_out)) if p.noise else None  # overlaps the GEMMs
        dac_quantize(x, c0, p.dac_nlev, p.dac_range, p.normalise, xn, xs, xn2)
        if bsz >= _TORCH_MATMUL_MIN_BATCH:  # torch's sgemm is the faster BLAS here for batched inputs
            _torch_threads_here()
            yn = torch.mm(torch.from_numpy(xn), self._mats_t[r]).numpy()
            var = (
                torch.mm(torch.from_numpy(xn2), self._vars_t[r]).numpy() if self._vars is not None else _EMPTY
            )
        else:
            yn = xn @ self._mats[r]
            var = xn2 @ self._vars[r] if self._vars is not None else _EMPTY
        noise = noise_ready() if noise_ready is not None else _EMPTY
        accumulate = out is not None
        if out is None:
            out = np.empty(yn.shape, np.float32)
        adc_epilogue(yn, noise, var, p.out_noise, p.adc_nlev, p.adc_range, xs, colf, out, accumulate)
        return out

    def mvm(self, x: np.ndarray) -> np.ndarray:
        """Analog MVM y = x @ W through DAC, crossbar, noise, ADC and drift compensation.

        Args:
            x: inputs (batch, n_in) or (n_in,), any float dtype (computed in float32).
        Returns:
            float32 outputs (batch, n_out), or (n_out,) for a 1-D input.
        """
        if type(x) is not np.ndarray or x.dtype != np.float32 or not x.flags.c_contiguous:
            x = np.ascontiguousarray(x, dtype=np.float32)
        squeeze = x.ndim == 1
        if squeeze:
            x = x.reshape(1, -1)
        if not self._programmed:
            raise RuntimeError("program() the array before mvm()")
        if x.shape[1] != self.n_in:
            raise ValueError(f"x has {x.shape[1]} inputs, the array {self.n_in}")
        if self._weff is not None:
            y = x @ self._weff
        elif self._single_block and x.shape[0] < _TORCH_MATMUL_MIN_BATCH:
            p = self._periph
            buf, pos = self._normals.reserve(x.shape[0] * self.n_out) if p.noise else (_EMPTY1, 0)
            y = fused_mvm(
                x,
                self._mats[0],
                _EMPTY if self._vars is None else self._vars[0],
                buf,
                pos,
                p.dac_nlev,
                p.dac_range,
                p.normalise,
                p.out_noise,
                p.adc_nlev,
                p.adc_range,
                self._colf[0],
            )
        elif self._single_block:
            y = self._forward_block(0, x, 0, self._colf[0], None)
        else:
            y = np.zeros((x.shape[0], self.n_out), np.float32)
            for r, rs in enumerate(self._row_blocks):
                self._forward_block(r, x, rs.start, self._colf[r], y)  # each core reads its rows in place
        return y[0] if squeeze else y

    __call__ = mvm

    def noise_checkpoint(self) -> object:
        """The state of the MVM noise stream, to ``restore_noise`` after MVMs whose draws must not count
        (a warm-up through the real arrays, whose buffers then stay allocated)."""
        return self._normals.checkpoint()

    def restore_noise(self, state: object) -> None:
        """Return the MVM noise stream to a ``noise_checkpoint``: the same draws follow as if the MVMs in
        between had not happened."""
        self._normals.restore(state)

    def fused_operands(self, batch: int) -> FusedMVM | None:
        """The operands with which ``fused_mvm(x, ...)`` equals ``mvm(x)`` bit for bit (same noise draws) for
        every batch of at most ``batch`` rows, or None where ``mvm`` takes another path (several row
        blocks, batches from ``_TORCH_MATMUL_MIN_BATCH`` on, every non-ideality off)."""
        if not self._programmed:
            raise RuntimeError("program() the array before mvm()")
        if self._weff is not None or not self._single_block or batch >= _TORCH_MATMUL_MIN_BATCH:
            return None
        p = self._periph
        return FusedMVM(self._mats[0], _EMPTY if self._vars is None else self._vars[0], p.dac_nlev, p.dac_range,
                        p.normalise, p.out_noise, p.adc_nlev, p.adc_range, self._colf[0], p.noise, self._normals)

    def weights(self) -> np.ndarray:
        """Weights the array currently represents (n_in, n_out): drifted conductances incl. the frozen
        read-noise snapshot, times w_max and the drift-compensation factor; no periphery noise."""
        return self._wn * self._expand_rows(self._wmax * self._alpha)
