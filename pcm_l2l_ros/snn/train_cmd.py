"""``pcm-l2l train-snn``: meta-train the trainee's initial weights and the LSG with natural e-prop.

Outer loop: Adam on the six weight matrices, loss of the test run after ONE natural e-prop update
(:mod:`pcm_l2l_ros.snn.metatrain`). Everything lives in a run folder:

* ``state.pt``    resumable state (model, optimiser, lr schedule, iteration, numpy + torch RNG states, best);
* ``metrics.csv`` one row per iteration (loss, mse_omega, mse_xyz, rates, lr, it/s) plus the validation
  numbers (loss before/after the update, median end-effector error in cm) every ``--val-every`` iterations
  on a fixed held-out batch (seed ``seed + 1_000_003``);
* ``best.npz`` + ``best.json`` the weights with the lowest validation loss after the update (checkpoint
  kind ``snn_l2l``), ``last.npz`` + ``last.json`` the latest ones.

``--chip-in-the-loop`` turns on hardware-aware meta-training (:class:`metatrain.ChipInTheLoop`): every
iteration the trainee is programmed on a fresh simulated PCM core read at ``--chip-drift`` seconds and the
update is rounded to ``--update-quantum`` (``--update-rounding``) with a straight-through gradient
(``--chip-every K``: on every K-th iteration only, software on the others). Validation then also runs on the
chip (a fixed chip-noise seed, columns ``val_chip_*``) and "best" means the lowest mean of the software and
the on-chip validation loss.

``--families name:weight,...`` meta-trains on a mixture of task families (:mod:`pcm_l2l_ros.snn.families`;
e.g. ``brownian:0.3,ellipse:0.15,lemniscate:0.15,polygon:0.1,stroke:0.1,point_to_point:0.1,arc:0.1``, or
``all`` for equal weights): every batch has multinomial(batch, weights) targets of each family. The default,
``brownian``, draws exactly what runs drew before the option existed, so old runs resume unchanged. The
validation batch is split evenly over the mixture's families (held-out streams ``families.family_rng``), and
``metrics.csv`` gets each family's validation median end-effector error (``val_ee_median_cm_after_<family>``,
``val_chip_...`` on the chip). A
resumed run may change the mixture (a curriculum); the sidecar records it. Seeds whose training, validation
or export streams are evaluation seeds (``families.RESERVED_EVAL_SEEDS``) are refused.

``--export PATH`` writes the best weights as a project checkpoint (e.g. ``pcm_l2l_ros/models/snn_l2l.npz``);
with ``--iterations`` equal to the iterations already done it only exports.
Example (CI scale)::

    OMP_NUM_THREADS=1 pcm-l2l train-snn --run-dir runs/snn/ci --n-lsg 300 --batch 16 --iterations 5000
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from pcm_l2l_ros.training import (
    add_deadline_arguments,
    deadline_from_args,
    deadline_passed,
    drop_rows_after,
    save_state,
    stop_on_signals,
)

log = logging.getLogger(__name__)

CSV_FIELDS = ("iteration", "loss", "mse_omega", "mse_xyz", "reg", "rate_trainee_hz", "rate_lsg_hz", "lr",
              "grad_norm", "it_per_s", "val_loss_before", "val_loss_after", "val_mse_omega_after",
              "val_mse_xyz_after", "val_ee_median_cm_before", "val_ee_median_cm_after", "val_ee_mean_cm_after",
              "val_chip_loss_after", "val_chip_ee_median_cm_after")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run-dir", type=Path, default=Path("runs/snn/train"), help="run folder (state, CSV, best)")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/state.pt")
    p.add_argument("--n-trainee", type=int, default=250)
    p.add_argument("--n-lsg", type=int, default=300, help="LSG neurons (30%% ALIF); paper: 800")
    p.add_argument("--batch", type=int, default=16, help="tasks per outer iteration; paper: 90")
    p.add_argument("--iterations", type=int, default=5000, help="total outer iterations (incl. resumed)")
    p.add_argument("--lr", type=float, default=1.5e-3)
    p.add_argument("--lr-decay", type=float, default=0.99, help="lr factor every --lr-every iterations")
    p.add_argument("--lr-every", type=int, default=500)
    p.add_argument("--clip-grad", type=float, default=0.0, help="max gradient norm (0 = no clipping)")
    p.add_argument("--first-order", action="store_true",
                   help="stop the gradient through psi and the traces of the training run")
    p.add_argument("--kinematics", choices=("urdf", "paper"), default="urdf",
                   help="task kinematics: our URDF (default) or the paper's closed form")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--families", default="brownian",
                   help="task families and mixing weights, 'name:w,name:w' (snn/families.py: brownian, ellipse, "
                        "lemniscate, polygon, stroke, point_to_point, arc) or 'all' (equal); default brownian only")
    p.add_argument("--val-every", type=int, default=100)
    p.add_argument("--val-size", type=int, default=64)
    p.add_argument("--save-every", type=int, default=100)
    add_deadline_arguments(p)  # --until-utc HH:MM (the former --time-limit SECONDS still works, hidden)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 on the shared CI machine)")
    p.add_argument("--export", type=Path, default=None, help="write the best weights here at the end")
    p.add_argument("--export-eval-n", type=int, default=270,
                   help="held-out trajectories for the exported checkpoint's metrics (Numba kernels)")
    p.add_argument("--init", type=Path, default=None, help="start from this snn_l2l checkpoint (not --resume)")
    p.add_argument("--widen-lsg", action="store_true",
                   help="with --init: if the checkpoint's LSG is smaller than --n-lsg, add neurons that leave its "
                        "learning signals unchanged (function-preserving) and meta-train the wider LSG")
    p.add_argument("--joint-code", type=int, default=0,
                   help="LSG input also codes the target's joint velocities and angles with this many Gaussian tuning "
                        "curves per joint and variable (not in the paper; 0 = the paper's input). With --init from a "
                        "checkpoint without it: added with zero weights (function-preserving)")
    p.add_argument("--joint-code-gain", type=float, default=1.0,
                   help="peak input of the joint code's tuning curves (with Adam, a gain g learns their weights as "
                        "fast as a g-fold learning rate would)")
    p.add_argument("--chip-in-the-loop", action="store_true",
                   help="hardware-aware meta-training: simulated PCM chip weights + rounded update (straight-through)")
    p.add_argument("--chip-drift", type=float, default=3600.0, help="chip read time after programming, s")
    p.add_argument("--update-quantum", type=float, default=1.0 / 16.0,
                   help="rounding quantum of the update with --chip-in-the-loop (weight units; 0 = float)")
    p.add_argument("--update-rounding", choices=("stochastic", "nearest"), default="stochastic")
    p.add_argument("--chip-every", type=int, default=1,
                   help="with --chip-in-the-loop: use the chip on every K-th iteration, software (float update) on "
                        "the others (2 = half and half: keeps the software accuracy while learning the chip's)")


def _config(args):
    from pcm_l2l_ros.snn.params import SNNConfig  # noqa: PLC0415

    return SNNConfig(n_trainee=args.n_trainee, n_lsg=args.n_lsg, n_joint_code=getattr(args, "joint_code", 0),
                     joint_code_gain=getattr(args, "joint_code_gain", 1.0))


def _init_weights(args, cfg):
    """The ``--init`` checkpoint's weights for ``cfg``; with ``--widen-lsg`` a smaller LSG is widened to
    ``cfg.n_lsg`` without changing what the network computes (``SNNWeights.widen_lsg``), and with
    ``--joint-code K`` a checkpoint without the joint code gets it with zero weights (``SNNWeights.add_joint_code``,
    also function-preserving)."""
    from pcm_l2l_ros.snn.params import SNNWeights  # noqa: PLC0415

    w0, init_cfg = SNNWeights.load(args.init)
    if init_cfg.n_lsg != cfg.n_lsg and args.widen_lsg:
        if (init_cfg.n_trainee, init_cfg.frac_alif) != (cfg.n_trainee, cfg.frac_alif):
            raise ValueError("--widen-lsg changes only the LSG's size; the trainee and the ALIF fraction must match")
        log.info("widening the LSG of %s: %d -> %d neurons (function-preserving)", args.init, init_cfg.n_lsg,
                 cfg.n_lsg)
        w0 = w0.widen_lsg(init_cfg, cfg.n_lsg, rng=args.seed)
        init_cfg = init_cfg.replace(n_lsg=cfg.n_lsg)
    if init_cfg.n_joint_code and init_cfg.joint_code_gain != cfg.joint_code_gain:
        raise ValueError(f"the checkpoint's joint code has gain {init_cfg.joint_code_gain:g}; pass --joint-code-gain "
                         f"{init_cfg.joint_code_gain:g} (another gain would change what it computes)")
    if cfg.n_joint_code and not init_cfg.n_joint_code:
        log.info("adding a joint code of %d tuning curves per joint to the LSG input of %s (zero weights)",
                 cfg.n_joint_code, args.init)
        w0 = w0.add_joint_code(init_cfg, cfg.n_joint_code)
    w0.check(cfg)
    return w0


def _chip(args, iteration: int, validation: bool = False):
    """The chip-in-the-loop settings of ``args`` (None without ``--chip-in-the-loop``). Training chips are
    reseeded from (seed, iteration) every iteration (:func:`_chip_seed`), so a resumed run is bit-exact;
    validation always uses the same seed."""
    from pcm_l2l_ros.snn import metatrain as mt  # noqa: PLC0415

    if not getattr(args, "chip_in_the_loop", False):
        return None
    seed = args.seed + 3_000_017 if validation else _chip_seed(args, iteration)
    return mt.ChipInTheLoop(drift_s=args.chip_drift, update_quantum=args.update_quantum,
                            update_rounding=args.update_rounding, seed=seed)


def _chip_settings(args) -> dict | None:
    """What the sidecar records of --chip-in-the-loop (None when off)."""
    if not getattr(args, "chip_in_the_loop", False):
        return None
    return {"drift_s": args.chip_drift, "update_quantum": args.update_quantum,
            "update_rounding": args.update_rounding, "every": getattr(args, "chip_every", 1),
            "chip": "onchip.default_pcm_config (hermes_like, per-column scale)", "seed_base": args.seed}


def _mixture(args) -> dict[str, float]:
    """The normalised family mixing weights of ``args.families`` (Brownian only when absent)."""
    from pcm_l2l_ros.snn import families  # noqa: PLC0415 - lazy as the other snn imports of this module

    return families.parse_mixture(getattr(args, "families", None) or "brownian")


def _family_fields(mix: dict[str, float]) -> tuple[str, ...]:
    """Extra CSV columns of a run on several families: the validation median end-effector error after the
    update per family, software and (with --chip-in-the-loop) on the chip. None for a single family (the CSV of
    Brownian-only runs is unchanged); a run resumed with another mixture keeps its CSV's columns."""
    if len(mix) < 2:
        return ()
    return tuple(f"val_ee_median_cm_after_{f}" for f in mix) + tuple(f"val_chip_ee_median_cm_after_{f}" for f in mix)


def _check_seed(args) -> str | None:
    """Why ``args.seed`` cannot train (its training, validation or export stream is an evaluation stream), or
    None."""
    from pcm_l2l_ros.snn import families  # noqa: PLC0415 - lazy as the other snn imports of this module

    used = {"training": args.seed, "validation": args.seed + 1_000_003, "export": args.seed + 2_000_003}
    bad = {k: v for k, v in used.items() if v in families.RESERVED_EVAL_SEEDS}
    if bad:
        return f"--seed {args.seed}: the {', '.join(bad)} stream would be an evaluation seed {sorted(bad.values())}"
    return None


def _chip_seed(args, iteration: int) -> int:
    return args.seed * 1_000_003 + iteration


def _save_weights(path: Path, model, cfg, args, metrics: dict, iteration: int) -> None:
    from pcm_l2l_ros.checkpoint import save_checkpoint  # noqa: PLC0415
    from pcm_l2l_ros.snn.params import CHECKPOINT_KIND  # noqa: PLC0415

    conf = cfg.to_dict()
    conf.update({"seed": args.seed, "batch": args.batch, "iteration": iteration, "lr": args.lr,
                 "first_order": bool(args.first_order), "kinematics": args.kinematics,
                 "trajectories": "resample", "chip_in_the_loop": _chip_settings(args),
                 "families": _mixture(args)})
    save_checkpoint(path, model.weights().to_dict(), kind=CHECKPOINT_KIND, seed=args.seed, metrics=metrics,
                    config=conf, command=getattr(args, "command_line", None),
                    code_git_hash=getattr(args, "code_git_hash", None))


def final_metrics(weights, cfg, kinematics: str, n: int, seed: int, pcm_drift_s: float | None = 3600.0) -> dict:
    """Validation numbers of weights with the Numba kernels (the deployment path, ``episode.one_shot``, float
    update, no PCM) on ``n`` held-out trajectories drawn with ``seed``: loss, omega RMSE and end-effector error
    (time-mean distance, cm: mean, sd, median, p90) before and after the one update, and the firing rates;
    with ``pcm_drift_s``, also after the one update on the simulated PCM chip read at that drift time
    (``pcm_after_*``)."""
    from pcm_l2l_ros.snn import episode, tasks  # noqa: PLC0415

    kin = tasks.default_kinematics(paper=(kinematics == "paper"))
    traj = tasks.sample_trajectories(n, np.random.default_rng(seed), cfg, kin, mode="resample")
    res = episode.one_shot(weights, traj, cfg)
    out = {"n_trajectories": n, "eval_seed": seed, "kinematics": kinematics, "trajectories": "resample",
           "backend": "numba (episode.one_shot), float update, no PCM"}
    out.update(episode.summary_metrics(episode.trajectory_metrics(res.y_before, traj, kin, cfg), "before_"))
    out.update(episode.summary_metrics(episode.trajectory_metrics(res.y_after, traj, kin, cfg), "after_"))
    out.update({"rate_trainee_train_hz": res.rate_train_hz, "rate_trainee_test_hz": res.rate_test_hz,
                "rate_lsg_hz": res.rate_lsg_hz,
                "frac_weights_changed": float(np.mean(res.n_changed) / res.n_plastic)})
    if pcm_drift_s is not None:  # the same trajectories on the controller's simulated chip
        from pcm_l2l_ros.snn import onchip  # noqa: PLC0415

        r = onchip.one_shot_pcm(weights, traj, cfg, drift_s=pcm_drift_s, rng=seed)
        out.update(episode.summary_metrics(episode.trajectory_metrics(r.y_after, traj, kin, cfg), "pcm_after_"))
        out.update({"pcm_drift_s": pcm_drift_s, "pcm_chip": "onchip.default_pcm_config (stochastic rounding)",
                    "pcm_devices_written_mean": float(r.devices_written.mean()), "pcm_n_devices": r.n_devices})
    return out


def export_checkpoint(src: Path, dest: Path, export_command: str | None = None, eval_n: int = 270,
                      eval_seed: int | None = None, init_path: Path | None = None) -> Path:
    """Copy a run's ``best`` checkpoint to ``dest`` (arrays and config kept), with the metrics of a fresh
    evaluation on ``eval_n`` held-out trajectories (:func:`final_metrics`; 0 = keep the run's validation
    metrics only). The sidecar keeps the training command and the training code's git hash; the config gets
    ``export_command``, ``export_git_hash`` (the code now) and ``init`` (the ``--init`` lineage)."""
    from pcm_l2l_ros.checkpoint import git_hash, load_checkpoint, save_checkpoint  # noqa: PLC0415
    from pcm_l2l_ros.snn.params import CHECKPOINT_KIND, SNNConfig, SNNWeights  # noqa: PLC0415

    arrays, side = load_checkpoint(src, kind=CHECKPOINT_KIND)
    conf = dict(side.get("config") or {})
    conf.setdefault("command", side.get("command"))
    if export_command:
        conf["export_command"] = export_command
    conf.setdefault("init", _init_lineage(side.get("command"), init_path))
    conf["export_git_hash"] = git_hash()
    metrics = {"training_validation": side.get("metrics") or {}}
    if eval_n > 0:
        cfg = SNNConfig.from_dict(conf)
        seed = eval_seed if eval_seed is not None else int(side.get("seed") or 0) + 2_000_003
        w = SNNWeights.from_arrays(arrays, dtype=np.float32)
        metrics.update(final_metrics(w, cfg, conf.get("kinematics", "urdf"), eval_n, seed))
        log.info("final metrics: %s", metrics)
    return save_checkpoint(dest, arrays, kind=CHECKPOINT_KIND, seed=side.get("seed"),
                           metrics=metrics, config=conf, command=side.get("command"),
                           code_git_hash=side.get("git_hash"))


def _init_lineage(command: str | None, init_path: Path | None = None) -> dict | None:
    """Where a run started with ``--init CKPT`` came from (``init_path``, else parsed from the run's
    ``command``): that checkpoint's command, git hash, seed and iteration (read before an export may
    overwrite it); None for a run from random weights."""
    from pcm_l2l_ros.checkpoint import CheckpointError, load_checkpoint  # noqa: PLC0415
    from pcm_l2l_ros.snn.params import CHECKPOINT_KIND  # noqa: PLC0415

    if init_path is None and command:
        p = argparse.ArgumentParser(add_help=False)
        add_arguments(p)
        tokens = shlex.split(command)
        tokens = tokens[2:] if tokens[:2] == ["pcm-l2l", "train-snn"] else tokens
        init_path = p.parse_known_args(tokens)[0].init
    if init_path is None:
        return None
    try:
        _, init_side = load_checkpoint(init_path, kind=CHECKPOINT_KIND)
    except (CheckpointError, OSError) as e:
        return {"path": str(init_path), "error": str(e)}
    conf = init_side.get("config") or {}
    return {"path": str(init_path), "command": init_side.get("command"), "git_hash": init_side.get("git_hash"),
            "seed": init_side.get("seed"), "iteration": conf.get("iteration"),
            "export_command": conf.get("export_command"), "init": conf.get("init")}


def run(args) -> int:
    import torch  # noqa: PLC0415
    from tqdm import tqdm  # noqa: PLC0415

    from pcm_l2l_ros.compute_threads import limit_compute_threads  # noqa: PLC0415
    from pcm_l2l_ros.snn import metatrain as mt  # noqa: PLC0415
    from pcm_l2l_ros.snn import tasks  # noqa: PLC0415
    from pcm_l2l_ros.snn.params import SNNWeights  # noqa: PLC0415

    limit_compute_threads(max(1, args.threads))
    if not getattr(args, "command_line", None):
        argv = sys.argv[1:]
        argv = argv[1:] if argv[:1] == ["train-snn"] else argv   # invoked as `pcm-l2l train-snn ...`
        args.command_line = "pcm-l2l train-snn " + " ".join(shlex.quote(a) for a in argv)
    from pcm_l2l_ros.checkpoint import git_hash, torch_load  # noqa: PLC0415

    args.code_git_hash = git_hash()  # the code this process trains with (sidecars are written later)
    run_dir: Path = args.run_dir   # created only once every option is accepted: a refusal leaves nothing behind
    state_path = run_dir / "state.pt"
    csv_path = run_dir / "metrics.csv"

    from pcm_l2l_ros.snn import families  # noqa: PLC0415 - lazy as the other snn imports of this module

    try:
        mix = _mixture(args)
    except ValueError as e:
        log.error("--families: %s", e)
        return 2
    jc, gain = getattr(args, "joint_code", 0), getattr(args, "joint_code_gain", 1.0)
    if jc < 0 or jc == 1 or not (math.isfinite(gain) and gain > 0):
        log.error("--joint-code must be 0 (off) or >= 2 tuning curves, --joint-code-gain > 0; got %s, %s", jc, gain)
        return 2
    bad_seed = _check_seed(args)
    if bad_seed:
        log.error("%s; choose another seed", bad_seed)
        return 2
    cfg = _config(args)
    kin = tasks.default_kinematics(paper=(args.kinematics == "paper"))
    X_clock = mt.clock_tensor(cfg)
    # validation: split evenly over the mixture's families (Brownian only: default_rng(seed + 1_000_003), as before)
    val_batch = mt.batch_from(families.sample_stratified(args.val_size, args.seed + 1_000_003, mix, cfg, kin), cfg)
    log.info("task families: %s", ", ".join(f"{k} {v:.3g}" for k, v in mix.items()))

    if args.resume and state_path.exists():
        st = torch_load(state_path)
        if st["cfg"] != cfg.to_dict():
            log.warning("config differs from the saved run; using the saved one")
        cfg = type(cfg).from_dict(st["cfg"])
        model = mt.NaturalEprop(cfg, SNNWeights.init_random(cfg, 0), second_order=not args.first_order,
                                chip=_chip(args, st["iteration"]))
        model.load_state_dict(st["model"])
        opt = torch.optim.Adam(model.parameters(), lr=args.lr)
        opt.load_state_dict(st["opt"])
        rng = np.random.default_rng()
        rng.bit_generator.state = st["np_rng"]
        torch.set_rng_state(st["torch_rng"])
        it0, best = st["iteration"], st["best"]
        log.info("resumed %s at iteration %d (best val loss after %.4f)", run_dir, it0, best)
        drop_rows_after(csv_path, "iteration", it0)  # rows after the saved state are recomputed identically
        old_mix = families.parse_mixture((st.get("args") or {}).get("families") or "brownian")
        if old_mix != mix:  # a curriculum step; the validation set (and so "best") follows the new mixture
            log.warning("task families changed on resume: %s -> %s; best reset", old_mix, mix)
            best = math.inf
    else:
        if args.resume:
            log.warning("--resume: no %s, starting fresh", state_path)
        rng = np.random.default_rng(args.seed)
        torch.manual_seed(args.seed)
        if args.init is not None:
            try:
                w0 = _init_weights(args, cfg)
            except ValueError as e:
                log.error("--init %s: %s", args.init, e)
                return 2
        else:
            w0 = SNNWeights.init_random(cfg, rng)
        model = mt.NaturalEprop(cfg, w0, second_order=not args.first_order, chip=_chip(args, 0))
        opt = torch.optim.Adam(model.parameters(), lr=args.lr)
        it0, best = 0, math.inf
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(csv_path, "w", newline="") as f:
            csv.writer(f).writerow(CSV_FIELDS + _family_fields(mix))
    with open(csv_path, newline="") as f:  # a resumed run keeps its CSV's columns
        fields = next(csv.reader(f), None) or list(CSV_FIELDS)
    val_chip = _chip(args, 0, validation=True)
    train_chip = model.chip

    def lr_at(it: int) -> float:
        return args.lr * args.lr_decay ** (it // max(1, args.lr_every))

    def save_run(it: int) -> None:
        save_state({"model": model.state_dict(), "opt": opt.state_dict(), "iteration": it,
                    "np_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                    "best": best, "cfg": cfg.to_dict(), "args": vars(args)}, state_path)

    t_start = time.perf_counter()
    t_last = t_start
    it = it0
    deadline = deadline_from_args(args)
    # SIGTERM / Ctrl-C: stop after the current iteration, state saved (a second signal stops at once)
    with stop_on_signals() as stop, open(csv_path, "a", newline="") as fcsv:
        writer = csv.DictWriter(fcsv, fields, extrasaction="ignore")
        bar = tqdm(range(it0, args.iterations), initial=it0, total=args.iterations, desc="train-snn",
                   mininterval=5.0, file=sys.stderr)
        for it in bar:
            for g in opt.param_groups:
                g["lr"] = lr_at(it)
            batch = mt.make_batch(args.batch, rng, cfg, kin, families=mix)
            use_chip = train_chip is not None and it % max(1, args.chip_every) == 0
            model.chip = train_chip if use_chip else None
            if use_chip:
                train_chip.reset(_chip_seed(args, it))
            opt.zero_grad(set_to_none=True)
            total, m, _ = mt.outer_loss(model, X_clock, batch, kin)
            if not torch.isfinite(total):
                log.warning("iteration %d: non-finite loss, step skipped", it)
                continue
            total.backward()
            gn = float(torch.nn.utils.clip_grad_norm_(model.parameters(),
                                                      args.clip_grad if args.clip_grad > 0 else float("inf")))
            if math.isfinite(gn):
                opt.step()
            now = time.perf_counter()
            row = {**{k: f"{v:.6g}" for k, v in m.items()}, "iteration": it + 1, "lr": f"{lr_at(it):.4g}",
                   "grad_norm": f"{gn:.4g}", "it_per_s": f"{1.0 / max(now - t_last, 1e-9):.3f}"}
            t_last = now
            done = it + 1
            if done % args.val_every == 0 or done == args.iterations:
                model.chip = None
                v = mt.evaluate(model, X_clock, val_batch, kin)       # software, float update
                if val_chip is not None:                               # on the chip, the same chips every time
                    val_chip.reset()
                    model.chip = val_chip
                    vc = mt.evaluate(model, X_clock, val_batch, kin)
                    model.chip = None
                    row.update({"val_chip_loss_after": f"{vc['loss_after']:.6g}",
                                "val_chip_ee_median_cm_after": f"{vc['ee_median_cm_after']:.4g}"})
                    row.update({f"val_chip_{k}": f"{x:.4g}" for k, x in vc.items()
                                if k.startswith("ee_median_cm_after_")})
                row.update({"val_loss_before": f"{v['loss_before']:.6g}", "val_loss_after": f"{v['loss_after']:.6g}",
                            "val_mse_omega_after": f"{v['mse_omega_after']:.6g}",
                            "val_mse_xyz_after": f"{v['mse_xyz_after']:.6g}",
                            "val_ee_median_cm_before": f"{v['ee_median_cm_before']:.4g}",
                            "val_ee_median_cm_after": f"{v['ee_median_cm_after']:.4g}",
                            "val_ee_mean_cm_after": f"{v['ee_mean_cm_after']:.4g}"})
                row.update({f"val_{k}": f"{x:.4g}" for k, x in v.items() if k.startswith("ee_median_cm_after_")})
                vm = {"val_" + k: v[k] for k in v}
                vm["iteration"] = done
                score = v["loss_after"]
                if val_chip is not None:  # both targets count: software and on-chip
                    vm.update({"val_chip_" + k: vc[k] for k in vc})
                    score = 0.5 * (v["loss_after"] + vc["loss_after"])
                if score < best:
                    best = score
                    _save_weights(run_dir / "best.npz", model, cfg, args, vm, done)
                _save_weights(run_dir / "last.npz", model, cfg, args, vm, done)
                log.info("it %d: val loss %.4f -> %.4f, ee median %.1f -> %.1f cm, rates %.1f / %.1f Hz%s",
                         done, v["loss_before"], v["loss_after"], v["ee_median_cm_before"],
                         v["ee_median_cm_after"], v["rate_trainee_hz"], v["rate_lsg_hz"],
                         "" if val_chip is None else
                         f"; on chip: loss {vc['loss_after']:.4f}, ee median {vc['ee_median_cm_after']:.1f} cm")
            writer.writerow(row)
            fcsv.flush()
            bar.set_postfix(loss=f"{m['loss']:.4f}", tr=f"{m['rate_trainee_hz']:.0f}", lsg=f"{m['rate_lsg_hz']:.0f}")
            if done % args.save_every == 0:
                save_run(done)
            if stop.requested or deadline_passed(deadline):
                log.info("stopping at iteration %d", done)
                break
        else:
            done = it0 if args.iterations <= it0 else args.iterations
        bar.close()
    save_run(done)
    if args.export is not None:
        src = run_dir / "best.npz"
        if not src.exists():
            _save_weights(src, model, cfg, args, {"iteration": done}, done)
        out = export_checkpoint(src, args.export, args.command_line, eval_n=args.export_eval_n,
                                init_path=args.init)
        log.info("exported %s -> %s", src, out)
    return 0


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - convenience entry for ``python -m``
    """``pcm-l2l train-snn ARGS`` (also ``python -m``): through the CLI, which configures logging."""
    from pcm_l2l_ros.cli import main as cli_main  # noqa: PLC0415

    return cli_main(["train-snn", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
