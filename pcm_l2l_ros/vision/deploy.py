"""The few-shot CNN on simulated PCM cores, with on-chip readout adaptation (docs/architecture.md §3).

Mapping (ours). Every layer is one :class:`pcm_l2l_ros.pcm.PCMArray` holding its im2col matrix
W (n_in, n_out), y = x @ W (rows ordered kernel row, kernel column, input channel):

=========  ===============  ==========================  ===========================
layer      matrix           rows over 256-row cores     devices (4 per weight)
=========  ===============  ==========================  ===========================
conv1      9 x 56           1 block                     2,016
conv2      504 x 56         2 blocks (256 + 248 rows)   112,896
conv3      504 x 56         2 blocks                    112,896
conv4      504 x 56         2 blocks                    112,896
readout    56 x ways        1 block                     224 * ways (1,120 for 5-way)
=========  ===============  ==========================  ===========================

Total 340,704 + 224 * ways devices (341,824 for 5-way, 345,184 for 20-way) vs the paper's 342,720 (its
extra 224 devices are most likely one bias row per conv channel; we have no biases). Physically this fits
the paper's two 256 x 256 cores (4R8T cells, 4 devices per weight): core A holds rows 0-255 of
conv2/conv3/conv4 (3 x 56 columns) + conv1 (56 columns) + the readout (``ways`` columns) = 224 + ways
<= 256 columns; core B holds rows 256-503 of conv2-4 (168 columns). Layers sharing a core use disjoint
columns and are run as separate MVMs; the two row halves of conv2-4 are summed digitally. The
simulation keeps one PCMArray per layer (tiling over 256-row cores as above), which gives the same
per-core w_max, DAC/ADC and drift compensation as this placement.

Per layer on the chip: im2col patches -> DAC (signed, ``dac_bits``) -> crossbar MVM -> ADC
(``adc_bits``) -> digital drift compensation; then ReLU, BatchNorm (no affine, per-task statistics)
and the final global max-pool are digital (host). Blank conv1 patches (no ink: an all-zero input vector,
no DAC pulse) are not read and give 0 (event-driven, as the spiking controller's reads).

On-chip adaptation (delta rule): per step the support features h go through the readout on the chip,
the host computes p = softmax(h W) and dW = alpha * mean((y - p) h^T) (= -alpha * dL_CE/dW), and
``PCMArray.reprogram`` quantises dW to the device resolution (update quantum = w_max / 16 of the readout
core) and re-programs only the devices whose quantised target changed. A task adapts a **fork** of the
meta-trained readout (the shared chip state is never modified).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pcm_l2l_ros.arrays import work_array
from pcm_l2l_ros.vision import model as M
from pcm_l2l_ros.vision._kernels import nonzero_rows, relu_batchnorm_
from pcm_l2l_ros.vision.shifts import mean_over_copies, shifted_set, tile_labels

log = logging.getLogger(__name__)


def conv_matrix(kernel_oihw: np.ndarray) -> np.ndarray:
    """OIHW kernel -> im2col matrix (9 * C_in, C_out), rows ordered (kh, kw, c) like :func:`im2col`."""
    k = np.asarray(kernel_oihw, np.float32)
    return np.ascontiguousarray(k.transpose(2, 3, 1, 0).reshape(-1, k.shape[0]))


def conv_chip_error(params: dict[str, np.ndarray], pcm_cfg: Any, rng: np.random.Generator,
                    drift_s: float = 3600.0) -> dict[str, np.ndarray]:
    """What one freshly programmed chip adds to each conv kernel, read ``drift_s`` seconds after programming.

    Each layer's im2col matrix is programmed on a :class:`~pcm_l2l_ros.pcm.PCMArray` (programming noise,
    drift with drift compensation, the frozen read noise and the per-column scale of ``pcm_cfg``); the
    result is its effective weights minus the kernel, back in OIHW (weight units). Hardware-aware training
    reads the kernels as W + error (chip in the loop)."""
    from pcm_l2l_ros.pcm import PCMArray  # noqa: PLC0415

    out = {}
    for name in M.CONV_NAMES:
        k = np.asarray(params[name], np.float32)
        mat = conv_matrix(k)
        arr = PCMArray(mat, pcm_cfg, rng)
        if drift_s > 0:
            arr.drift(drift_s)
        err = (arr.weights() - mat).astype(np.float32)  # (9 * C_in, C_out), rows (kh, kw, c)
        o, i, kh, kw = k.shape
        out[name] = np.ascontiguousarray(err.reshape(kh, kw, i, o).transpose(3, 2, 0, 1))
    return out


def im2col(y: np.ndarray, padding: str, alloc=None) -> tuple[np.ndarray, int, int]:
    """Channels-last maps y (N, H, W, C) -> patches (N * h * w, 9 * C) for a 3x3 stride-2 conv (columns
    ordered (kh, kw, c) like :func:`conv_matrix`, so the copy moves contiguous runs of C channels; patch
    order (n, i, j)), plus the output h, w. One strided view, one copy. ``alloc(tag, shape)`` gives the
    padded map ("pad") and the patch matrix ("cols") as float32 arrays (default: new arrays)."""
    alloc = alloc or (lambda _tag, shape: np.empty(shape, np.float32))
    n, hh, ww, c = y.shape
    t, b, left, right = M.pad_amounts(hh, ww, padding)
    yp = alloc("pad", (n, hh + t + b, ww + left + right, c))
    yp[:, :t], yp[:, t + hh:], yp[:, :, :left], yp[:, :, left + ww:] = 0.0, 0.0, 0.0, 0.0  # the zero border
    yp[:, t:t + hh, left:left + ww] = y
    h, w = _conv_out(hh, ww, padding)
    sn, sh, sw, sc = yp.strides
    v = np.lib.stride_tricks.as_strided(yp, (n, h, w, 3, 3, c), (sn, 2 * sh, 2 * sw, sh, sw, sc), writeable=False)
    cols = alloc("cols", (n * h * w, 9 * c))
    np.copyto(cols.reshape(n, h, w, 3, 3, c), v)
    return cols, h, w


@dataclass
class AdaptResult:
    """Result of :meth:`FewShotChip.adapt_and_classify`.

    labels: (nq,) predicted class after the last step; probs: (nq, ways) softmax after the last step;
    step_labels: (steps + 1, nq) predictions after each inner step (0 = meta-trained init);
    devices_written: physical device writes by the readout updates of this task (sum over the steps; a
        device written in two steps counts twice);
    devices_written_distinct: physical devices written at least once in this task (each counted once);
    devices_written_per_step, weights_changed_per_step: per inner step;
    timings: seconds for 'features', 'adapt', 'classify';
    readout_pulses: write pulses each physical readout device received in this task, shaped like the readout's
        ``write_counts`` (the adapted fork's counts minus the shared chip's; the vision node sums them into the
        wear a physical readout would accumulate over requests).
    """

    labels: np.ndarray
    probs: np.ndarray
    step_labels: np.ndarray
    devices_written: int
    devices_written_distinct: int
    devices_written_per_step: list[int]
    weights_changed_per_step: list[int]
    timings: dict[str, float] = field(default_factory=dict)
    readout_pulses: np.ndarray | None = None


def chip_configs(preset: str = "hermes_per_column", **kw: Any) -> Any:
    """The CNN's PCM configuration: a named chip of :mod:`pcm_l2l_ros.pcm.presets` (default
    ``hermes_per_column``: HERMES-like device, 2 + 2 devices per weight, 8-bit DAC/ADC, per-MVM read noise,
    per-column drift compensation and a **per-column** weight scale; with one w_max per core the heavy-tailed
    conv kernels lose ~5 points; ``"hermes"`` is its old name, ``"ideal"`` switches every non-ideality off)
    with stochastic rounding of the readout updates (as the official code's PCM mode). Extra keywords
    override PCMConfig fields."""
    from pcm_l2l_ros.pcm import chip  # noqa: PLC0415

    return chip(preset, **{"update_rounding": "stochastic", **kw})


class FewShotChip:
    """The meta-trained CNN programmed onto simulated PCM cores.

    Args:
        params: conv1..conv4 (OIHW) and readout (channels, ways), as in our checkpoints.
        cfg: the network's :class:`~pcm_l2l_ros.vision.model.CNNConfig` (input convention, BN eps, ...).
        pcm_cfg: :class:`pcm_l2l_ros.pcm.PCMConfig` for the conv layers (e.g. ``PCMConfig.hermes_like()``).
        rng: numpy Generator or int seed (programming noise etc. of the shared chip).
        readout_pcm_cfg: PCMConfig of the readout (default: ``pcm_cfg`` with ``w_max = readout_w_max``).
        readout_w_max: full-scale weight of the readout core (default ``cfg.readout_w_max``, calibrated
            on meta-training tasks at export, else max|W_init|); the update quantum is readout_w_max / 16.
    Not thread-safe (work arrays, the arrays' noise streams): one chip (e.g. a deep copy) per thread.
    """

    def __init__(self, params: dict[str, np.ndarray], cfg: M.CNNConfig, pcm_cfg: Any,
                 rng: np.random.Generator | int | None = None, readout_pcm_cfg: Any = None,
                 readout_w_max: float | None = None):
        from pcm_l2l_ros.pcm import PCMArray  # noqa: PLC0415
        from pcm_l2l_ros.vision.maml import default_readout_wmax  # noqa: PLC0415

        self.cfg = cfg
        self.rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        self.w_init = np.asarray(params["readout"], np.float32)
        self.readout_w_max = float(readout_w_max if readout_w_max is not None
                                   else default_readout_wmax(self.w_init, cfg))
        self.pcm_cfg = pcm_cfg
        self.readout_pcm_cfg = (readout_pcm_cfg if readout_pcm_cfg is not None
                                else pcm_cfg.replace(w_max=self.readout_w_max, scale="per_core"))
        self.convs = {name: PCMArray(conv_matrix(params[name]), pcm_cfg, self.rng) for name in M.CONV_NAMES}
        self.readout = PCMArray(self.w_init, self.readout_pcm_cfg, self.rng)
        self.t_s = 0.0
        self._buffers: dict[str, np.ndarray] = {}  # per-layer work arrays reused across requests (_work)

    @classmethod
    def from_checkpoint(cls, path: str | Path, pcm_cfg: Any, rng: np.random.Generator | int | None = None,
                        **kw: Any) -> FewShotChip:
        params, cfg, _ = M.load_model(path)
        return cls(params, cfg, pcm_cfg, rng, **kw)

    # ------------------------------------------------------------------ bookkeeping
    @property
    def ways(self) -> int:
        return int(self.w_init.shape[1])

    def device_counts(self) -> dict[str, int]:
        """Physical devices per layer and in total."""
        d = {name: int(a.n_devices) for name, a in self.convs.items()}
        d["readout"] = int(self.readout.n_devices)
        d["total"] = sum(d.values())
        return d

    def drift(self, t_s: float) -> None:
        """Let ``t_s`` seconds pass since programming (all layers; drift compensation is recomputed)."""
        for a in self.convs.values():
            a.drift(t_s)
        self.readout.drift(t_s)
        self.t_s = float(t_s)

    def warm_up(self, shots: Sequence[int] = (1, 5), queries: int = 5, seed: int = 0) -> float:
        """Run synthetic ``ways``-way tasks (each of ``shots`` per class, ``queries`` per class) through the
        whole request path of this chip, so the first real request does not pay for loading the compiled
        kernels, the first torch/BLAS calls, the noise worker or first touches of the MVM buffers. The noise
        streams are rewound afterwards (and the readout is adapted on a fork, as always): the chip answers
        every later request exactly as without the warm-up. Returns the seconds spent."""
        t0 = time.perf_counter()
        arrays = [*self.convs.values(), self.readout]
        saved = [a.noise_checkpoint() for a in arrays]
        rng = np.random.default_rng(seed)
        try:
            for k in shots:
                ys = np.repeat(np.arange(self.ways), k)
                sx = (rng.random((len(ys), 28, 28)) < 0.15).astype(np.float32)  # random ink: conv1 is read too
                qx = (rng.random((self.ways * queries, 28, 28)) < 0.15).astype(np.float32)
                self.adapt_and_classify(sx, ys, qx, rng=rng, track_steps=False)
        finally:
            for a, state in zip(arrays, saved, strict=True):
                a.restore_noise(state)
        return time.perf_counter() - t0

    # ------------------------------------------------------------------ forward
    def features(self, x_groups: Sequence[np.ndarray] | np.ndarray,
                 bn_source: Sequence[int] | None = None) -> list[np.ndarray]:
        """Sets of ink-1 images -> their features, conv layers on the chip, all sets in one pass per layer.

        x_groups: G image sets, each (n_g, 28, 28) (an array (G, n, 28, 28) or a list; sizes may differ).
        BatchNorm (no affine) normalises set g with the statistics of set ``bn_source[g]`` (default: its
        own, i.e. transductive per set; ``[0, 0]`` for a support and a query set normalises the query with
        the support statistics). Activations stay channels-last (N, H, W, C) float32 on the host.
        Returns a list of G arrays (n_g, channels).
        """
        sets = [np.asarray(x, np.float32) for x in x_groups]
        sizes = [len(x) for x in sets]
        src = list(range(len(sets))) if bn_source is None else [int(i) for i in bn_source]
        if len(src) != len(sets) or any(not 0 <= i < len(sets) for i in src):
            raise ValueError(f"bn_source must give a set index in [0, {len(sets)}) for each of the sets")
        bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)   # images of each set
        src_a = np.asarray(src, np.int64)
        y = M.prepare_input(np.concatenate(sets), self.cfg).numpy()[..., None]  # (N, 28, 28, 1)
        n_img = int(bounds[-1])
        for i, name in enumerate(M.CONV_NAMES):
            cols, h, w = im2col(y, self.cfg.padding, lambda tag, shape, i=i: self._work(f"{tag}{i}", shape))
            active = None
            if i == 0:  # the input layer reads only the patches with ink; every layer's batch is now known:
                active = nonzero_rows(cols)                # the noise of all four MVMs is drawn on the
                self.convs[name].prefetch_noise(len(active))  # periphery's worker while this thread computes
                self.prefetch_noise(n_img, y.shape[1:3])   # (kept as it is when announced before)
            y = self._conv_mvm(name, cols, active)                              # (N * h * w, C) on the chip
            relu_batchnorm_(y, bounds * (h * w), src_a, float(self.cfg.bn_eps))  # ReLU + BatchNorm (host)
            y = y.reshape(int(bounds[-1]), h, w, -1)
        hmax = y.max(axis=(1, 2))                                               # global max-pool (host)
        return [hmax[a:b] for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)]

    def prefetch_noise(self, n_images: int, image_size: tuple[int, int] = (28, 28)) -> None:
        """Start drawing the MVM noise of the conv layers after the input layer for a pass of ``n_images`` images
        of ``image_size`` pixels on the periphery's worker now: a caller that knows the image count before the
        pixels (the vision node, before it decodes them) lets the draws overlap its own work. The same draws as
        without it (``PCMArray.prefetch_noise``); a pass of another size simply does not use them."""
        h, w = _conv_out(*image_size, self.cfg.padding)   # the input layer's output
        for name in M.CONV_NAMES[1:]:
            h, w = _conv_out(h, w, self.cfg.padding)
            self.convs[name].prefetch_noise(int(n_images) * h * w)

    def _work(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """A float32 work array of ``shape`` (contents undefined), this chip's ``name`` buffer kept between requests
        (:func:`pcm_l2l_ros.arrays.work_array`)."""
        return work_array(self._buffers, name, shape)

    def _conv_mvm(self, name: str, cols: np.ndarray, active: np.ndarray | None = None) -> np.ndarray:
        """The conv layer's MVM of the patches ``cols``. With ``active`` (the input layer: the indices of the patches
        with ink) the other patches (all-zero input vectors: no DAC pulse is applied) are not read and give exactly
        0, as the event-driven reads of the spiking controller; ~70 % of an Omniglot image's conv1 patches."""
        arr = self.convs[name]
        if active is None or len(active) == len(cols):
            return arr.mvm(cols)
        out = self._work("conv1_out", (len(cols), arr.n_out))
        out.fill(0.0)
        if len(active):
            out[active] = arr.mvm(cols[active])
        return out

    # ------------------------------------------------------------------ adaptation
    def adapt_and_classify(self, support_x: np.ndarray, support_y: np.ndarray, query_x: np.ndarray,
                           inner_steps: int | None = None, drift_time_s: float | None = None,
                           rng: np.random.Generator | int | None = None,
                           bn_stats: str = "transductive", track_steps: bool = True,
                           shift_px: int = 0) -> AdaptResult:
        """Learn a new task on the chip and classify ``query_x``.

        support_x (ns, 28, 28) float ink = 1, support_y (ns,) ints in [0, ways), query_x (nq, 28, 28).
        inner_steps: delta-rule steps (default cfg.inner_steps). drift_time_s: if given and different from
        the chip's clock, first let the chip drift to this time since programming. rng: random draws of
        this task's readout writes. bn_stats: 'transductive' (query set normalised with its own
        statistics, as in training) or 'support' (query normalised with the support statistics; use
        this for very few query images, e.g. one camera frame). track_steps: also classify the queries
        after every inner step (``step_labels``, the accuracy-per-step curve); False saves those reads.
        shift_px: test-time shift augmentation (:mod:`pcm_l2l_ros.vision.shifts`; 0 = off, the paper's
        protocol): support and query images also as copies shifted by up to this many pixels.
        The shared chip state is not modified (a fork of the readout is adapted).
        """
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        steps = self.cfg.inner_steps if inner_steps is None else int(inner_steps)
        if drift_time_s is not None and float(drift_time_s) != self.t_s:
            self.drift(float(drift_time_s))
        ys = np.asarray(support_y, np.int64)
        if ys.min() < 0 or ys.max() >= self.ways:
            raise ValueError(f"support labels must be in [0, {self.ways})")
        t0 = time.perf_counter()
        (hs,), (hq,) = support_query_features(self, np.asarray(support_x)[None], np.asarray(query_x)[None],
                                              bn_stats, shift_px)
        t1 = time.perf_counter()
        res = self.adapt_features(hs, tile_labels(ys, shift_px), hq, steps, rng, track_steps)
        res.timings["features"] = t1 - t0
        return res

    def adapt_features(self, hs: np.ndarray, ys: np.ndarray, hq: np.ndarray, steps: int,
                       rng: np.random.Generator, track_steps: bool = True, readout: Any = None) -> AdaptResult:
        """The on-chip inner loop on given features (hs (ns, C), hq (nq, C)); see adapt_and_classify.
        ``track_steps=False`` skips classifying the queries after every step (step_labels then holds the
        final labels only). ``readout``: another programmed readout PCMArray of this chip's shape to adapt (a
        fork of it; e.g. one programmed at another full scale), default the chip's own."""
        t1 = time.perf_counter()
        readout = self.readout if readout is None else readout
        if readout.shape != self.readout.shape:
            raise ValueError(f"readout of shape {readout.shape}, this chip's is {self.readout.shape}")
        arr = readout.fork(rng)
        onehot = np.eye(self.ways, dtype=np.float32)[ys]
        t_cls = 0.0
        tc = time.perf_counter()
        step_labels = [arr.mvm(hq).argmax(1)] if track_steps else []
        t_cls += time.perf_counter() - tc
        written, changed = [], []
        for _ in range(steps):
            p = _softmax(arr.mvm(hs))  # support forward on the chip
            dw = self.cfg.inner_lr * hs.T @ (onehot - p) / hs.shape[0]  # delta rule on the host
            rep = arr.reprogram(dw)  # quantise + sparse reprogramming of the fork
            written.append(int(rep.devices_written))
            changed.append(int(rep.weights_changed))
            if track_steps:
                tc = time.perf_counter()
                step_labels.append(arr.mvm(hq).argmax(1))
                t_cls += time.perf_counter() - tc
        tc = time.perf_counter()
        probs = _softmax(arr.mvm(hq))
        t_cls += time.perf_counter() - tc
        if not track_steps:
            step_labels.append(probs.argmax(1))
        pulses = arr.write_counts - readout.write_counts  # fork vs shared
        distinct = int(np.count_nonzero(pulses))
        t2 = time.perf_counter()
        return AdaptResult(labels=probs.argmax(1), probs=probs, step_labels=np.stack(step_labels),
                           devices_written=int(sum(written)), devices_written_distinct=distinct,
                           devices_written_per_step=written,
                           weights_changed_per_step=changed,
                           timings={"adapt": t2 - t1 - t_cls, "classify": t_cls}, readout_pulses=pulses)


def _conv_out(h: int, w: int, padding: str) -> tuple[int, int]:
    """Output size of a 3x3 stride-2 conv layer on an h x w map (as :func:`im2col`)."""
    t, b, left, right = M.pad_amounts(h, w, padding)
    return (h + t + b - 3) // 2 + 1, (w + left + right - 3) // 2 + 1


def _bn_source(bn_stats: str, n_tasks: int) -> list[int]:
    """``features`` bn_source for sets [support_1..n, query_1..n]: 'transductive' (each set its own
    statistics) or 'support' (each query set with its task's support statistics)."""
    if bn_stats == "transductive":
        return list(range(2 * n_tasks))
    if bn_stats == "support":
        return list(range(n_tasks)) * 2
    raise ValueError(f"bn_stats must be 'transductive' or 'support', got {bn_stats!r}")


def support_query_features(chip: FewShotChip, support_x: np.ndarray, query_x: np.ndarray,
                           bn_stats: str = "transductive",
                           shift_px: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Features of a batch of tasks, support_x (G, ns, 28, 28) and query_x (G, nq, 28, 28), in one chip pass;
    returns (hs, hq) as lists of G arrays. With ``shift_px`` > 0 (:mod:`pcm_l2l_ros.vision.shifts`) each hs
    holds the features of the support's shifted copies (copies * ns rows; labels: ``tile_labels``) and each
    hq the mean over each query's copies (nq rows)."""
    g = len(support_x)
    h = chip.features([shifted_set(x, shift_px) for x in support_x] + [shifted_set(x, shift_px) for x in query_x],
                      bn_source=_bn_source(bn_stats, g))
    return h[:g], [mean_over_copies(hq, shift_px) for hq in h[g:]]


def software_readout_probs(chip: FewShotChip, hs: np.ndarray, ys: np.ndarray, hq: np.ndarray) -> np.ndarray:
    """The software inner loop on given features: the delta rule in float64 from the chip's initial readout
    ``w_init`` (``cfg.inner_steps`` steps at ``cfg.inner_lr``, as meta-training), then the query class
    probabilities (nq, ways). hs (ns, C), ys (ns,) ints, hq (nq, C). The reference the chip's readout is
    compared with (conv layers on the chip or ideal, whichever produced the features)."""
    cfg = chip.cfg
    w0 = torch.as_tensor(chip.w_init, dtype=torch.float64)[None]
    ws = M.adapt_readout(torch.as_tensor(hs, dtype=torch.float64)[None], torch.as_tensor(np.asarray(ys))[None], w0,
                         cfg.inner_steps, cfg.inner_lr)
    return torch.softmax(torch.as_tensor(hq, dtype=torch.float64) @ ws[-1][0], -1).numpy()


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)
