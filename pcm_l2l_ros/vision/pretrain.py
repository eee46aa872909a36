"""Backbone pre-training: the few-shot CNN trained as an ordinary classifier of all background characters.

A good embedding with a readout learned per task rivals meta-learning (Tian et al., "Rethinking few-shot
image classification: a good embedding is all you need?", ECCV 2020); here it is the starting point for
MAML (:mod:`pcm_l2l_ros.vision.maml`, ``pcm-l2l train-cnn --init``).

Classes: every background character in each of its 4 rotations by 90 degrees (964 x 4 = 3,856 classes of
20 drawings; class ``c`` is character ``c % 964`` rotated ``c // 964`` times, the task sampler's
convention). The network is the paper's, unchanged (4 x [conv 3x3 stride 2, ReLU, BatchNorm without
affine], global max-pool; :mod:`pcm_l2l_ros.vision.model`), so it maps onto the same chip cores. On top a
temporary **cosine head** (logits = s * cos(h, w_c), scale s learned) that is thrown away at export: the
exported checkpoint has a zero readout, as MAML's start.

BatchNorm: statistics per group of ``bn_group`` images of a batch (the whole batch by default), the same
no-affine BN as at deployment, where a task's support or query set is one group.

Augmentation (light, per image): a random affine map — rotation up to ``aug_rot_deg`` degrees, scale
1 +- ``aug_scale``, translation up to ``aug_shift_px`` pixels — resampled bilinearly with zero (=
background) outside the image.

Optimiser: Adam with a one-cycle learning rate (linear warm-up over ``warmup`` of the run to ``lr_max``,
cosine decay to ``lr_max / 1000``), weight decay ``weight_decay`` (decoupled, AdamW).

Hardware-aware option (``weight_noise``, ``mvm_noise``, off by default): the convolutions are read as a
simulated chip reads them, as in ``pcm-l2l train-cnn`` (docs/vision_training.md §3): per step the kernels get
Gaussian noise relative to each column's full scale, and every conv output per-MVM noise relative to its DAC scale
and column full scale, both drawn from the step's generator.

Reproducible and resumable: the order of images in epoch ``e`` is ``default_rng([seed, e]).permutation``;
the augmentation of global step ``t`` is drawn from a ``torch.Generator`` seeded by ``(seed, t)``; the
learning rate is a function of ``t``. ``state.pt`` (atomic writes every ``ckpt_every`` steps and at the end)
holds the weights, the head, the optimiser state and ``t``, so a resumed run equals an uninterrupted one.
``metrics.csv`` has one row per step (loss, batch accuracy, learning rate) and, every epoch, the few-shot
accuracy of a zero readout adapted by the delta rule on ``monitor_tasks`` fixed evaluation-split tasks
(monitoring only; nothing is selected on it).
"""

from __future__ import annotations

import csv
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pcm_l2l_ros.checkpoint import torch_load
from pcm_l2l_ros.training import StopRequest, drop_rows_after, run_loop, save_state
from pcm_l2l_ros.vision import model as M

log = logging.getLogger(__name__)

CSV_FIELDS = ["step", "epoch", "wall_s", "lr", "loss", "acc", "monitor_5w1s", "monitor_20w1s"]


@dataclass
class PretrainSettings:
    epochs: int = 30
    batch: int = 256
    bn_group: int = 0  # images per BN statistics group (0: the whole batch)
    lr_max: float = 3e-3
    warmup: float = 0.15  # fraction of the steps spent warming up
    weight_decay: float = 5e-4
    channels: int = 56
    rotations: bool = True
    aug_shift_px: float = 2.0
    aug_rot_deg: float = 10.0
    aug_scale: float = 0.1
    head_scale0: float = 10.0
    label_smoothing: float = 0.1
    weight_noise: M.WeightNoise = 0.0  # hardware-aware: kernels read as W + this * max|W_col| * N(0, 1) per step
    #   (a scalar, or one value per conv layer)
    mvm_noise: float = 0.0  # hardware-aware: per-MVM conv output noise (model.features)
    seed: int = 0
    ckpt_every: int = 200
    monitor_tasks: int = 100  # per monitored setting, every epoch (0: off)

    def validate(self) -> None:
        if self.epochs < 1 or self.batch < 2:
            raise ValueError("epochs must be >= 1 and batch >= 2")
        if self.bn_group and (self.bn_group < 2 or self.batch % self.bn_group):
            raise ValueError(f"bn_group {self.bn_group} must be >= 2 and divide the batch {self.batch}")
        if not (self.lr_max > 0 and 0 <= self.warmup < 1):
            raise ValueError("lr_max must be > 0 and warmup in [0, 1)")


def class_images(images: np.ndarray, rotations: bool) -> np.ndarray:
    """(n_chars, drawers, H, W) -> (n_classes, drawers, H, W); class c = char c % n_chars rotated c // n_chars."""
    images = np.asarray(images, np.float32)
    if not rotations:
        return images
    return np.concatenate([np.rot90(images, k=k, axes=(2, 3)) for k in range(4)], axis=0)


def one_cycle_lr(step: int, total: int, lr_max: float, warmup: float) -> float:
    """Learning rate of global step ``step`` (0-based) of ``total``: linear warm-up, cosine decay."""
    w = max(1, int(round(warmup * total)))
    if step < w:
        return lr_max * (0.04 + 0.96 * step / w)
    frac = (step - w) / max(1, total - w)
    return lr_max * (1e-3 + (1 - 1e-3) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))


def augment(x: torch.Tensor, gen: torch.Generator, shift_px: float, rot_deg: float, scale: float) -> torch.Tensor:
    """Random affine map per image; x (N, 1, H, W), ink = 1, zero outside."""
    n, _, h, w = x.shape
    u = torch.rand(n, 4, generator=gen) * 2 - 1
    th = u[:, 0] * math.radians(rot_deg)
    sc = 1 + u[:, 1] * scale
    tx, ty = u[:, 2] * shift_px * 2 / w, u[:, 3] * shift_px * 2 / h
    cos, sin = torch.cos(th) / sc, torch.sin(th) / sc
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def cosine_logits(h: torch.Tensor, head: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """h (N, C), head (C, classes) -> scale * cos(h, head_c), (N, classes)."""
    return scale * F.normalize(h, dim=1) @ F.normalize(head, dim=0)


class Pretrainer:
    """Owns weights, head, optimiser; ``run_dir`` holds state.pt and metrics.csv (see the module doc)."""

    def __init__(self, s: PretrainSettings, run_dir: str | Path, train_images: np.ndarray,
                 monitor_images: np.ndarray | None = None, resume: bool = False):
        s.validate()
        self.s = s
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.cfg = M.CNNConfig(ways=5, channels=s.channels, input_convention="ink1", padding="symmetric")
        self.data = torch.from_numpy(np.ascontiguousarray(class_images(train_images, s.rotations)))
        self.n_classes, self.n_drawers = self.data.shape[:2]
        self.n_images = self.n_classes * self.n_drawers
        self.steps_per_epoch = self.n_images // s.batch
        self.total_steps = s.epochs * self.steps_per_epoch
        rng = np.random.default_rng(s.seed)
        self.params = M.to_torch({k: v for k, v in M.init_params(self.cfg, rng).items() if k != "readout"},
                                 requires_grad=True)
        head = rng.standard_normal((s.channels, self.n_classes)).astype(np.float32) / math.sqrt(s.channels)
        self.head = torch.tensor(head, requires_grad=True)
        self.scale = torch.tensor(float(s.head_scale0), requires_grad=True)
        self.opt = torch.optim.AdamW([*self.params.values(), self.head, self.scale], lr=s.lr_max,
                                     weight_decay=s.weight_decay)
        self.step_count = 0
        self.wall_s = 0.0
        self.monitor_images = monitor_images
        self.state_path = self.run_dir / "state.pt"
        self.csv_path = self.run_dir / "metrics.csv"
        if resume and self.state_path.is_file():
            self._load()
        elif not resume and self.csv_path.exists():
            raise FileExistsError(f"{self.run_dir} already has a run; use --resume or a new --run-dir")

    # ------------------------------------------------------------------ state
    def _save(self) -> None:
        st = {"params": {k: v.detach().clone() for k, v in self.params.items()}, "head": self.head.detach().clone(),
              "scale": float(self.scale.detach()), "opt": self.opt.state_dict(), "step": self.step_count,
              "wall_s": self.wall_s, "settings": asdict(self.s)}
        save_state(st, self.state_path)

    def _load(self) -> None:
        st = torch_load(self.state_path)
        saved = PretrainSettings(**st["settings"])
        if (saved.epochs, saved.batch, saved.seed, saved.channels) != (self.s.epochs, self.s.batch, self.s.seed,
                                                                      self.s.channels):
            raise ValueError(f"{self.state_path} was made with epochs/batch/seed/channels {saved.epochs}/"
                             f"{saved.batch}/{saved.seed}/{saved.channels}; resume with the same values")
        with torch.no_grad():
            for k, v in st["params"].items():
                self.params[k].copy_(torch.as_tensor(v))
            self.head.copy_(torch.as_tensor(st["head"]))
            self.scale.fill_(st["scale"])
        self.opt.load_state_dict(st["opt"])
        self.step_count, self.wall_s = int(st["step"]), float(st["wall_s"])
        drop_rows_after(self.csv_path, "step", self.step_count, CSV_FIELDS)  # rows after it are recomputed identically
        log.info("resumed %s at step %d of %d", self.run_dir, self.step_count, self.total_steps)

    def last_metrics(self, window: int = 100) -> dict[str, float]:
        """Mean loss/accuracy of the last ``window`` steps and the last monitor values (for sidecars)."""
        if not self.csv_path.exists():
            return {}
        with self.csv_path.open() as f:
            rows = list(csv.DictReader(f))
        out: dict[str, float] = {}
        tail = rows[-window:]
        if tail:
            out[f"train_loss_last{len(tail)}"] = round(float(np.mean([float(r["loss"]) for r in tail])), 5)
            out[f"train_acc_last{len(tail)}"] = round(float(np.mean([float(r["acc"]) for r in tail])), 5)
        for k in ("monitor_5w1s", "monitor_20w1s"):
            vals = [r[k] for r in rows if r.get(k)]
            if vals:
                out[f"{k}_last"] = float(vals[-1])
        return out

    def numpy_params(self, ways: int) -> dict[str, np.ndarray]:
        """The backbone with a zero ``(channels, ways)`` readout: a ``cnn_maml`` checkpoint's arrays."""
        p = M.to_numpy(self.params)
        p["readout"] = np.zeros((self.s.channels, ways), np.float32)
        return p

    # ------------------------------------------------------------------ training
    def batch_indices(self, step: int) -> np.ndarray:
        epoch, i = divmod(step, self.steps_per_epoch)
        perm = np.random.default_rng([self.s.seed, epoch]).permutation(self.n_images)
        return perm[i * self.s.batch:(i + 1) * self.s.batch]

    def step(self) -> dict[str, float]:
        s = self.s
        idx = self.batch_indices(self.step_count)
        cls = torch.from_numpy(idx // self.n_drawers)
        x = self.data.view(-1, 1, *self.data.shape[2:])[torch.from_numpy(idx)]
        gen = torch.Generator().manual_seed(s.seed * 1_000_003 + self.step_count)
        x = augment(x, gen, s.aug_shift_px, s.aug_rot_deg, s.aug_scale)
        groups = s.batch // s.bn_group if s.bn_group else 1
        params = self.params
        if M.any_weight_noise(s.weight_noise):  # one simulated chip per step (as train-cnn --weight-noise)
            params = M.noisy_conv_kernels(self.params, s.weight_noise,
                                          lambda shape: torch.randn(shape, generator=gen))
        h = M.features(params, x.reshape(groups, -1, *x.shape[2:]), self.cfg, s.mvm_noise, gen).reshape(s.batch, -1)
        logits = cosine_logits(h, self.head, self.scale)
        loss = F.cross_entropy(logits, cls, label_smoothing=s.label_smoothing)
        lr = one_cycle_lr(self.step_count, self.total_steps, s.lr_max, s.warmup)
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        self.step_count += 1
        acc = float((logits.argmax(1) == cls).float().mean())
        return {"loss": float(loss.detach()), "acc": acc, "lr": lr}

    def monitor(self) -> dict[str, float]:
        """Few-shot accuracy (zero readout, the paper's 4 delta-rule steps) on fixed evaluation-split tasks."""
        from pcm_l2l_ros.vision.maml import evaluate_software  # noqa: PLC0415
        from pcm_l2l_ros.vision.sampler import TaskSampler  # noqa: PLC0415

        if self.monitor_images is None or not self.s.monitor_tasks:
            return {}
        out = {}
        for ways in (5, 20):
            cfg = M.CNNConfig(ways=ways, channels=self.s.channels)
            acc = evaluate_software(self.numpy_params(ways), cfg, TaskSampler(self.monitor_images, ways, 1, 5),
                                    self.s.monitor_tasks, np.random.default_rng(12345 + ways))
            out[f"monitor_{ways}w1s"] = round(float(acc[:, -1].mean()), 4)
        return out

    def train(self, deadline_unix: float | None = None, progress: bool = True,
              max_steps: int | None = None, stop: StopRequest | None = None) -> int:
        """Train to the end of the schedule (or ``max_steps`` total, or the deadline, or ``stop``, checked
        between steps); returns the step."""
        end = self.total_steps if max_steps is None else min(max_steps, self.total_steps)
        return run_loop(self._logged_step, self.step_count, end, self._save, self.s.ckpt_every, self.csv_path,
                        CSV_FIELDS, deadline_unix=deadline_unix, stop=stop, progress=progress, unit="step")

    def _logged_step(self) -> tuple[int, dict[str, Any], dict[str, str]]:
        """One step (timed) with its metrics.csv row (the monitor at each epoch's end) and bar postfix."""
        t0 = time.perf_counter()
        r = self.step()
        self.wall_s += time.perf_counter() - t0
        row: dict[str, Any] = {"step": self.step_count, "epoch": self.step_count // self.steps_per_epoch,
                               "wall_s": round(self.wall_s, 2), "lr": f"{r['lr']:.6g}",
                               "loss": round(r["loss"], 5), "acc": round(r["acc"], 4)}
        if self.step_count % self.steps_per_epoch == 0 or self.step_count == self.total_steps:
            row.update(self.monitor())
        return self.step_count, row, {"loss": f"{r['loss']:.3f}", "acc": f"{r['acc']:.3f}", "lr": f"{r['lr']:.2g}"}
