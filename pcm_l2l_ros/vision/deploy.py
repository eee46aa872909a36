"""The few-shot CNN on simulated PCM cores, with on-chip readout adaptation (paper-notes §3.3, §3.5, §4.4).

Mapping (ours). Every layer is one :class:`pcm_l2l_ros.pcm.PCMArray` holding its im2col matrix
W (n_in, n_out), y = x @ W:

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
and the final global max-pool are digital (host).

On-chip adaptation (delta rule): per step the support features h go through the readout on the chip,
the host computes p = softmax(h W) and dW = alpha * mean((y - p) h^T) (= -alpha * dL_CE/dW), and
``PCMArray.reprogram`` quantises dW to the device resolution (update quantum = w_max / 16 of the readout
core) and re-programs only the devices whose quantised target changed. A task adapts a **fork** of the
meta-trained readout (the shared chip state is never modified).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pcm_l2l_ros.vision import model as M

log = logging.getLogger(__name__)


def conv_matrix(kernel_oihw: np.ndarray) -> np.ndarray:
    """OIHW kernel -> im2col matrix (C_in * 9, C_out), rows ordered (c, kh, kw) like F.unfold."""
    k = np.asarray(kernel_oihw, np.float32)
    return np.ascontiguousarray(k.reshape(k.shape[0], -1).T)


def im2col(x: torch.Tensor, padding: str) -> tuple[torch.Tensor, int, int]:
    """x (N, C, H, W) -> patches (N * L, C * 9) for a 3x3 stride-2 conv, plus the output H, W."""
    xp = M._pad(x, padding)
    cols = F.unfold(xp, kernel_size=3, stride=2)  # (N, C*9, L)
    h = (xp.shape[-2] - 3) // 2 + 1
    w = (xp.shape[-1] - 3) // 2 + 1
    return cols.transpose(1, 2).reshape(-1, cols.shape[1]), h, w


@dataclass
class AdaptResult:
    """Result of :meth:`FewShotChip.adapt_and_classify`.

    labels: (nq,) predicted class after the last step; probs: (nq, ways) softmax after the last step;
    step_labels: (steps + 1, nq) predictions after each inner step (0 = meta-trained init);
    devices_written: physical devices written by the readout updates of this task (all steps);
    devices_written_per_step, weights_changed_per_step: per inner step;
    timings: seconds for 'features', 'adapt', 'classify'.
    """

    labels: np.ndarray
    probs: np.ndarray
    step_labels: np.ndarray
    devices_written: int
    devices_written_per_step: list[int]
    weights_changed_per_step: list[int]
    timings: dict[str, float] = field(default_factory=dict)


def chip_configs(preset: str = "hermes", **kw: Any) -> Any:
    """Our default PCM configuration for the CNN: HERMES-like device (2 + 2 devices per weight, 8-bit
    DAC/ADC, per-MVM read noise, per-column drift compensation) with a **per-column** weight scale
    (w_max per crossbar column; with one w_max per core the heavy-tailed conv kernels lose ~5 points) and
    stochastic rounding of the readout updates (as the official code's PCM mode). ``preset='ideal'``
    switches every non-ideality off. Extra keywords go to ``PCMConfig.replace``."""
    from pcm_l2l_ros.pcm import PCMConfig  # noqa: PLC0415

    if preset == "ideal":
        base = PCMConfig.ideal(update_rounding="stochastic")
    elif preset == "hermes":
        base = PCMConfig.hermes_like(scale="per_column", update_rounding="stochastic")
    else:
        raise ValueError(f"unknown preset {preset!r}")
    return base.replace(**kw) if kw else base


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

    # ------------------------------------------------------------------ forward
    def features(self, x_groups: np.ndarray, stats_from: list[torch.Tensor] | None = None,
                 return_stats: bool = False):
        """ink-1 images (G, n, 28, 28) -> features h (G, n, channels), conv layers on the chip.

        BatchNorm statistics per group (transductive), or taken from ``stats_from`` (one (G, 2, C) tensor
        per layer, e.g. the support set's, returned with ``return_stats=True``).
        """
        x = M.prepare_input(x_groups, self.cfg)
        g, n = x.shape[:2]
        y = x.reshape(g * n, 1, *x.shape[2:])
        stats = []
        for i, name in enumerate(M.CONV_NAMES):
            cols, h, w = im2col(y, self.cfg.padding)
            out = torch.from_numpy(self.convs[name].mvm(cols.numpy()))  # (N*L, C_out)
            y = F.relu(out.reshape(g * n, h * w, -1).transpose(1, 2).reshape(g * n, -1, h, w))
            c = y.shape[1]
            yg = y.reshape(g, n, c, h, w)
            st = (stats_from[i] if stats_from is not None else
                  torch.stack([yg.mean(dim=(1, 3, 4)), yg.var(dim=(1, 3, 4), unbiased=False)], dim=1))
            stats.append(st)
            y = M.batch_norm_groups(y, g, self.cfg.bn_eps, st)
        h = y.amax(dim=(2, 3)).reshape(g, n, -1).numpy()
        return (h, stats) if return_stats else h

    # ------------------------------------------------------------------ adaptation
    def adapt_and_classify(self, support_x: np.ndarray, support_y: np.ndarray, query_x: np.ndarray,
                           inner_steps: int | None = None, drift_time_s: float | None = None,
                           rng: np.random.Generator | int | None = None,
                           bn_stats: str = "transductive") -> AdaptResult:
        """Learn a new task on the chip and classify ``query_x``.

        support_x (ns, 28, 28) float ink = 1, support_y (ns,) ints in [0, ways), query_x (nq, 28, 28).
        inner_steps: delta-rule steps (default cfg.inner_steps). drift_time_s: if given and different from
        the chip's clock, first let the chip drift to this time since programming. rng: random draws of
        this task's readout writes. bn_stats: 'transductive' (query set normalised with its own
        statistics, as in training) or 'support' (query normalised with the support statistics; use
        this for very few query images, e.g. one camera frame).
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
        if bn_stats == "support":
            hs, st = self.features(np.asarray(support_x)[None], return_stats=True)
            hq = self.features(np.asarray(query_x)[None], stats_from=st)
        elif bn_stats == "transductive":
            hs = self.features(np.asarray(support_x)[None])
            hq = self.features(np.asarray(query_x)[None])
        else:
            raise ValueError(f"bn_stats must be 'transductive' or 'support', got {bn_stats!r}")
        t1 = time.perf_counter()
        res = self.adapt_features(hs[0], ys, hq[0], steps, rng)
        res.timings["features"] = t1 - t0
        return res

    def adapt_features(self, hs: np.ndarray, ys: np.ndarray, hq: np.ndarray, steps: int,
                       rng: np.random.Generator) -> AdaptResult:
        """The on-chip inner loop on given features (hs (ns, C), hq (nq, C)); see adapt_and_classify."""
        t1 = time.perf_counter()
        arr = self.readout.fork(rng)
        onehot = np.eye(self.ways, dtype=np.float32)[ys]
        t_cls = 0.0
        tc = time.perf_counter()
        step_labels = [arr.mvm(hq).argmax(1)]
        t_cls += time.perf_counter() - tc
        written, changed = [], []
        for _ in range(steps):
            p = _softmax(arr.mvm(hs))  # support forward on the chip
            dw = self.cfg.inner_lr * hs.T @ (onehot - p) / hs.shape[0]  # delta rule on the host
            rep = arr.reprogram(dw)  # quantise + sparse reprogramming of the fork
            written.append(int(rep.devices_written))
            changed.append(int(rep.weights_changed))
            tc = time.perf_counter()
            step_labels.append(arr.mvm(hq).argmax(1))
            t_cls += time.perf_counter() - tc
        probs = _softmax(arr.mvm(hq))
        t2 = time.perf_counter()
        return AdaptResult(labels=probs.argmax(1), probs=probs, step_labels=np.stack(step_labels),
                           devices_written=int(sum(written)), devices_written_per_step=written,
                           weights_changed_per_step=changed,
                           timings={"adapt": t2 - t1 - t_cls, "classify": t_cls})


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)
