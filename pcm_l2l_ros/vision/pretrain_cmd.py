"""``pcm-l2l pretrain-cnn``: supervised pre-training of the few-shot CNN's backbone (resumable).

Example (one core, background), then MAML from the exported backbone::

    OMP_NUM_THREADS=1 nohup pcm-l2l pretrain-cnn --epochs 30 --run-dir runs/cnn/pre \\
        --export runs/cnn/pre/backbone.npz > pre.log 2>&1 &
    pcm-l2l pretrain-cnn --run-dir runs/cnn/pre --epochs 30 --resume ...   # continue after a stop
    pcm-l2l train-cnn --init runs/cnn/pre/backbone.npz --ways 20 ...        # meta-train from it

The export is a ``cnn_maml`` checkpoint (conv1..conv4 and a zero readout of ``--export-ways`` columns,
readout full scale calibrated on background tasks), usable as it is by ``eval-cnn`` and the vision node.
"""

from __future__ import annotations

import argparse
import logging
import sys

from pcm_l2l_ros.training import add_deadline_arguments, deadline_from_args, stop_on_signals
from pcm_l2l_ros.vision.train_cmd import weight_noise_arg

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from pcm_l2l_ros.vision.pretrain import PretrainSettings  # noqa: PLC0415

    d = PretrainSettings()
    p.add_argument("--epochs", type=int, default=d.epochs, help="passes over the 77,120 images (schedule length)")
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--bn-group", type=int, default=d.bn_group,
                   help="images per BatchNorm statistics group (0: the whole batch)")
    p.add_argument("--lr-max", type=float, default=d.lr_max, help="peak of the one-cycle learning rate")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--channels", type=int, default=d.channels)
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    p.add_argument("--aug-shift-px", type=float, default=d.aug_shift_px)
    p.add_argument("--aug-rot-deg", type=float, default=d.aug_rot_deg)
    p.add_argument("--aug-scale", type=float, default=d.aug_scale)
    p.add_argument("--weight-noise", type=weight_noise_arg, default=d.weight_noise,
                   help="hardware-aware: conv kernels read as W + this * max|W_col| * N(0,1), a draw per step; one "
                        "value, or four (conv1..conv4, e.g. 0.1,0.06,0.06,0.06)")
    p.add_argument("--mvm-noise", type=float, default=d.mvm_noise,
                   help="hardware-aware: conv outputs get noise of std this * s * max|W_col| per MVM (s: DAC scale)")
    p.add_argument("--no-rotations", action="store_true", help="no 90-degree rotation classes (964 classes)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--run-dir", default="runs/cnn/pretrain", help="state.pt + metrics.csv live here")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps in all (a test)")
    p.add_argument("--ckpt-every", type=int, default=d.ckpt_every)
    p.add_argument("--monitor-tasks", type=int, default=d.monitor_tasks,
                   help="evaluation-split tasks per monitored setting each epoch (0: off)")
    add_deadline_arguments(p)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--export", default=None, help="write the backbone as a cnn_maml checkpoint (npz + json)")
    p.add_argument("--export-ways", type=int, default=20, help="readout columns of the exported checkpoint")
    p.add_argument("--export-only", action="store_true", help="with --resume: export without training")
    p.add_argument("--note", default=None, help="with --export: free text for the sidecar's config.note (lineage)")
    p.add_argument("--data-dir", default=None, help="folder with images_background.(npz|zip)")
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    import numpy as np  # noqa: PLC0415

    from pcm_l2l_ros.checkpoint import git_hash, save_checkpoint  # noqa: PLC0415
    from pcm_l2l_ros.compute_threads import limit_compute_threads  # noqa: PLC0415
    from pcm_l2l_ros.vision import model as M  # noqa: PLC0415
    from pcm_l2l_ros.vision.maml import calibrate_readout_wmax  # noqa: PLC0415
    from pcm_l2l_ros.vision.pretrain import Pretrainer, PretrainSettings  # noqa: PLC0415
    from pcm_l2l_ros.vision.sampler import TaskSampler  # noqa: PLC0415
    from pcm_l2l_ros.vision.train_cmd import split_source  # noqa: PLC0415

    code_hash = git_hash()  # the code that trains (the repository may change while a long run goes on)
    limit_compute_threads(args.threads)
    s = PretrainSettings(epochs=args.epochs, batch=args.batch, bn_group=args.bn_group, lr_max=args.lr_max,
                         weight_decay=args.weight_decay, channels=args.channels,
                         label_smoothing=args.label_smoothing, aug_shift_px=args.aug_shift_px,
                         aug_rot_deg=args.aug_rot_deg, aug_scale=args.aug_scale, rotations=not args.no_rotations,
                         weight_noise=args.weight_noise, mvm_noise=args.mvm_noise,
                         seed=args.seed, ckpt_every=args.ckpt_every, monitor_tasks=args.monitor_tasks)
    from pcm_l2l_ros.vision.omniglot import load_split  # noqa: PLC0415

    bg = load_split("background", split_source(args.data_dir, "background"))
    ev = load_split("evaluation", split_source(args.data_dir, "evaluation")) if args.monitor_tasks else None
    trainer = Pretrainer(s, args.run_dir, bg.images, None if ev is None else ev.images, resume=args.resume)

    if not args.export_only:
        with stop_on_signals() as stop:  # SIGTERM / Ctrl-C: a clean, checkpointed stop
            trainer.train(deadline_unix=deadline_from_args(args), progress=not args.no_progress,
                          max_steps=args.max_steps, stop=stop)
    if args.export:
        params = trainer.numpy_params(args.export_ways)
        cfg = M.CNNConfig(ways=args.export_ways, channels=s.channels)
        cal = TaskSampler(bg.images, args.export_ways, 5, 5)
        cfg.readout_w_max = round(calibrate_readout_wmax(params, cfg, cal, 64, np.random.default_rng(s.seed + 1000)),
                                  5)
        conf = cfg.to_dict()
        conf.update(pretrain={k: v for k, v in vars(s).items()}, train_split="background",
                    stage="pretrained backbone (supervised, cosine head dropped, zero readout)",
                    note=args.note)
        metrics = {"steps": trainer.step_count, "epochs_done": round(trainer.step_count / trainer.steps_per_epoch, 3),
                   "train_wall_s": round(trainer.wall_s, 1), **trainer.last_metrics()}
        out = save_checkpoint(args.export, params, kind=M.KIND, seed=s.seed, metrics=metrics, config=conf,
                              code_git_hash=code_hash if not args.export_only else None)
        log.info("exported %s (%s)", out, metrics)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``pcm-l2l pretrain-cnn ARGS`` (also ``python -m``): through the CLI, which configures logging."""
    from pcm_l2l_ros.cli import main as cli_main  # noqa: PLC0415

    return cli_main(["pretrain-cnn", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
