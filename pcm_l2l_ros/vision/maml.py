"""MAML meta-training with a readout-only inner loop (Finn et al. 2017; docs/architecture.md §3.1).

Inner loop: ``inner_steps`` SGD steps (lr ``inner_lr``) on the dense readout only, i.e. the delta rule
on the frozen conv features. Outer loop: Adam on the 4 conv kernels and the readout initialisation,
second order through the inner steps (``first_order=True`` detaches each inner gradient). The outer
learning rate is ``outer_lr`` until the first of the optional ``outer_lr_steps`` (piecewise constant by
iteration, e.g. a late decay of a long run), set before every step so that resuming reproduces it.

Hardware-aware option (``weight_noise`` > 0; off by default, as for the paper's published models,
Ortner et al. 2025): every meta-batch reads the conv kernels as W + weight_noise * max|W_o| * xi, one
draw xi ~ N(0, 1) per meta-batch (one simulated chip instance for all its tasks, support and query),
with max|W_o| per output channel (= per crossbar column, the deployment's per-column w_max). The noise
is a constant of the step (gradients pass through unchanged). ``mvm_noise`` > 0 adds the chip's per-MVM
output noise to every conv output: std ``mvm_noise * s * max|W_o|`` with s the largest input of the
output's patch (the DAC scale), a fresh draw per output (:func:`pcm_l2l_ros.vision.model.features`);
under data parallelism each rank draws its own tasks' noise. ``chip_in_the_loop`` reads the conv kernels
through a simulated chip instead (or on top of ``weight_noise``): every meta-batch the kernels are programmed
on a fresh ``chip_preset`` chip (:func:`pcm_l2l_ros.vision.deploy.conv_chip_error`: programming noise, drift to
``chip_drift_s`` with its compensation, frozen read noise, per-column scale), and the chip's error is added as
a constant of the step. Our PCM model's weight error at 1 h is
about 0.035 (conv2-4) to 0.063 (conv1) of the column's w_max; ``weight_noise`` may be one value per conv layer
(conv1..conv4, :func:`pcm_l2l_ros.vision.model.noisy_conv_kernels`).

Data-parallel (``torch.distributed``, launched with ``torchrun``; gloo on CPUs, NCCL on GPUs): every rank
draws the same meta-batch from the same Generator, computes the outer loss of its own contiguous share of
the tasks, and the gradients are all-reduced (averaged) before the identical Adam step on every rank, as
``DistributedDataParallel`` does for a module. With equal shares the averaged gradient is the gradient of
the whole meta-batch, so N ranks take the same step as one process (to float tolerance). Rank 0 alone
writes ``state.pt``, ``metrics.csv`` and the monitor.

Resumable: ``state.pt`` in the run folder holds the parameters, the Adam state, the numpy Generator
state, the iteration and the run's arguments; ``metrics.csv`` gets one row per iteration.
"""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pcm_l2l_ros.checkpoint import torch_load
from pcm_l2l_ros.training import StopRequest, drop_rows_after, run_loop, save_state
from pcm_l2l_ros.vision import model as M
from pcm_l2l_ros.vision.sampler import TaskBatch, TaskSampler
from pcm_l2l_ros.vision.shifts import check_shift_px, mean_over_copies, random_shifts, shifted_set, tile_labels

log = logging.getLogger(__name__)


def task_losses(params: dict[str, torch.Tensor], batch: TaskBatch, cfg: M.CNNConfig,
                first_order: bool = False, steps: int | None = None, mvm_noise: float = 0.0,
                gen: torch.Generator | None = None, temperature: float = 1.0) -> tuple[torch.Tensor, np.ndarray]:
    """Outer loss (mean query CE after the last inner step) and query accuracy after each step (steps+1,).

    ``temperature``: the query logits are multiplied by it in the outer loss only (the inner loop, and what the
    chip predicts, the argmax, are unchanged). Four delta-rule steps of lr 0.1 leave the readout's logits small
    (query CE ~1.1 at 95 % accuracy), so every query pulls on the features about equally; a factor > 1 makes
    the outer loss weigh the queries the adapted readout gets wrong, as a metric-learning loss would."""
    steps = cfg.inner_steps if steps is None else steps
    dev = params["conv1"].device  # the batch goes where the parameters are (CPU or a GPU)
    xs = M.prepare_input(batch.support_x, cfg).to(dev)
    xq = M.prepare_input(batch.query_x, cfg).to(dev)
    ys = torch.as_tensor(batch.support_y, dtype=torch.long, device=dev)
    yq = torch.as_tensor(batch.query_y, dtype=torch.long, device=dev)
    hs = M.features(params, xs, cfg, mvm_noise, gen)
    hq = M.features(params, xq, cfg, mvm_noise, gen)
    w0 = params["readout"].unsqueeze(0).expand(hs.shape[0], -1, -1)
    ws = M.adapt_readout(hs, ys, w0, steps, cfg.inner_lr, first_order=first_order)
    logits = hq @ ws[-1]
    loss = F.cross_entropy(temperature * logits.reshape(-1, logits.shape[-1]), yq.reshape(-1))
    with torch.no_grad():
        accs = np.array([((hq @ w).argmax(-1) == yq).float().mean().item() for w in ws])
    return loss, accs


@torch.no_grad()
def evaluate_software(params: dict[str, np.ndarray], cfg: M.CNNConfig, sampler: TaskSampler, n_tasks: int,
                      rng: np.random.Generator, chunk: int = 50, bn_stats: str = "transductive",
                      quantize_bits: int | None = None, readout_scale: float | None = None,
                      shift_px: int = 0) -> np.ndarray:
    """Per-task query accuracy after each inner step, shape (n_tasks, inner_steps + 1), fp32 software.

    quantize_bits: if set, 4-bit-style software quantisation (the official code's nb-bit stochastic quantiser):
    q(w) = s * clip(round(L w / s + U(-1/2, 1/2)), -L, L - 1) / L with L = 2^(bits-1) and a per-tensor scale
    s = max|W| (our model is not quantisation-aware trained, so an absolute grid would zero conv2-4);
    the readout uses ``readout_scale`` (default 2 max|W_init|, as the chip's readout w_max) and is
    re-quantised after every update.
    shift_px: test-time shift augmentation of support and query sets (:mod:`pcm_l2l_ros.vision.shifts`).
    """
    tp = M.to_torch(params)
    out = []
    done = 0
    while done < n_tasks:
        n = min(chunk, n_tasks - done)
        b = sampler.sample_batch(rng, n)
        if quantize_bits is None:
            p = tp
        else:
            rs = readout_scale if readout_scale is not None else default_readout_wmax(params["readout"], cfg)
            p = {k: _quant(v, quantize_bits, rng, rs if k == "readout" else float(v.abs().max()))
                 for k, v in tp.items()}
        xs = M.prepare_input(shifted_set(b.support_x, shift_px), cfg)
        xq = M.prepare_input(shifted_set(b.query_x, shift_px), cfg)
        if bn_stats == "support":
            hs, hq = M.features_support_stats(p, xs, xq, cfg)
        else:
            hs, hq = M.features(p, xs, cfg), M.features(p, xq, cfg)
        hq = mean_over_copies(hq, shift_px)
        ys, yq = torch.as_tensor(tile_labels(b.support_y, shift_px)), torch.as_tensor(b.query_y)
        w = p["readout"].unsqueeze(0).expand(n, -1, -1)
        accs = [((hq @ w).argmax(-1) == yq).float().mean(1)]
        for _ in range(cfg.inner_steps):
            w = w - cfg.inner_lr * M.delta_rule_grad(hs, ys, w)
            if quantize_bits is not None:
                w = _quant(w, quantize_bits, rng, rs)
            accs.append(((hq @ w).argmax(-1) == yq).float().mean(1))
        out.append(torch.stack(accs, 1).numpy())
        done += n
    return np.concatenate(out)


def default_readout_wmax(w0: np.ndarray, cfg: M.CNNConfig | None = None) -> float:
    """Full-scale weight of the readout (chip w_max and 4-bit scale): the calibrated ``cfg.readout_w_max``
    if present, else max|W_init|."""
    if cfg is not None and cfg.readout_w_max:
        return float(cfg.readout_w_max)
    return float(max(np.abs(np.asarray(w0)).max(), 1e-3))


@torch.no_grad()
def calibrate_readout_wmax(params: dict[str, np.ndarray], cfg: M.CNNConfig, sampler: TaskSampler,
                           n_tasks: int, rng: np.random.Generator, quantile: float = 0.999) -> float:
    """Readout full scale for the chip: the ``quantile`` of |W^k| (k = 0..steps) over software adaptation
    on ``n_tasks`` tasks (use meta-training tasks: the evaluation split must not be looked at)."""
    tp = M.to_torch(params)
    b = sampler.sample_batch(rng, n_tasks)
    hs = M.features(tp, M.prepare_input(b.support_x, cfg), cfg)
    w0 = tp["readout"].unsqueeze(0).expand(n_tasks, -1, -1)
    ws = M.adapt_readout(hs, torch.as_tensor(b.support_y), w0, cfg.inner_steps, cfg.inner_lr)
    a = torch.stack(ws).abs().numpy().ravel()
    return float(np.quantile(a, quantile))


def _quant(w: torch.Tensor, bits: int, rng: np.random.Generator, scale: float) -> torch.Tensor:
    lv = 2 ** (bits - 1)
    scale = max(float(scale), 1e-12)
    u = torch.as_tensor(rng.uniform(-0.5, 0.5, size=tuple(w.shape)).astype(np.float32))
    return scale * torch.clamp(torch.round(lv * w / scale + u), -lv, lv - 1) / lv


@dataclass
class TrainSettings:
    ways: int = 5
    shots: tuple[int, ...] = (5,)
    queries: int = 5
    meta_batch: int = 8
    iterations: int = 3000
    outer_lr: float = 1e-3
    outer_lr_steps: tuple[tuple[int, float], ...] = ()  # (from iteration, lr), ascending
    first_order: bool = False
    weight_noise: M.WeightNoise = 0.0  # hardware-aware: relative conv-weight noise, scalar or per layer (module doc)
    mvm_noise: float = 0.0  # hardware-aware training: relative conv-output noise per MVM (see module doc)
    chip_in_the_loop: bool = False  # hardware-aware: conv kernels read through a freshly programmed chip per step
    chip_drift_s: float = 3600.0  # with chip_in_the_loop: read time after programming, s
    chip_preset: str = "hermes_per_column"  # with chip_in_the_loop: the chip (pcm/presets.py), as deployed
    outer_temperature: float = 1.0  # query logits x this in the outer loss only (task_losses)
    augment_px: int = 0  # every support and query image of a meta-training task moved by up to this many px
    rotations: bool = True
    seed: int = 0
    channels: int = 56
    inner_steps: int = 4
    inner_lr: float = 0.1
    ckpt_every: int = 50
    monitor_every: int = 250
    monitor_tasks: int = 100
    extra: dict[str, Any] = field(default_factory=dict)


CSV_FIELDS = ["iteration", "wall_s", "shots", "loss"] + [f"acc_step{k}" for k in range(9)] + [
    "monitor_acc_final", "outer_lr"]


def parse_lr_steps(text: str | None) -> tuple[tuple[int, float], ...]:
    """``"15000:3e-4,17000:1e-4"`` -> ((15000, 3e-4), (17000, 1e-4)): from iteration 15,000 on the outer
    learning rate is 3e-4, from 17,000 on 1e-4. Iterations must ascend; rates must be positive."""
    if not text:
        return ()
    steps = []
    for item in str(text).split(","):
        try:
            it, lr = item.split(":")
            steps.append((int(it), float(lr)))
        except ValueError:
            raise ValueError(f"outer-lr step {item!r} is not ITERATION:LR (e.g. 15000:3e-4)") from None
    its = [it for it, _ in steps]
    if any(it < 0 for it in its) or its != sorted(set(its)):
        raise ValueError(f"outer-lr step iterations must be >= 0 and strictly ascending, got {its}")
    if any(not lr > 0 for _, lr in steps):
        raise ValueError("outer learning rates must be > 0")
    return tuple(steps)


def outer_lr_at(s: TrainSettings, iteration: int) -> float:
    """Outer learning rate of the step that starts at ``iteration`` (0-based count of steps done)."""
    lr = s.outer_lr
    for it, v in s.outer_lr_steps:
        if iteration >= it:
            lr = v
    return lr


def _dist_rank_world() -> tuple[int, int]:
    """(rank, world size) of an initialised ``torch.distributed`` process group, else (0, 1)."""
    import torch.distributed as dist  # noqa: PLC0415

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class MetaTrainer:
    """Owns params, optimiser and RNG; ``run_dir`` holds state.pt and metrics.csv.

    resume: continue from state.pt (metrics.csv rows after the saved iteration are dropped).
    read_only: load state.pt but never write to run_dir (for exporting a snapshot of a running job).
    """

    def __init__(self, settings: TrainSettings, run_dir: str | Path, train_images: np.ndarray,
                 monitor_images: np.ndarray | None = None, resume: bool = False, read_only: bool = False,
                 device: str = "cpu"):
        self.s = settings
        self.device = torch.device(device)
        self.rank, self.world = _dist_rank_world()
        if settings.meta_batch % self.world:
            raise ValueError(f"meta-batch {settings.meta_batch} is not divisible by {self.world} ranks")
        read_only = read_only or self.rank != 0  # only rank 0 writes the run folder
        check_shift_px(settings.augment_px)
        self.cfg = M.CNNConfig(ways=settings.ways, channels=settings.channels, inner_steps=settings.inner_steps,
                               inner_lr=settings.inner_lr, input_convention="ink1", padding="symmetric")
        self.samplers = {k: TaskSampler(train_images, settings.ways, k, settings.queries, settings.rotations)
                         for k in settings.shots}
        self.monitor = (TaskSampler(monitor_images, settings.ways, max(settings.shots), settings.queries)
                        if monitor_images is not None else None)
        self.run_dir = Path(run_dir)  # made only once the settings are accepted: a refused run leaves nothing
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.iteration = 0
        self.wall_s = 0.0
        self.rng = np.random.default_rng(settings.seed)
        self._chip_cfg: Any = None  # the chip of chip_in_the_loop, made on first use
        self.params = {k: v.to(self.device).requires_grad_(True)
                       for k, v in M.to_torch(M.init_params(self.cfg, self.rng)).items()}
        self.opt = torch.optim.Adam(list(self.params.values()), lr=settings.outer_lr)
        self.state_path = self.run_dir / "state.pt"
        self.csv_path = self.run_dir / "metrics.csv"
        self.read_only = read_only  # e.g. exporting while another process trains: never touch the files
        if resume and self.state_path.is_file():
            self._load()
        elif not resume and self.csv_path.exists() and self.rank == 0:
            raise FileExistsError(f"{self.run_dir} already has a run; use --resume or a new --run-dir")

    # ------------------------------------------------------------------ state
    def _save(self) -> None:
        if self.read_only:
            return
        st = {"params": M.to_numpy(self.params), "opt": self.opt.state_dict(),
              "rng": self.rng.bit_generator.state, "iteration": self.iteration, "wall_s": self.wall_s,
              "settings": self.s.__dict__, "torch_rng": torch.get_rng_state()}
        save_state(st, self.state_path)

    def _load(self) -> None:
        st = torch_load(self.state_path, map_location=self.device)
        with torch.no_grad():
            for k, v in st["params"].items():
                self.params[k].copy_(torch.as_tensor(v))
        self.opt.load_state_dict(st["opt"])
        self.rng.bit_generator.state = st["rng"]
        torch.set_rng_state(st["torch_rng"])
        self.iteration, self.wall_s = st["iteration"], st["wall_s"]
        if not self.read_only:  # CSV rows after the saved iteration go (they will be recomputed identically)
            drop_rows_after(self.csv_path, "iteration", self.iteration, CSV_FIELDS)
        log.info("resumed %s at iteration %d", self.run_dir, self.iteration)

    def init_from(self, path: str | Path) -> list[str]:
        """Start a new run from a checkpoint: a shipped/exported ``cnn_maml`` npz (e.g. a pre-trained backbone
        or a shipped model to continue on a fresh machine) or another run's ``state.pt``.

        The conv kernels are copied; the readout initialisation too when it has this run's shape (else it
        stays zero, e.g. a 5-way model continued as 20-way); with a ``state.pt`` of the same shapes the Adam
        state is restored as well. Returns the names of what was restored.
        """
        path = Path(path)
        opt_state = None
        if path.suffix == ".pt":
            st = torch_load(path)
            src, opt_state = st["params"], st.get("opt")
        else:
            src, cfg, _ = M.load_model(path)
            if cfg.channels != self.cfg.channels:
                raise ValueError(f"{path} has {cfg.channels} channels, this run {self.cfg.channels}")
        restored = []
        with torch.no_grad():
            for k, v in self.params.items():
                if k in src and tuple(np.shape(src[k])) == tuple(v.shape):
                    v.copy_(torch.as_tensor(src[k]))
                    restored.append(k)
        if opt_state is not None and len(restored) == len(self.params):
            self.opt.load_state_dict(opt_state)
            restored.append("adam_state")
        self.s.extra["init_from"] = str(path)
        log.info("initialised from %s: %s", path, ", ".join(restored))
        return restored

    def numpy_params(self) -> dict[str, np.ndarray]:
        return M.to_numpy(self.params)

    # ------------------------------------------------------------------ training
    def step(self) -> dict[str, Any]:
        shots = self.s.shots[int(self.rng.integers(len(self.s.shots)))] if len(self.s.shots) > 1 else self.s.shots[0]
        batch = self.samplers[shots].sample_batch(self.rng, self.s.meta_batch)
        if self.s.augment_px:  # before the ranks' split: every rank sees the same augmented batch
            batch = TaskBatch(random_shifts(batch.support_x, self.s.augment_px, self.rng), batch.support_y,
                              random_shifts(batch.query_x, self.s.augment_px, self.rng), batch.query_y)
        lr = outer_lr_at(self.s, self.iteration)
        for g in self.opt.param_groups:  # the schedule, not a resumed optimiser state, sets the rate
            g["lr"] = lr
        self.opt.zero_grad()
        params = self._noisy_params()  # every rank draws the same noise (same Generator state)
        if self.world > 1:
            share = self.s.meta_batch // self.world
            sl = slice(self.rank * share, (self.rank + 1) * share)
            batch = TaskBatch(batch.support_x[sl], batch.support_y[sl], batch.query_x[sl], batch.query_y[sl])
        gen = None
        if self.s.mvm_noise:  # one seed per step from the run's Generator: resumable, equal on every rank
            gen = torch.Generator().manual_seed(int(self.rng.integers(2**63 - 1)) + self.rank)
        loss, accs = task_losses(params, batch, self.cfg, first_order=self.s.first_order,
                                 mvm_noise=self.s.mvm_noise, gen=gen, temperature=self.s.outer_temperature)
        loss.backward()
        loss_v = float(loss.item())
        if self.world > 1:
            loss_v, accs = self._all_reduce_grads(loss_v, accs)
        self.opt.step()
        self.iteration += 1
        return {"shots": shots, "loss": loss_v, "accs": accs, "outer_lr": lr}

    def _all_reduce_grads(self, loss: float, accs: np.ndarray) -> tuple[float, np.ndarray]:
        """Average the gradients (one flat all-reduce) and the logged loss/accuracies over the ranks."""
        import torch.distributed as dist  # noqa: PLC0415

        ps = list(self.params.values())
        flat = torch.cat([p.grad.reshape(-1) for p in ps]
                         + [torch.tensor([loss, *accs], dtype=ps[0].grad.dtype, device=self.device)])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= self.world
        i = 0
        for p in ps:
            p.grad.copy_(flat[i:i + p.numel()].view_as(p))
            i += p.numel()
        rest = flat[i:].cpu().numpy()
        return float(rest[0]), rest[1:].astype(accs.dtype)

    def _noisy_params(self) -> dict[str, torch.Tensor]:
        """The parameters this step reads: with ``weight_noise`` and/or ``chip_in_the_loop`` the conv kernels of one
        simulated chip (Gaussian noise relative to each column's max, and/or the error of a programmed chip)."""
        p = self.params
        if M.any_weight_noise(self.s.weight_noise):
            p = M.noisy_conv_kernels(self.params, self.s.weight_noise, lambda shape: torch.as_tensor(
                self.rng.standard_normal(shape, dtype=np.float32), device=self.device))
        if self.s.chip_in_the_loop:  # one programmed chip per step, its own stream seeded from the run's
            from pcm_l2l_ros.vision.deploy import chip_configs, conv_chip_error  # noqa: PLC0415

            if self._chip_cfg is None:
                self._chip_cfg = chip_configs(self.s.chip_preset)
            chip_rng = np.random.default_rng(int(self.rng.integers(2**63 - 1)))
            err = conv_chip_error({k: v.detach().cpu().numpy() for k, v in self.params.items()
                                   if k in M.CONV_NAMES}, self._chip_cfg, chip_rng, self.s.chip_drift_s)
            p = dict(p)
            for k, e in err.items():  # a constant of the step: gradients pass straight through to W
                p[k] = p[k] + torch.as_tensor(e, device=self.device)
        return p

    def monitor_accuracy(self) -> float:
        """Final-step query accuracy on a fixed set of evaluation-split tasks (monitoring only, no selection)."""
        if self.monitor is None:
            return float("nan")
        acc = evaluate_software(self.numpy_params(), self.cfg, self.monitor, self.s.monitor_tasks,
                                np.random.default_rng(12345))
        return float(acc[:, -1].mean())

    def train(self, iterations: int | None = None, deadline_unix: float | None = None,
              progress: bool = True, stop: StopRequest | None = None) -> int:
        """Run until ``iterations`` total (or the deadline, or ``stop``, checked between iterations);
        checkpoints every ckpt_every and at the end. Returns the iteration."""
        total = iterations if iterations is not None else self.s.iterations
        return run_loop(self._logged_step, self.iteration, total, self._save, self.s.ckpt_every,
                        None if self.read_only else self.csv_path, CSV_FIELDS, deadline_unix=deadline_unix,
                        stop=stop, progress=progress and self.rank == 0, unit="iteration")

    def _logged_step(self) -> tuple[int, dict[str, Any], dict[str, str]]:
        """One step (timed) with its metrics.csv row (and the monitor every monitor_every) and bar postfix."""
        t0 = time.perf_counter()
        r = self.step()
        self.wall_s += time.perf_counter() - t0
        row = {"iteration": self.iteration, "wall_s": round(self.wall_s, 2), "shots": r["shots"],
               "loss": round(r["loss"], 5), "outer_lr": r["outer_lr"]}
        row.update({f"acc_step{k}": round(float(a), 4) for k, a in enumerate(r["accs"])})
        if self.s.monitor_every and self.iteration % self.s.monitor_every == 0 and self.rank == 0:
            row["monitor_acc_final"] = round(self.monitor_accuracy(), 4)
        return self.iteration, row, {"loss": f"{r['loss']:.3f}", "acc": f"{r['accs'][-1]:.3f}"}

    def recent_metrics(self, window: int = 100) -> dict[str, float]:
        rows = []
        if self.csv_path.exists():
            with self.csv_path.open() as f:
                rows = list(csv.DictReader(f))
        tail = rows[-window:]
        out: dict[str, float] = {"iterations": float(self.iteration), "train_wall_s": round(self.wall_s, 1)}
        if tail:
            out[f"train_query_loss_last{len(tail)}"] = float(np.mean([float(r["loss"]) for r in tail]))
            k = self.s.inner_steps
            out[f"train_query_acc_last{len(tail)}"] = float(np.mean([float(r[f"acc_step{k}"]) for r in tail]))
        mon = [r for r in rows if r.get("monitor_acc_final")]
        if mon:
            out["monitor_eval_acc_final"] = float(mon[-1]["monitor_acc_final"])
        return out
