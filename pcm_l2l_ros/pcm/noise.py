"""The stream of standard-normal draws behind the analog MVM's output and read noise of one array.

Every draw of an array's MVM noise comes from its ``NormalStream`` (seeded from the array's generator), in
order, each draw used once; large draws can be generated on a process-wide worker thread while the caller
runs the crossbar GEMMs. Compiled loops take the draws in place (``window`` / ``commit``), warm-ups rewind
the stream (``checkpoint`` / ``restore``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

__all__ = ["NoiseState", "NormalStream", "background_worker"]

#: a stream's position (``NormalStream.checkpoint``): generator state, place in the chunk, the chunk's draws
NoiseState = tuple[torch.Tensor, int, np.ndarray]


_ASYNC_NOISE_MIN = 1 << 15  # draws from which a block's noise is generated on the worker thread
_noise_pool: ThreadPoolExecutor | None = None


def _noise_worker() -> ThreadPoolExecutor:
    """One process-wide worker thread that fills large noise buffers while the caller runs the crossbar
    GEMMs (torch's sampler releases the GIL, so the two overlap on two cores)."""
    global _noise_pool  # noqa: PLW0603 - created on first use, shared by every array
    if _noise_pool is None:
        _noise_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pcm-noise")
    return _noise_pool


def background_worker() -> ThreadPoolExecutor:
    """The process-wide worker thread of the MVM periphery (noise draws, and the read-noise variance GEMM of
    large batches, ``periphery.CrossbarMVM``): one thread, so its jobs run in the order they are submitted."""
    return _noise_worker()


def _forget_noise_worker() -> None:  # a forked child has no worker thread: it starts its own on first use
    global _noise_pool  # noqa: PLW0603
    _noise_pool = None


os.register_at_fork(after_in_child=_forget_noise_worker)


class NormalStream:
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

    def checkpoint(self) -> NoiseState:
        """The stream's position (generator state, place in the chunk, the chunk's draws), for ``restore``."""
        self._settle()
        return self._gen.get_state(), self._pos, self._np.copy()

    def restore(self, state: NoiseState) -> None:
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
