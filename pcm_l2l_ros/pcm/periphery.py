"""The analog MVM of a crossbar core through its periphery (the ``PCMArray.mvm`` part of the array).

Per core, in normalised units (a full-scale input on a weight at w_max gives 1):

    xn = DAC(x / s)            signed, ``dac_bits``; s = max|x| per vector or the fixed ``dac_range``
    yn = xn @ Wn               Wn = (sum G+ - sum G-) / G_tot of the current (drifted) conductances
    yn += sqrt(out_noise^2 + xn^2 @ V) * xi     V = per-MVM read-noise variance (``read_noise="per_mvm"``)
    yq = ADC(yn)               ``adc_bits``, clipped to +-``adc_range``
    y += yq * s * w_max * alpha                  digital: rescale, drift compensation; summed over cores

The effective matrices (Wn, V, the column factors) are precomputed at program/drift/reprogram time
(``pcm.array``), so an MVM costs one float32 matmul (two with per-MVM read noise) plus two fused Numba
passes; batches below ``_TORCH_MATMUL_MIN_BATCH`` on one core run as one compiled call (``fused_mvm``).
"""

from __future__ import annotations

import threading
from typing import NamedTuple

import numpy as np
import torch

from ._kernels import adc_epilogue, dac_quantize, fused_mvm
from .noise import NoiseState, NormalStream, background_worker
from .state import ArrayState

__all__ = ["CrossbarMVM", "FusedMVM"]

_EMPTY = np.zeros((0, 0), np.float32)
_EMPTY1 = np.zeros(0, np.float32)


def _levels(bits: int | None) -> int:
    return 0 if bits is None else 2 ** (bits - 1) - 1


_TORCH_MATMUL_MIN_BATCH = 16  # from this batch on torch.mm beats numpy's BLAS for one core (bench/pcm_mvm.py)
#: from this many multiply-adds (batch x rows x columns) the read-noise variance GEMM runs on the background worker
#: while the caller runs the signal GEMM (the same numbers: the same two GEMMs, on two threads)
_ASYNC_VAR_MIN_MACS = 1 << 22
#: MVM work buffers of a row block are kept between calls (grown to the largest batch) up to this many elements
_SCRATCH_MAX_ELEMENTS = 1 << 21
_torch_thread = threading.local()


def _var_gemm(xn2: np.ndarray, var_t: torch.Tensor, out: torch.Tensor) -> np.ndarray:
    """The per-MVM read-noise variance xn^2 @ V into ``out`` (on the background worker thread)."""
    _torch_threads_here()
    return torch.mm(torch.from_numpy(xn2), var_t, out=out).numpy()


class _Scratch:
    """Work buffers of one row block's MVM (DAC outputs, full scales, squared DAC outputs, GEMM outputs), grown to
    the largest batch seen and handed out as views: a batch that varies per call (the CNN's input layer reads only
    its inked patches) reuses the same memory instead of fresh pages every call."""

    __slots__ = ("xn", "xs", "xn2", "yn", "var")

    def __init__(self) -> None:
        self.xn = self.xs = self.xn2 = np.empty(0, np.float32)
        self.yn = self.var = torch.empty(0, dtype=torch.float32)

    def views(
        self, bsz: int, rows: int, cols: int, squares: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, torch.Tensor, torch.Tensor]:
        if self.xn.size < bsz * rows:
            self.xn = np.empty(bsz * rows, np.float32)
        if self.xs.size < bsz:
            self.xs = np.empty(bsz, np.float32)
        if squares and self.xn2.size < bsz * rows:
            self.xn2 = np.empty(bsz * rows, np.float32)
        if self.yn.numel() < bsz * cols:
            self.yn = torch.empty(bsz * cols, dtype=torch.float32)
        if squares and self.var.numel() < bsz * cols:
            self.var = torch.empty(bsz * cols, dtype=torch.float32)
        xn2 = self.xn2[: bsz * rows].reshape(bsz, rows) if squares else _EMPTY
        return (self.xn[: bsz * rows].reshape(bsz, rows), self.xs[:bsz], xn2,
                self.yn[: bsz * cols].view(bsz, cols), self.var[: bsz * cols].view(bsz, cols) if squares else self.var)


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
    stream: NormalStream


class CrossbarMVM(ArrayState):
    """The MVM of ``PCMArray`` (a mixin: the matrices, column factors and noise stream are the array's)."""

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

    # ------------------------------------------------------------------ MVM
    def _forward_block(
        self,
        r: int,
        x: np.ndarray,
        c0: int,
        colf: np.ndarray,
        out: np.ndarray | None,
    ) -> np.ndarray:
        """Periphery + analog MVM of row block ``r`` for the inputs x[:, c0 : c0 + rows] (x float32
        C-contiguous, read in place); writes (or, with ``out`` given, adds) the digital result (B, n_out)."""
        p = self._periph
        bsz = x.shape[0]
        rows = self._row_blocks[r].stop - self._row_blocks[r].start
        squares = self._vars is not None
        xn, xs, xn2, yn_t, var_t = self._block_buffers(r, bsz)
        noise_ready = self._normals.take_async((bsz, self.n_out)) if p.noise else None  # overlaps the GEMMs
        dac_quantize(x, c0, p.dac_nlev, p.dac_range, p.normalise, xn, xs, xn2)
        if bsz >= _TORCH_MATMUL_MIN_BATCH:  # torch's sgemm is the faster BLAS here for batched inputs
            _torch_threads_here()
            var_ready = None
            if squares and bsz * rows * self.n_out >= _ASYNC_VAR_MIN_MACS:
                var_ready = background_worker().submit(_var_gemm, xn2, self._vars_t[r], var_t)  # after the noise
            yn = torch.mm(torch.from_numpy(xn), self._mats_t[r], out=yn_t).numpy()
            if var_ready is not None:
                var = var_ready.result()
            else:
                var = _var_gemm(xn2, self._vars_t[r], var_t) if squares else _EMPTY
        else:
            yn = xn @ self._mats[r]
            var = xn2 @ self._vars[r] if self._vars is not None else _EMPTY
        noise = noise_ready() if noise_ready is not None else _EMPTY
        accumulate = out is not None
        if out is None:
            out = np.empty(yn.shape, np.float32)
        adc_epilogue(yn, noise, var, p.out_noise, p.adc_nlev, p.adc_range, xs, colf, out, accumulate)
        return out

    def _block_buffers(self, r: int, bsz: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, torch.Tensor, torch.Tensor]:
        """Work buffers of row block ``r`` for a batch of ``bsz``: (xn, xs, xn2, yn, var) views (``_Scratch``), kept
        between calls unless the batch is very large."""
        rows = self._row_blocks[r].stop - self._row_blocks[r].start
        if bsz * max(rows, self.n_out) <= _SCRATCH_MAX_ELEMENTS:
            scratch = self._scratch.get(r)
            if scratch is None:
                scratch = self._scratch[r] = _Scratch()
        else:  # a very large batch: buffers of its own (not kept)
            scratch = _Scratch()
        return scratch.views(bsz, rows, self.n_out, self._vars is not None)

    def _pipelined(self, bsz: int) -> bool:
        """Whether an MVM of ``bsz`` vectors over several row blocks runs as :meth:`_forward_blocks_pipelined`."""
        rows = self._row_blocks[0].stop - self._row_blocks[0].start
        return (len(self._row_blocks) > 1 and self._vars is not None and bsz >= _TORCH_MATMUL_MIN_BATCH
                and bsz * rows * self.n_out >= _ASYNC_VAR_MIN_MACS)

    def _forward_blocks_pipelined(self, x: np.ndarray, out: np.ndarray) -> None:
        """:meth:`_forward_block` of every row block, adding into ``out`` in block order, with the work spread over
        the caller and the background worker: the worker converts the inputs of blocks 1, 2, ... (DAC) while the
        caller converts block 0's, then runs every block's read-noise variance GEMM, while the caller runs the
        signal GEMMs and the ADC epilogues. The same kernels on the same buffers and the noise taken in the same
        order as one block after the other: the same numbers."""
        p = self._periph
        bsz = x.shape[0]
        worker = background_worker()
        blocks = [(rs, *self._block_buffers(r, bsz)) for r, rs in enumerate(self._row_blocks)]

        def dac(b) -> None:
            rs, xn, xs, xn2 = b[0], b[1], b[2], b[3]
            dac_quantize(x, rs.start, p.dac_nlev, p.dac_range, p.normalise, xn, xs, xn2)

        converted = [None] + [worker.submit(dac, b) for b in blocks[1:]]
        dac(blocks[0])
        _torch_threads_here()
        variances = [worker.submit(_var_gemm, b[3], self._vars_t[r], b[5]) for r, b in enumerate(blocks)]
        for r, (_rs, xn, xs, _xn2, yn_t, _var_t) in enumerate(blocks):
            noise_ready = self._normals.take_async((bsz, self.n_out)) if p.noise else None
            conversion = converted[r]
            if conversion is not None:
                conversion.result()
            yn = torch.mm(torch.from_numpy(xn), self._mats_t[r], out=yn_t).numpy()
            var = variances[r].result()
            noise = noise_ready() if noise_ready is not None else _EMPTY
            adc_epilogue(yn, noise, var, p.out_noise, p.adc_nlev, p.adc_range, xs, self._colf[r], out, True)

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
            if self._pipelined(x.shape[0]):
                self._forward_blocks_pipelined(x, y)
            else:
                for r, rs in enumerate(self._row_blocks):
                    self._forward_block(r, x, rs.start, self._colf[r], y)  # each core reads its rows in place
        return y[0] if squeeze else y

    __call__ = mvm

    def prefetch_noise(self, batch: int) -> None:
        """Start generating the noise draws of the next ``mvm`` of ``batch`` input vectors on the background worker
        now (``NormalStream.prefetch``: the same draws as without it; an MVM of another batch size, or any other
        use of the noise stream first, cancels the prefetch). For a caller that knows its batch sizes early (the
        CNN's layers): the draws are then ready when the MVM needs them."""
        if self._programmed and self._weff is None and self._periph.noise and batch > 0:
            self._normals.prefetch([int(batch) * self.n_out] * len(self._row_blocks))

    def noise_checkpoint(self) -> NoiseState:
        """The state of the MVM noise stream, to ``restore_noise`` after MVMs whose draws must not count
        (a warm-up through the real arrays, whose buffers then stay allocated)."""
        return self._normals.checkpoint()

    def restore_noise(self, state: NoiseState) -> None:
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
