"""``pcm-l2l eval-snn``: one-shot learning of unseen arm trajectories, in software and on the simulated PCM chip.

On ``--n`` (default 270) unseen target trajectories (held-out ``--seed``), before vs after ONE update:

* software: no update; natural e-prop (float ΔW, and ``natural_eprop_q16``: ΔW written as the chip writes it,
  rounded to 1/16 with the chip's rounding and clipped to its w_max, :func:`episode.chip_w_max`; with
  ``--parity`` the paper's nearest rounding without clipping); one symmetric e-prop update; one
  random-feedback e-prop update (η of each baseline tuned by a grid on a separate validation set,
  ``--val-seed``);
* PCM (``pcm_l2l_ros.snn.onchip``): natural e-prop with [W_in; W_rec] on one 256x256 core, read at each
  ``--drift`` time (default 1 h and 1 day) with drift compensation; devices written per update.

Metrics per condition: loss (0.5·MSE_ω + 0.5·MSE_xyz), joint-ω RMSE per joint (rad/s of arm time), end-effector
error (time-mean distance, cm: mean, sd, median, p90), fraction of plastic weights changed, devices written.
Writes ``summary.csv``, ``per_trajectory.csv``, ``metrics.json`` and plots (target vs produced xyz paths,
error histograms) to ``--out``.

Weights: ``--checkpoint`` (default: the shipped ``pcm_l2l_ros/models/snn_l2l.npz``), or ``--reference`` for the
paper's released weights (comparison only). ``--parity`` evaluates the reference weights the way the reference
numbers were made (paper kinematics, clipped targets, seed 7) and prints them side by side.

Task family (``--family``, :mod:`pcm_l2l_ros.snn.families`): ``brownian`` (default; the paper's family, the
README's 270 trajectories), one of the shaped families (ellipse, lemniscate, polygon, stroke, point_to_point,
arc; held-out streams ``families.family_rng(family, --seed)``), or ``all``: every family in turn (``--n`` each,
results in ``--out``/FAMILY/) and a per-family table ``families.csv`` / ``families.md`` and plot
``families.png`` (one-shot end-effector error, median and p90, per condition) in ``--out``.

Examples::

    pcm-l2l eval-snn --reference --parity --out runs/eval_snn_parity
    pcm-l2l eval-snn --out runs/eval_snn                  # our checkpoint, URDF kinematics, resampled targets
    pcm-l2l eval-snn --family all --n 100 --out runs/eval_snn_families
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: reference numbers of the released weights (shared/reference/ortner2025/README.md, 270 trajectories)
PARITY_REFERENCE = {
    "rate_trainee_hz": 20.5, "rate_lsg_hz": 10.0, "loss_before": 0.336, "loss_after_float": 0.0137,
    "loss_after_q16": 0.0278, "frac_changed_q16": "0.045-0.05", "omega_rmse_base_after_float": 0.054,
    "omega_rmse_shoulder_after_float": 0.087, "ee_median_after_float_cm": 2.6,
    "ee_mean_after_float_cm": 8.0, "ee_sd_after_float_cm": 11.3, "ee_p90_after_float_cm": 23.4,
    "ee_mean_after_q16_cm": 13.7, "ee_median_after_q16_cm": 12.5, "ee_mean_before_cm": 55.9,
}
DEFAULT_ETA_GRID = tuple(float(10.0**k) for k in np.arange(-3.0, 3.01, 0.5))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="snn_l2l checkpoint (.npz with .json sidecar); default pcm_l2l_ros/models/snn_l2l.npz")
    p.add_argument("--reference", action="store_true",
                   help="use the paper's released weights from shared/reference/ortner2025 (comparison only)")
    p.add_argument("--parity", action="store_true",
                   help="reference weights, paper kinematics, clipped targets, seed 7 (how the reference numbers "
                        "were made); prints ours vs reference")
    p.add_argument("--family", default="brownian",
                   help="task family of the targets (snn/families.py): brownian (default), ellipse, lemniscate, "
                        "polygon, stroke, point_to_point, arc, or 'all' (each in turn, plus a per-family table)")
    p.add_argument("--n", type=int, default=270, help="test trajectories (default 270; per family with 'all')")
    p.add_argument("--seed", type=int, default=20261129, help="held-out seed of the test trajectories")
    p.add_argument("--val-n", type=int, default=90, help="validation trajectories for tuning the baselines' eta")
    p.add_argument("--val-seed", type=int, default=777, help="seed of the validation trajectories")
    p.add_argument("--kinematics", choices=("paper", "urdf"), default=None,
                   help="task kinematics (default: the checkpoint's; 'paper' for --reference)")
    p.add_argument("--trajectories", choices=("resample", "clip"), default=None,
                   help="targets that hit the joint limits: resampled (default) or clipped as in the paper")
    p.add_argument("--drift", type=float, nargs="*", default=[3600.0, 86400.0],
                   help="PCM evaluation times after programming, s (default 1 h and 1 day)")
    p.add_argument("--no-pcm", action="store_true", help="skip the PCM-chip conditions")
    p.add_argument("--no-baselines", action="store_true", help="skip the symmetric/random e-prop baselines")
    p.add_argument("--eta-grid", type=float, nargs="*", default=list(DEFAULT_ETA_GRID),
                   help="eta values tried for the baselines on the validation set")
    p.add_argument("--pcm-seed", type=int, default=0, help="seed of the PCM noise")
    p.add_argument("--pcm-preset", default="hermes_per_column",
                   help="named chip of pcm.presets: hermes_per_column (the controller's chip; old name hermes_like), "
                        "hermes_per_core, aihwkit_compat, aihwkit_per_column, ideal; update quantum 1/16 in weight "
                        "units in every case")
    p.add_argument("--pcm-w-max", type=float, default=None,
                   help="weight mapped to full conductance (default: max|W| of the core); weights beyond are clipped")
    p.add_argument("--pcm-out-noise", type=float, default=None, help="override the preset's output noise")
    p.add_argument("--pcm-rounding", choices=("stochastic", "nearest"), default=None,
                   help="rounding of the update to the quantum on the chip (default: stochastic for our checkpoints, "
                        "nearest for --reference, which was meta-trained with it)")
    p.add_argument("--plots", type=int, default=4, help="trajectories to plot (0: no plots)")
    p.add_argument("--out", type=Path, default=Path("runs/eval_snn"), help="output folder")


# ------------------------------------------------------------------------------------------------------ helpers
def _load(args):
    from pcm_l2l_ros.snn.params import SNNConfig, SNNWeights, default_checkpoint_path  # noqa: PLC0415

    if args.reference or args.parity:
        return SNNWeights.reference(), SNNConfig(), "reference (Ortner et al. 2025 released weights)", "paper"
    path = args.checkpoint or default_checkpoint_path()
    if not Path(path).with_suffix(".npz").is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train one (pcm-l2l train-snn) or use --reference")
    w, cfg = SNNWeights.load(path)
    kin = (w.meta.get("sidecar", {}).get("config") or {}).get("kinematics", "urdf")
    return w, cfg, str(path), kin


def _row(name, platform, m, *, eta=None, quantum=None, drift_s=None, extra=None):
    from pcm_l2l_ros.snn import episode  # noqa: PLC0415

    r = {"condition": name, "platform": platform, "drift_s": drift_s, "eta": eta, "quantum": quantum,
         "n": int(len(m["loss"]))}
    r.update(episode.summary_metrics(m))
    r.update(extra or {})
    return r


def tune_eta(w, cfg, kin, val, signal: str, grid, B_fb=None) -> tuple[float, list[tuple[float, float]]]:
    """Eta of a baseline that minimises the validation loss after one update; returns (eta, [(eta, loss)])."""
    from pcm_l2l_ros.snn import episode  # noqa: PLC0415

    train = episode.training_run(w, cfg)
    res = []
    for eta in grid:
        r = episode.one_shot(w, val, cfg, signal=signal, eta=eta, B_fb=B_fb, train=train)
        loss = float(episode.trajectory_metrics(r.y_after, val, kin, cfg)["loss"].mean())
        res.append((float(eta), loss if np.isfinite(loss) else float("inf")))
    best = min(res, key=lambda e: e[1])[0]
    # refine by a factor 10^(1/8) around the best grid point
    fine = [best * 10.0 ** (k / 8.0) for k in (-3, -2, -1, 1, 2, 3)]
    for eta in fine:
        r = episode.one_shot(w, val, cfg, signal=signal, eta=eta, B_fb=B_fb, train=train)
        loss = float(episode.trajectory_metrics(r.y_after, val, kin, cfg)["loss"].mean())
        res.append((float(eta), loss if np.isfinite(loss) else float("inf")))
    return min(res, key=lambda e: e[1])[0], sorted(res)


def _plots(out: Path, traj, paths: dict[str, np.ndarray], errors: dict[str, np.ndarray], n_plot: int) -> list[str]:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    files = []
    n_plot = min(n_plot, len(traj))
    if n_plot > 0:
        fig, axes = plt.subplots(n_plot, 3, figsize=(12, 2.6 * n_plot), squeeze=False)
        t = np.arange(traj.xyz.shape[1])
        for i in range(n_plot):
            for c, lab in enumerate("xyz"):
                ax = axes[i, c]
                ax.plot(t, 100 * traj.xyz[i, :, c], "k-", lw=2, label="target")
                for name, xyz in paths.items():
                    ax.plot(t, 100 * xyz[i, :, c], lw=1, label=name)
                ax.set_ylabel(f"{lab} (cm)")
                if i == n_plot - 1:
                    ax.set_xlabel("step (10 ms of arm time)")
        axes[0, 0].legend(fontsize=7)
        fig.suptitle("end-effector path: target vs produced (one update)")
        fig.tight_layout()
        f = out / "paths_xyz.png"
        fig.savefig(f, dpi=90)
        plt.close(fig)
        files.append(f.name)
        fig = plt.figure(figsize=(5 * min(n_plot, 4), 4.2))
        for i in range(min(n_plot, 4)):
            ax = fig.add_subplot(1, min(n_plot, 4), i + 1, projection="3d")
            ax.plot(*traj.xyz[i].T, "k-", lw=2, label="target")
            for name, xyz in paths.items():
                ax.plot(*xyz[i].T, lw=1, label=name)
            ax.set_title(f"trajectory {i}")
        fig.axes[0].legend(fontsize=7)
        fig.tight_layout()
        f = out / "paths_3d.png"
        fig.savefig(f, dpi=90)
        plt.close(fig)
        files.append(f.name)
    fig, ax = plt.subplots(figsize=(7, 4))
    hi = max(float(np.percentile(np.concatenate(list(errors.values())), 98)), 1.0)
    bins = np.linspace(0, hi, 40)
    for name, e in errors.items():
        ax.hist(np.clip(e, 0, hi), bins=bins, histtype="step", lw=1.5, label=f"{name} (median {np.median(e):.1f})")
    ax.set_xlabel("end-effector error, time-mean distance (cm)")
    ax.set_ylabel("trajectories")
    ax.legend(fontsize=7)
    fig.tight_layout()
    f = out / "error_hist.png"
    fig.savefig(f, dpi=90)
    plt.close(fig)
    files.append(f.name)
    return files


# ------------------------------------------------------------------------------------------------------ main
def run(args: argparse.Namespace) -> int:
    from pcm_l2l_ros.snn import episode, families, tasks  # noqa: PLC0415
    from pcm_l2l_ros.snn.eprop import random_feedback  # noqa: PLC0415

    if args.family == "all" and not args.parity:
        from pcm_l2l_ros.snn.eval_families import run_all  # noqa: PLC0415

        return run_all(args)
    try:
        families.check_family(args.family)
    except ValueError as e:
        log.error("%s", e)
        return 2
    t_start = time.time()
    try:
        if not args.no_pcm:
            from pcm_l2l_ros.pcm.presets import resolve  # noqa: PLC0415

            resolve(args.pcm_preset)  # an unknown chip name fails now, not after the software conditions
        w, cfg, source, kin_name = _load(args)
    except Exception as e:  # noqa: BLE001 - reported to the user
        log.error("%s", e)
        return 2
    if args.parity:
        args.seed, args.trajectories, kin_name, args.family = 7, "clip", "paper", "brownian"
    kin_name = args.kinematics or kin_name
    mode = args.trajectories or "resample"
    kin = tasks.default_kinematics(paper=(kin_name == "paper"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log.info("weights: %s; kinematics %s; family %s; targets %s; n=%d seed=%d", source, kin_name, args.family, mode,
             args.n, args.seed)

    test = families.sample_family(args.family, args.n, families.family_rng(args.family, args.seed), cfg, kin,
                                  mode=mode)
    rows, per_traj, paths, errors = [], {}, {}, {}
    train = episode.training_run(w, cfg)

    def add(name, platform, y, **kw):
        m = episode.trajectory_metrics(y, test, kin, cfg)
        rows.append(_row(name, platform, m, **kw))
        per_traj[f"{name}{'' if platform == 'software' else '@' + platform}"] = m
        return m

    # software: natural e-prop (float, and written as the chip writes it) and no update
    rounding = args.pcm_rounding or ("nearest" if args.reference else "stochastic")
    from pcm_l2l_ros.snn import onchip  # noqa: PLC0415

    pcm_cfg = onchip.default_pcm_config(cfg, rounding, args.pcm_preset)
    if args.pcm_w_max is not None:
        pcm_cfg = pcm_cfg.replace(w_max=args.pcm_w_max)
    if args.pcm_out_noise is not None:
        pcm_cfg = pcm_cfg.replace(out_noise=args.pcm_out_noise)
    nat = episode.one_shot(w, test, cfg, train=train)
    if args.parity:  # the paper's software rounding (tf.round, no clipping), as the reference numbers were made
        natq = episode.one_shot(w, test, cfg, quantum=cfg.update_quantum, train=train)
    else:            # the chip's rule: its rounding to the quantum and its w_max (per column or per core)
        natq = episode.one_shot(w, test, cfg, quantum=cfg.update_quantum, train=train, rounding=rounding,
                                w_max=episode.chip_w_max(w, pcm_cfg), rng=args.pcm_seed)
    rates = {"rate_train_hz": nat.rate_train_hz, "rate_lsg_hz": nat.rate_lsg_hz}
    m_none = add("no_update", "software", nat.y_before, extra={**rates, "frac_weights_changed": 0.0})
    m_nat = add("natural_eprop", "software", nat.y_after, eta=cfg.eta,
                extra={**rates, "rate_test_hz": nat.rate_test_hz, "frac_weights_changed": nat.frac_changed})
    m_natq = add("natural_eprop_q16", "software", natq.y_after, eta=cfg.eta, quantum=cfg.update_quantum,
                 extra={**rates, "rate_test_hz": natq.rate_test_hz, "frac_weights_changed": natq.frac_changed})
    paths["before"], paths["natural e-prop"] = m_none["xyz"], m_nat["xyz"]
    errors["no update"], errors["natural e-prop"] = m_none["ee_err_cm"], m_nat["ee_err_cm"]
    errors["natural e-prop, ΔW as on the chip"] = m_natq["ee_err_cm"]

    # baselines with tuned eta
    tuning = {}
    if not args.no_baselines:
        val = families.sample_family(args.family, args.val_n, families.family_rng(args.family, args.val_seed), cfg,
                                     kin, mode=mode)
        B_fb = random_feedback(w.W_out_trainee, np.random.default_rng(args.val_seed + 1))
        for signal in ("symmetric", "random"):
            eta, curve = tune_eta(w, cfg, kin, val, signal, args.eta_grid, B_fb=B_fb)
            tuning[signal] = {"eta": eta, "curve": curve}
            log.info("%s e-prop: tuned eta = %.3g (validation loss %.4f)", signal, eta, dict(curve)[eta])
            r = episode.one_shot(w, test, cfg, signal=signal, eta=eta, B_fb=B_fb, train=train)
            m = add(f"{signal}_eprop", "software", r.y_after, eta=eta,
                    extra={"rate_test_hz": r.rate_test_hz, "frac_weights_changed": r.frac_changed})
            errors[f"{signal} e-prop"] = m["ee_err_cm"]
            paths[f"{signal} e-prop"] = m["xyz"]

    # PCM chip
    if not args.no_pcm:
        log.info("PCM chip: %s", pcm_cfg)
        for d in args.drift:
            r = onchip.one_shot_pcm(w, test, cfg, pcm_cfg, drift_s=d, rng=args.pcm_seed, progress=True)
            label = f"pcm_{d:g}s"
            extra = {"rate_train_hz": r.rate_train_hz, "rate_test_hz": r.rate_test_hz,
                     "frac_weights_changed": float(r.weights_changed.mean()) / r.n_weights,
                     "devices_written_mean": float(r.devices_written.mean()),
                     "devices_written_median": float(np.median(r.devices_written)),
                     "n_devices": r.n_devices, "frac_devices_written": r.frac_devices_written}
            add("no_update", label, r.y_before, drift_s=d, extra={"rate_train_hz": r.rate_train_hz})
            m = add("natural_eprop", label, r.y_after, eta=cfg.eta, quantum=cfg.update_quantum, drift_s=d,
                    extra=extra)
            errors[f"natural e-prop, PCM {d / 3600:g} h"] = m["ee_err_cm"]
            paths[f"PCM {d / 3600:g} h"] = m["xyz"]

    # write results
    keys = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(out / "summary.csv", "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=keys)
        wr.writeheader()
        wr.writerows(rows)
    with open(out / "per_trajectory.csv", "w", newline="") as f:
        wr = csv.writer(f)
        names = list(per_traj)
        wr.writerow(["trajectory", "hit_limit"] + [f"{n}:{k}" for n in names for k in ("loss", "ee_err_cm")])
        for i in range(len(test)):
            wr.writerow([i, int(test.hit_limit[i])]
                        + [f"{per_traj[n][k][i]:.6g}" for n in names for k in ("loss", "ee_err_cm")])
    files = _plots(out, test, {k: v for k, v in paths.items() if k != "before"}, errors, args.plots) \
        if args.plots >= 0 else []
    meta = {"weights": source, "kinematics": kin_name, "pcm_preset": None if args.no_pcm else args.pcm_preset,
            "pcm_w_max": args.pcm_w_max, "pcm_out_noise": args.pcm_out_noise,
            "pcm_rounding": args.pcm_rounding or ("nearest" if args.reference else "stochastic"),
            "trajectories": mode, "family": args.family, "n": args.n,
            "seed": args.seed,
            "val_seed": args.val_seed, "frac_hit_limit": float(test.hit_limit.mean()), "eta_tuning": tuning,
            "rows": rows, "plots": files, "wall_s": time.time() - t_start}
    if args.parity:
        meta["parity"] = {"ours": {
            "rate_trainee_hz": nat.rate_train_hz, "rate_lsg_hz": nat.rate_lsg_hz,
            "loss_before": float(m_none["loss"].mean()), "loss_after_float": float(m_nat["loss"].mean()),
            "loss_after_q16": float(m_natq["loss"].mean()), "frac_changed_q16": natq.frac_changed,
            "omega_rmse_base_after_float": float(np.sqrt(m_nat["omega_mse"][:, 0]).mean()),
            "omega_rmse_shoulder_after_float": float(np.sqrt(m_nat["omega_mse"][:, 1]).mean()),
            "ee_median_after_float_cm": float(np.median(m_nat["ee_err_cm"])),
            "ee_mean_after_float_cm": float(m_nat["ee_err_cm"].mean()),
            "ee_sd_after_float_cm": float(m_nat["ee_err_cm"].std(ddof=1)),
            "ee_p90_after_float_cm": float(np.percentile(m_nat["ee_err_cm"], 90)),
            "ee_mean_after_q16_cm": float(m_natq["ee_err_cm"].mean()),
            "ee_median_after_q16_cm": float(np.median(m_natq["ee_err_cm"])),
            "ee_mean_before_cm": float(m_none["ee_err_cm"].mean())}, "reference": PARITY_REFERENCE}
    (out / "metrics.json").write_text(json.dumps(meta, indent=2, default=float) + "\n")

    # console table
    print(f"\nweights: {source} | kinematics {kin_name} | family {args.family} | targets {mode} | n={args.n} "
          f"seed={args.seed}")
    hdr = f"{'condition':22s} {'platform':12s} {'eta':>9s} {'loss':>8s} {'rmse_b':>7s} {'rmse_s':>7s} " \
          f"{'ee_mean':>8s} {'ee_sd':>7s} {'ee_med':>7s} {'ee_p90':>7s} {'chg%':>6s} {'dev_wr':>7s}"
    print(hdr)
    for r in rows:
        eta = "" if r["eta"] is None else f"{r['eta']:.3g}"
        chg = r.get("frac_weights_changed")
        chg_s = "" if chg is None else f"{100 * chg:6.2f}"
        dev_s = f"{r['devices_written_mean']:7.0f}" if "devices_written_mean" in r else ""
        print(f"{r['condition']:22s} {r['platform']:12s} {eta:>9s} {r['loss']:8.4f} {r['omega_rmse_base']:7.3f} "
              f"{r['omega_rmse_shoulder']:7.3f} {r['ee_mean_cm']:8.2f} {r['ee_sd_cm']:7.2f} {r['ee_median_cm']:7.2f} "
              f"{r['ee_p90_cm']:7.2f} {chg_s:>6s} {dev_s:>7s}")
    if args.parity:
        print("\nparity with the reference numbers (released weights):")
        for k, ref in PARITY_REFERENCE.items():
            print(f"  {k:28s} ours {meta['parity']['ours'][k]:10.4f}   reference {ref}")
    print(f"\nwrote {out}/summary.csv, per_trajectory.csv, metrics.json, {', '.join(files)} "
          f"({time.time() - t_start:.0f} s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``pcm-l2l eval-snn ARGS`` (also ``python -m``): through the CLI, which configures logging."""
    from pcm_l2l_ros.cli import main as cli_main  # noqa: PLC0415

    return cli_main(["eval-snn", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
