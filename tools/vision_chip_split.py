"""Which part of the simulated chip costs the few-shot CNN its accuracy: the convolutions or the readout?

For each task (evaluation split, N-way K-shot, 5 queries per class) the same images go through four variants of
the checkpoint at ``--drift`` seconds after programming:

* ``software``: every layer ideal (the ``ideal`` chip preset) and the readout adapted in float (the delta rule);
* ``conv on chip``: the conv layers on the chip (``--preset``), the readout adapted in float on their features;
* ``readout on chip``: ideal conv layers, the readout on the chip (4-bit updates, stochastic rounding, noise);
* ``all on chip``: what the vision node does.

``--wmax-factors`` additionally adapts the on-chip readout with its full scale ``readout_w_max`` scaled by each
factor, ``--roundings`` with each rounding rule of the update to the quantum (``stochastic``, ``nearest``,
``accumulate``: ``PCMConfig.update_rounding``); both on the features of the full chip, with three programmed readout
instances cycled over the tasks.

Usage:  tools/env.sh python tools/vision_chip_split.py --model pcm_l2l_ros/models/cnn_20way.npz --ways 20 --shots 1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pcm_l2l_ros.pcm import PCMArray  # noqa: E402
from pcm_l2l_ros.vision import model as M  # noqa: E402
from pcm_l2l_ros.vision.deploy import (  # noqa: E402
    FewShotChip,
    chip_configs,
    software_readout_probs,
    support_query_features,
)
from pcm_l2l_ros.vision.omniglot import load_split  # noqa: E402
from pcm_l2l_ros.vision.sampler import TaskSampler  # noqa: E402
from pcm_l2l_ros.vision.shifts import check_shift_px, tile_labels  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True, help="a cnn checkpoint (.npz with its sidecar)")
    p.add_argument("--ways", type=int, default=20)
    p.add_argument("--shots", type=int, default=1)
    p.add_argument("--tasks", type=int, default=200)
    p.add_argument("--drift", type=float, default=3600.0, help="s since programming")
    p.add_argument("--preset", default="hermes_per_column")
    p.add_argument("--wmax-factors", default="", help="comma list, e.g. 0.5,1 (empty: no sweep)")
    p.add_argument("--roundings", default="", help="comma list of update roundings, e.g. stochastic,accumulate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", default="evaluation", choices=("evaluation", "background"))
    p.add_argument("--shift-px", type=int, default=0, help="test-time shift augmentation of every variant (0..2)")
    args = p.parse_args()
    check_shift_px(args.shift_px)
    torch.set_num_threads(1)

    params, cfg, _ = M.load_model(args.model)
    if args.ways < cfg.ways:
        params, cfg = M.restrict_ways(params, cfg, args.ways)
    chip = FewShotChip(params, cfg, chip_configs(args.preset), rng=1)
    ideal_conv = FewShotChip(params, cfg, chip_configs("ideal"), rng=1, readout_pcm_cfg=chip.readout_pcm_cfg)
    for c in (chip, ideal_conv):
        c.drift(args.drift)
    factors = [float(f) for f in args.wmax_factors.split(",") if f.strip()]
    readouts = {f: [PCMArray(chip.w_init, chip.pcm_cfg.replace(w_max=chip.readout_w_max * f, scale="per_core"),
                             np.random.default_rng(100 + i)) for i in range(3)] for f in factors}
    roundings = [r.strip() for r in args.roundings.split(",") if r.strip()]
    by_rounding = {r: [PCMArray(chip.w_init, chip.readout_pcm_cfg.replace(update_rounding=r),
                                np.random.default_rng(200 + i)) for i in range(3)] for r in roundings}
    for arrays in (*readouts.values(), *by_rounding.values()):
        for a in arrays:
            a.drift(args.drift)

    sampler = TaskSampler(load_split(args.split).images, args.ways, args.shots, 5)
    rng = np.random.default_rng(args.seed)
    acc: dict[str, list[float]] = {k: [] for k in ("software", "conv on chip", "readout on chip", "all on chip")}
    acc.update({f"all on chip, readout w_max x {f:g}": [] for f in factors})
    acc.update({f"all on chip, {r} rounding": [] for r in roundings})
    for t in range(args.tasks):
        task = sampler.sample(rng)
        ys, yq = tile_labels(task.support_y, args.shift_px), task.query_y
        (hs,), (hq,) = support_query_features(ideal_conv, task.support_x[None], task.query_x[None],
                                              shift_px=args.shift_px)
        acc["software"].append(float(np.mean(software_readout_probs(ideal_conv, hs, ys, hq).argmax(1) == yq)))
        r = ideal_conv.adapt_features(hs, ys, hq, cfg.inner_steps, np.random.default_rng(t), False)
        acc["readout on chip"].append(float(np.mean(r.labels == yq)))
        (hs,), (hq,) = support_query_features(chip, task.support_x[None], task.query_x[None], shift_px=args.shift_px)
        acc["conv on chip"].append(float(np.mean(software_readout_probs(chip, hs, ys, hq).argmax(1) == yq)))
        r = chip.adapt_features(hs, ys, hq, cfg.inner_steps, np.random.default_rng(t), False)
        acc["all on chip"].append(float(np.mean(r.labels == yq)))
        for f in factors:
            r = chip.adapt_features(hs, ys, hq, cfg.inner_steps, np.random.default_rng(t), False,
                                    readout=readouts[f][t % 3])
            acc[f"all on chip, readout w_max x {f:g}"].append(float(np.mean(r.labels == yq)))
        for name in roundings:
            r = chip.adapt_features(hs, ys, hq, cfg.inner_steps, np.random.default_rng(t), False,
                                    readout=by_rounding[name][t % 3])
            acc[f"all on chip, {name} rounding"].append(float(np.mean(r.labels == yq)))
    print(f"{args.model} {args.ways}-way {args.shots}-shot, {args.tasks} tasks ({args.split}, seed {args.seed}), "
          f"shift_px {args.shift_px}, chip {args.preset} at {args.drift:g} s, readout w_max {chip.readout_w_max:.4g}")
    for k, v in acc.items():
        a = 100.0 * np.asarray(v)
        print(f"  {k:36s} {a.mean():6.2f} %  (± {a.std(ddof=1) / np.sqrt(len(a)):.2f} s.e.)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
