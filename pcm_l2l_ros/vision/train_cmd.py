"""``pcm-l2l train-cnn``: MAML meta-training of the few-shot CNN on Omniglot background (resumable).

Data-parallel on several cores or GPUs (one process per rank; each takes a share of the meta-batch)::

    torchrun --standalone --nproc-per-node 2 -m pcm_l2l_ros.vision.train_cmd --meta-batch 8 ...   # gloo, CPU
    torchrun --standalone --nproc-per-node 4 -m pcm_l2l_ros.vision.train_cmd --device cuda ...   # NCCL, GPUs

On CPUs the ranks talk over the loopback interface (``GLOO_SOCKET_IFNAME=lo`` unless set).

Example (1 thread, background)::

    OMP_NUM_THREADS=1 nohup pcm-l2l train-cnn --ways 5 --shots 1,5 --meta-batch 8 --iterations 3000 \\
        --run-dir runs/cnn/w5 --export pcm_l2l_ros/models/cnn_5way.npz > w5.log 2>&1 &
    pcm-l2l train-cnn --run-dir runs/cnn/w5 --resume ...       # continue after a stop
    pcm-l2l train-cnn --run-dir runs/cnn/w5 --resume --export-only --export ...  # just export

The exported checkpoint (kind ``cnn_maml``) holds conv1..conv4 (OIHW) and readout (channels, ways),
with the config (ways, channels, inner steps, inner lr, input convention, padding, BN eps) and metrics.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pcm_l2l_ros.training import add_deadline_arguments, deadline_from_args, stop_on_signals

log = logging.getLogger(__name__)


def weight_noise_arg(text: str) -> float | tuple[float, ...]:
    """argparse type of ``--weight-noise`` (train-cnn, pretrain-cnn): one value or one per conv layer."""
    from pcm_l2l_ros.vision.model import parse_weight_noise  # noqa: PLC0415 - torch only once parsing

    try:
        return parse_weight_noise(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ways", type=int, default=5)
    p.add_argument("--shots", default="5", help="comma list; one is drawn per meta-batch (e.g. 1,5)")
    p.add_argument("--queries", type=int, default=5, help="query images per class")
    p.add_argument("--meta-batch", type=int, default=8)
    p.add_argument("--iterations", type=int, default=3000, help="total outer iterations (across resumes)")
    p.add_argument("--outer-lr", type=float, default=1e-3)
    p.add_argument("--outer-lr-steps", default=None,
                   help="piecewise-constant outer learning rate by iteration, e.g. 15000:3e-4,17000:1e-4 "
                        "(from iteration 15,000 on 3e-4, ...); before the first step --outer-lr")
    p.add_argument("--inner-steps", type=int, default=4)
    p.add_argument("--inner-lr", type=float, default=0.1)
    p.add_argument("--channels", type=int, default=56)
    p.add_argument("--first-order", action="store_true", help="first-order MAML (default: second order)")
    p.add_argument("--weight-noise", type=weight_noise_arg, default=0.0,
                   help="hardware-aware meta-training: conv kernels read as W + this * max|W_col| * N(0,1), "
                        "one draw per meta-batch (0 = off); one value, or four, one per conv layer (conv1..conv4, "
                        "e.g. 0.1,0.06,0.06,0.06; our PCM model's error at 1 h is ~0.063 of w_max in conv1, "
                        "~0.035 in conv2-4)")
    p.add_argument("--mvm-noise", type=float, default=0.0,
                   help="hardware-aware meta-training: conv outputs get noise of std this * s * max|W_col| per "
                        "MVM (s = the patch's largest input, the DAC scale; the chip's output noise is 0.04)")
    p.add_argument("--chip-in-the-loop", action="store_true",
                   help="hardware-aware meta-training: every meta-batch reads the conv kernels through a freshly "
                        "programmed simulated chip (its error at --chip-drift added as a constant; combines with "
                        "--weight-noise)")
    p.add_argument("--chip-drift", type=float, default=3600.0, help="with --chip-in-the-loop: read time, s (>= 0)")
    p.add_argument("--chip-preset", default="hermes_per_column",
                   help="with --chip-in-the-loop: the chip (pcm presets; the vision node's default)")
    p.add_argument("--outer-temperature", type=float, default=1.0,
                   help="query logits x this in the outer loss only (inner loop and predictions unchanged; > 1 "
                        "weighs the queries the adapted readout gets wrong)")
    p.add_argument("--augment-px", type=int, default=0,
                   help="meta-training tasks augmented: every support and query image moved by a random (dy, dx), "
                        "max(|dy|, |dx|) <= this many pixels, 0..2 (0 = off, the paper's tasks)")
    p.add_argument("--no-rotations", action="store_true", help="no 90-degree rotation classes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-dir", default="runs/cnn/default", help="state.pt + metrics.csv live here")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--ckpt-every", type=int, default=50)
    p.add_argument("--monitor-every", type=int, default=250,
                   help="evaluation-split monitor accuracy every N iterations (0: off; no model selection)")
    add_deadline_arguments(p)
    p.add_argument("--threads", type=int, default=1, help="compute threads per process (per rank)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (with torchrun: rank r uses cuda:r)")
    p.add_argument("--export", default=None, help="write the shipped checkpoint (npz + json) here at the end")
    p.add_argument("--export-only", action="store_true", help="with --resume: export without training")
    p.add_argument("--export-ways", type=int, default=None,
                   help="export the model for N <= --ways classes (its first N readout columns, readout full "
                        "scale calibrated on N-way tasks); default --ways")
    p.add_argument("--export-calibration", choices=("quantile", "chip"), default="quantile",
                   help="with --export: the readout's full scale: 'quantile' (the 99.9 %% quantile of |W| over "
                        "software adaptation on 64 background tasks) or 'chip' (as pcm-l2l calibrate-cnn: the "
                        "multiple of that quantile at which the on-chip inner loop classifies background tasks "
                        "best; the chip is --chip-preset at 1 h)")
    p.add_argument("--export-calibration-tasks", type=int, default=200,
                   help="with --export-calibration chip: background tasks per shot setting of --shots (1..5000)")
    p.add_argument("--note", default=None,
                   help="with --export: free text for the sidecar's config.note, e.g. where a run was forked "
                        "or which options changed across resumes (the sidecar's command is the export's)")
    p.add_argument("--init", "--init-from", dest="init_from", default=None,
                   help="new run only: start from a cnn_maml checkpoint (e.g. a pretrain-cnn backbone or a shipped "
                        "model) or a run's state.pt: conv kernels, the readout init if its shape fits, and with "
                        "a state.pt of the same shapes the Adam state")
    p.add_argument("--data-dir", default=None, help="folder with images_background.(npz|zip)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out-plot", default=None, help="training-curve PNG (default: <run-dir>/training_curve.png)")


def init_distributed(device: str) -> str:
    """Join the process group when started by ``torchrun`` (WORLD_SIZE > 1); returns this rank's device.

    Backend gloo on CPUs (over loopback unless ``GLOO_SOCKET_IFNAME`` says otherwise), NCCL on GPUs.
    """
    import os  # noqa: PLC0415

    import torch  # noqa: PLC0415
    import torch.distributed as dist  # noqa: PLC0415

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("pcm-l2l train-cnn: --device cuda but no CUDA device is available")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return device
    if device.startswith("cuda"):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        dist.init_process_group("nccl")
        return f"cuda:{local}"
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo")
    return device


def split_source(data_dir: str | None, split: str) -> Path | None:
    """``images_<split>.npz|.zip`` or the extracted folder inside ``data_dir`` (None: the default location)."""
    if not data_dir:
        return None
    data = Path(data_dir)
    found = next((data / n for n in (f"images_{split}.npz", f"images_{split}.zip", f"images_{split}")
                  if (data / n).exists()), None)
    if found is None:
        raise FileNotFoundError(f"--data-dir {data}: no images_{split}.npz, .zip or folder there")
    return found


def run(args: argparse.Namespace) -> int:
    import numpy as np  # noqa: PLC0415

    from pcm_l2l_ros.checkpoint import save_checkpoint  # noqa: PLC0415
    from pcm_l2l_ros.compute_threads import limit_compute_threads  # noqa: PLC0415
    from pcm_l2l_ros.vision import model as M  # noqa: PLC0415
    from pcm_l2l_ros.vision.maml import (  # noqa: PLC0415
        MetaTrainer,
        TrainSettings,
        calibrate_readout_wmax,
        parse_lr_steps,
    )
    from pcm_l2l_ros.vision.omniglot import load_split  # noqa: PLC0415
    from pcm_l2l_ros.vision.readout_scale import calibrate_readout_wmax_on_chip, sidecar_record  # noqa: PLC0415
    from pcm_l2l_ros.vision.sampler import TaskSampler  # noqa: PLC0415
    from pcm_l2l_ros.vision.shifts import check_shift_px  # noqa: PLC0415

    if not args.chip_drift >= 0:
        raise SystemExit(f"pcm-l2l train-cnn: --chip-drift must be >= 0 s, got {args.chip_drift}")
    if args.export_calibration == "chip" and not 1 <= args.export_calibration_tasks <= 5000:
        raise SystemExit("pcm-l2l train-cnn: --export-calibration-tasks must be in 1..5000, "
                         f"got {args.export_calibration_tasks}")
    if args.chip_in_the_loop or (args.export and args.export_calibration == "chip"):
        from pcm_l2l_ros.pcm.presets import PRESET_NAMES  # noqa: PLC0415

        if args.chip_preset not in PRESET_NAMES:
            raise SystemExit(f"pcm-l2l train-cnn: --chip-preset must be one of {', '.join(PRESET_NAMES)}")
    try:
        check_shift_px(args.augment_px)
    except ValueError as e:
        raise SystemExit(f"pcm-l2l train-cnn: --augment-px: {e}") from None
    limit_compute_threads(args.threads)
    device = init_distributed(args.device)
    s = TrainSettings(ways=args.ways, shots=tuple(int(v) for v in str(args.shots).split(",")),
                      queries=args.queries, meta_batch=args.meta_batch, iterations=args.iterations,
                      outer_lr=args.outer_lr, outer_lr_steps=parse_lr_steps(args.outer_lr_steps),
                      first_order=args.first_order, weight_noise=args.weight_noise, mvm_noise=args.mvm_noise,
                      chip_in_the_loop=args.chip_in_the_loop, chip_drift_s=args.chip_drift,
                      chip_preset=args.chip_preset,
                      outer_temperature=args.outer_temperature, augment_px=args.augment_px,
                      rotations=not args.no_rotations, seed=args.seed, channels=args.channels,
                      inner_steps=args.inner_steps, inner_lr=args.inner_lr, ckpt_every=args.ckpt_every,
                      monitor_every=args.monitor_every)
    bg = load_split("background", split_source(args.data_dir, "background"))
    ev = load_split("evaluation", split_source(args.data_dir, "evaluation")) if args.monitor_every else None
    trainer = MetaTrainer(s, args.run_dir, bg.images, None if ev is None else ev.images, resume=args.resume,
                          read_only=args.export_only, device=device)

    if args.init_from and not (args.resume and trainer.iteration > 0):
        trainer.init_from(args.init_from)

    if not args.export_only:
        with stop_on_signals() as stop:  # SIGTERM / Ctrl-C: a clean, checkpointed stop
            trainer.train(deadline_unix=deadline_from_args(args), progress=not args.no_progress, stop=stop)
    if trainer.rank != 0:
        return 0
    if args.export:
        metrics = trainer.recent_metrics()
        ways = args.export_ways or s.ways  # a model serves fewer ways with its first N readout columns
        params, mcfg = M.restrict_ways(trainer.numpy_params(), trainer.cfg, ways)
        on_chip = None
        if args.export_calibration == "chip":
            rec = calibrate_readout_wmax_on_chip(params, mcfg, bg.images, s.shots, args.export_calibration_tasks,
                                                 np.random.default_rng(s.seed + 1000), preset=args.chip_preset)
            mcfg.readout_w_max = rec.w_max
            on_chip = sidecar_record(rec, shots=s.shots, tasks=args.export_calibration_tasks, drift_s=3600.0,
                                     preset=args.chip_preset, seed=s.seed + 1000, previous_w_max=None)
        else:
            cal = TaskSampler(bg.images, ways, max(s.shots), s.queries)
            mcfg.readout_w_max = round(calibrate_readout_wmax(params, mcfg, cal, 64,
                                                              np.random.default_rng(s.seed + 1000)), 5)
        cfg = mcfg.to_dict()
        if on_chip is not None:
            cfg["readout_calibration"] = on_chip
        cfg.update(trained_ways=s.ways, train_shots=list(s.shots), queries=s.queries, meta_batch=s.meta_batch,
                   outer_lr=s.outer_lr, outer_lr_steps=[list(v) for v in s.outer_lr_steps],
                   first_order=s.first_order, weight_noise=s.weight_noise, mvm_noise=s.mvm_noise,
                   chip_in_the_loop=s.chip_in_the_loop,
                   **({"chip_drift_s": s.chip_drift_s, "chip_preset": s.chip_preset} if s.chip_in_the_loop else {}),
                   outer_temperature=s.outer_temperature, augment_px=s.augment_px, rotations=s.rotations,
                   train_split="background", init_from=args.init_from, note=args.note)
        out = save_checkpoint(args.export, params, kind=M.KIND, seed=s.seed, metrics=metrics, config=cfg)
        log.info("exported %s (%s)", out, metrics)
    try:
        if args.out_plot or not args.export_only:
            plot_training(trainer.csv_path, Path(args.out_plot) if args.out_plot else trainer.csv_path.with_name(
                "training_curve.png"))
    except Exception as e:  # noqa: BLE001 - a plot must never fail a training run
        log.warning("training plot failed: %s", e)
    return 0


def plot_training(csv_path: Path, png: Path, window: int = 50) -> None:
    """Query loss and accuracy after the last inner step vs iteration (moving average) + monitor points."""
    import csv  # noqa: PLC0415

    import matplotlib  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    with Path(csv_path).open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    it = np.array([int(r["iteration"]) for r in rows])
    loss = np.array([float(r["loss"]) for r in rows])
    last = max(k for k in range(9) if rows[0].get(f"acc_step{k}"))
    acc = np.array([float(r[f"acc_step{last}"]) for r in rows])
    k = np.ones(min(window, len(rows))) / min(window, len(rows))
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    ax[0].plot(it[len(k) - 1:], np.convolve(loss, k, "valid"))
    ax[0].set_ylabel("query CE after inner loop")
    ax[1].plot(it[len(k) - 1:], np.convolve(acc, k, "valid"), label="train tasks (background)")
    mon = [(int(r["iteration"]), float(r["monitor_acc_final"])) for r in rows if r.get("monitor_acc_final")]
    if mon:
        ax[1].plot(*zip(*mon, strict=True), "o-", label="monitor (evaluation split, 100 tasks)")
    ax[1].set_ylabel(f"query accuracy after step {last}")
    ax[1].legend(fontsize=7)
    for a in ax:
        a.set_xlabel("outer iteration")
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """``pcm-l2l train-cnn ARGS`` (also ``python -m``): through the CLI, which configures logging."""
    from pcm_l2l_ros.cli import main as cli_main  # noqa: PLC0415

    return cli_main(["train-cnn", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
