"""``pcm-l2l calibrate-cnn``: choose a CNN checkpoint's readout full scale on the chip (weights unchanged).

Writes a copy of ``--model`` whose sidecar has a new ``readout_w_max`` (the readout core's full scale, weight
units; the update quantum is a sixteenth of it), chosen by
:func:`pcm_l2l_ros.vision.readout_scale.calibrate_readout_wmax_on_chip` on meta-training (background) tasks: the
full scale at which the on-chip inner loop (programming noise, drift, read noise, stochastic rounding of the
updates) classifies the queries best, ties to the one that follows the software inner loop most closely. The
arrays are copied bit for bit; the sidecar keeps the source's command, lineage and metrics and adds
``readout_calibration`` (the grid; accuracy, loss, divergence and agreement per factor) and ``calibrated_from``
(the source's path, sha256 and git hash).

Example: ``pcm-l2l calibrate-cnn --model runs/cnn/x.npz --out runs/cnn/x_cal.npz --shots 1,5 --tasks 200``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="a cnn checkpoint (.npz with its sidecar)")
    p.add_argument("--out", required=True, help="the calibrated copy (.npz; its sidecar beside it)")
    p.add_argument("--shots", default="1,5", help="task sizes the model serves, comma list (each weighs equally)")
    p.add_argument("--tasks", type=int, default=200, help="background tasks per shot setting (1..5000)")
    p.add_argument("--factors", default=None,
                   help="full scales tried, as multiples of the 99.9 %% quantile of |W| over software adaptation, "
                        "comma list (default: readout_scale.DEFAULT_FACTORS, 0.3 to 1)")
    p.add_argument("--drift", type=float, default=3600.0, help="chip read time after programming, s")
    p.add_argument("--pcm-preset", default="hermes_per_column", help="named chip of pcm.presets")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-dir", default=None, help="folder with images_background.(npz|zip)")


def _parse(args: argparse.Namespace) -> tuple[list[int], list[float] | None]:
    """Validated shots and factors (None: the library's grid), before anything is loaded or allocated."""
    try:
        shots = [int(s) for s in str(args.shots).split(",") if s.strip()]
        factors = None if args.factors is None else [float(f) for f in str(args.factors).split(",") if f.strip()]
    except ValueError:
        raise ValueError("--shots must be integers and --factors numbers, comma separated") from None
    if not shots or any(not 1 <= k <= 10 for k in shots):
        raise ValueError(f"--shots must be in 1..10, got {args.shots!r}")
    if factors is not None and (not factors or len(factors) > 32 or any(not 0.05 <= f <= 4.0 for f in factors)):
        raise ValueError(f"--factors: 1 to 32 values in [0.05, 4], got {args.factors!r}")
    if not 1 <= args.tasks <= 5000:
        raise ValueError(f"--tasks must be in 1..5000, got {args.tasks}")
    if not 0.0 <= args.drift <= 1e9:
        raise ValueError(f"--drift must be in [0, 1e9] s, got {args.drift}")
    if Path(args.out).with_suffix(".npz").resolve() == Path(args.model).with_suffix(".npz").resolve():
        raise ValueError("--out must differ from --model (the source is kept)")
    return shots, factors


def run(args: argparse.Namespace) -> int:
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415

    from pcm_l2l_ros.checkpoint import git_hash, save_checkpoint, sha256_file  # noqa: PLC0415
    from pcm_l2l_ros.pcm import presets  # noqa: PLC0415
    from pcm_l2l_ros.vision import model as M  # noqa: PLC0415
    from pcm_l2l_ros.vision.omniglot import load_split  # noqa: PLC0415
    from pcm_l2l_ros.vision.readout_scale import (  # noqa: PLC0415
        DEFAULT_FACTORS,
        calibrate_readout_wmax_on_chip,
        sidecar_record,
    )
    from pcm_l2l_ros.vision.train_cmd import split_source  # noqa: PLC0415

    shots, factors = _parse(args)
    presets.resolve(args.pcm_preset)  # an unknown chip name fails now, before the data are loaded
    torch.set_num_threads(max(1, int(args.threads)))
    src = Path(args.model).with_suffix(".npz")
    params, cfg, meta = M.load_model(src)
    bg = load_split("background", split_source(args.data_dir, "background"))
    cal = calibrate_readout_wmax_on_chip(params, cfg, bg.images, shots, args.tasks, np.random.default_rng(args.seed),
                                         factors=factors or DEFAULT_FACTORS, preset=args.pcm_preset, drift_s=args.drift)
    for j, f in enumerate(cal.factors):
        log.info("readout w_max %.5f (x %.2f): chip accuracy %s; KL to software %s", cal.quantile_w_max * f, f,
                 ", ".join(f"{k}-shot {100 * cal.accuracy[k][j]:.2f} %" for k in shots),
                 ", ".join(f"{k}-shot {cal.kl[k][j]:.5f}" for k in shots))
    config = dict(meta.get("config", {}))
    previous = config.get("readout_w_max")
    config["readout_w_max"] = cal.w_max
    config["readout_calibration"] = sidecar_record(cal, shots=shots, tasks=args.tasks, drift_s=args.drift,
                                                   preset=args.pcm_preset, seed=args.seed, previous_w_max=previous)
    config["calibrated_from"] = {"path": str(args.model), "sha256": sha256_file(src),
                                 "command": meta.get("command"), "git_hash": meta.get("git_hash")}
    out = save_checkpoint(args.out, params, kind=M.KIND, seed=meta.get("seed"), metrics=meta.get("metrics"),
                          config=config, code_git_hash=git_hash())
    print(f"readout w_max {previous} -> {cal.w_max} ({cal.w_max / cal.quantile_w_max:.2f} x the 99.9 % quantile "
          f"{cal.quantile_w_max:.5f}); wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``pcm-l2l calibrate-cnn ARGS`` (also ``python -m``): through the CLI, which configures logging."""
    from pcm_l2l_ros.cli import main as cli_main  # noqa: PLC0415

    return cli_main(["calibrate-cnn", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
