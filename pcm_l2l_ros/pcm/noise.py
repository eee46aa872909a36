"""The stream of standard-normal draws behind the analog MVM's output and read noise of one array.

Every draw of an array's MVM noise comes from its ``NormalStream`` (seeded from the array's generator), in
order, each draw used once; large draws can be generated on a process-wide worker thread while the caller
runs the crossbar GEMMs. Compiled loops take the draws in place (``window`` / ``commit``), warm-ups rewind
the stream (``checkpoint`` / ``restore``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
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
        self._pending: Future | None = None  # a background fill (take_async, prefetch) not yet waited for
        # prefetch: the planned takes (buffer, start, draws; buffer None = the current chunk), in order, the chunk
        # buffer the stream continues from afterwards (None: _buf) and the generator state before the plan
        self._plan: list[tuple[torch.Tensor | None, int, int]] = []
        self._plan_end: tuple[torch.Tensor | None, int] = (None, 0)
        self._plan_start: tuple[torch.Tensor, int] | None = None  # generator state and chunk position before
        self._plan_used: list[int] = []  # draws of the planned takes handed out so far
        self._plan_bufs: list[torch.Tensor] = []  # buffers of the planned fills, reused by the next plans

    def __getstate__(self) -> dict:  # copies (deepcopy of a chip) re-attach the numpy view to their own buffer
        self._cancel_plan()
        state = self.__dict__.copy()
        del state["_np"]
        state["_plan_bufs"] = []
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
        if self._plan:
            planned = self._take_planned(n)
            if planned is not None:
                self._settle()
                return planned
        self._settle()
        return self._reserve_plain(n)

    def _reserve_plain(self, n: int) -> tuple[np.ndarray, int]:
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
        self._cancel_plan()
        return self._gen.get_state(), self._pos, self._np.copy()

    def restore(self, state: NoiseState) -> None:
        """Go back to a ``checkpoint``: the same draws follow (the buffers stay allocated)."""
        self._cancel_plan()
        gen_state, self._pos, chunk = state
        self._gen.set_state(gen_state)
        self._np[:] = chunk

    def window(self) -> tuple[np.ndarray, int, int]:
        """(chunk buffer, position, end): buffer[position:end] are the next draws of the stream, for a
        compiled loop that consumes them in order and then calls ``commit`` (``reserve`` for a request
        that does not fit)."""
        self._cancel_plan()
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
        if self._plan:
            planned = self._take_planned(n)
            if planned is not None:
                buf, start = planned

                def wait_planned() -> np.ndarray:
                    self._settle()
                    return buf[start : start + n].reshape(shape)

                return wait_planned
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

    # ------------------------------------------------------------------ prefetch
    def prefetch(self, sizes: Sequence[int]) -> None:
        """Generate the draws of the next takes of ``sizes[0]``, ``sizes[1]``, ... draws (in this order) on the worker
        thread now, while the caller does other work: the same fills of the same generator in the same order as
        the takes would do (a chunk refill where a take does not fit the current chunk, an own fill for a take
        larger than a chunk), into buffers of their own; the takes (``take``, ``take_async``, ``reserve``) then
        only wait for them. A take of another size, ``window``, ``checkpoint``, ``restore`` or a new ``prefetch``
        cancel the rest of the plan first: the stream hands out exactly the draws it would without a plan. The same
        plan again before any of its takes is kept as it is (a caller may announce its takes early and again later)."""
        if self._plan and not self._plan_used and [n for _, _, n in self._plan] == [int(k) for k in sizes]:
            return
        self._cancel_plan()
        chunk = self._chunk
        pos, cur = self._pos, None
        fills: list[torch.Tensor] = []

        def buffer(n: int) -> torch.Tensor:
            i = len(fills)
            if i == len(self._plan_bufs):
                self._plan_bufs.append(torch.empty(0, dtype=torch.float32))
            if self._plan_bufs[i].numel() < n:
                self._plan_bufs[i] = torch.empty(n, dtype=torch.float32)
            fills.append(self._plan_bufs[i][:n])
            return fills[-1]

        plan: list[tuple[torch.Tensor | None, int, int]] = []
        for n in (int(k) for k in sizes):
            if n < 0:
                raise ValueError(f"draw counts must be >= 0, got {n}")
            if n > chunk:
                plan.append((buffer(n), 0, n))
                continue
            if pos + n > chunk:
                cur, pos = buffer(chunk), 0
            plan.append((cur, pos, n))
            pos += n
        if not fills:  # every take fits the current chunk: nothing to generate
            return
        self._plan_start = (self._gen.get_state(), self._pos)
        self._plan, self._plan_end, self._plan_used = plan, (cur, pos), []
        gen = self._gen

        def fill_all() -> None:
            for f in fills:
                f.normal_(generator=gen)

        self._pending = _noise_worker().submit(fill_all)

    def _take_planned(self, n: int) -> tuple[np.ndarray, int] | None:
        """(buffer, start) of the next planned take if it is of ``n`` draws (its fill not waited for), else cancel
        the plan and return None. After the last planned take the stream goes on from the plan's last chunk."""
        buf, start, size = self._plan[0]
        if size != n:
            self._cancel_plan()
            return None
        self._plan.pop(0)
        self._plan_used.append(n)
        arr = self._np if buf is None else buf.numpy()
        if not self._plan:
            cur, pos = self._plan_end
            if cur is not None:  # the plan's last chunk becomes the stream's chunk (the old one a spare buffer)
                i = next(i for i, b in enumerate(self._plan_bufs) if b.data_ptr() == cur.data_ptr())
                self._plan_bufs[i], self._buf = self._buf, cur
                self._np = self._buf.numpy()
            self._pos = pos
            self._plan_start, self._plan_used = None, []
        return arr, start

    def _cancel_plan(self) -> None:
        """Wait for a background fill; drop the rest of a prefetch plan: rewind the generator to before the plan
        and replay, as plain takes, the planned takes already handed out (their views stay valid)."""
        self._settle()
        if not self._plan:
            return
        assert self._plan_start is not None
        gen_state, pos = self._plan_start
        used = self._plan_used
        self._plan, self._plan_end, self._plan_start, self._plan_used = [], (None, 0), None, []
        self._gen.set_state(gen_state)
        self._pos = pos
        for n in used:
            self._reserve_plain(n)
