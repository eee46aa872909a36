"""``pcm-l2l eval-cnn``: few-shot accuracy on the Omniglot evaluation split, software vs simulated PCM chip.

For each setting (5w1s, 5w5s, 20w1s, 20w5s) the same tasks (seeded, classes without replacement, distinct
queries) are evaluated in every mode, and the query accuracy after each inner step 0..K is recorded:

* ``sw``      fp32 software (readout-only delta rule, K = 4 steps, lr 0.1);
* ``q4``      4-bit-quantised software (stochastic rounding, per-tensor scale; readout re-quantised per step);
* ``pcm``     the CNN on the simulated chip (:mod:`pcm_l2l_ros.vision.deploy`, HERMES-like devices,
              per-column drift compensation) at each ``--drift-times`` (s since programming);
* ``scratch`` baseline: the same CNN, randomly initialised, all layers trained on the support set only
              (Adam, full batch); 'steps' = 0..K and the final step ``--scratch-steps``.

Outputs in ``--out-dir``: ``results.csv`` (setting, mode, drift_s, step, n_tasks, acc, ci95 half-width,
devices written per step / task), ``per_task.npz``, ``acc_vs_step.png``, ``acc_vs_drift.png``.
95 % CI = 1.96 x std over tasks / sqrt(n_tasks).

Example: ``pcm-l2l eval-cnn --settings 5w5s,5w1s --tasks 1000 --drift-times 3600``.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_DRIFTS = "0,3600,86400,31536000"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--settings", default="5w1s,5w5s,20w1s,20w5s", help="comma list of <N>w<K>s")
    p.add_argument("--modes", default="sw,q4,pcm,scratch", help="comma list of sw,q4,pcm,scratch")
    p.add_argument("--tasks", type=int, default=1000, help="tasks per setting (software modes)")
    p.add_argument("--pcm-tasks", type=int, default=None, help="tasks for the chip (default: --tasks)")
    p.add_argument("--scratch-tasks", type=int, default=200, help="tasks for the scratch baseline")
    p.add_argument("--scratch-steps", type=int, default=50)
    p.add_argument("--scratch-lr", type=float, default=1e-2)
    p.add_argument("--queries", type=int, default=5, help="query images per class")
    p.add_argument("--drift-times", default=DEFAULT_DRIFTS, help="s since programming, comma list")
    p.add_argument("--model5", default=None, help="5-way checkpoint (default: shipped cnn_5way)")
    p.add_argument("--model20", default=None, help="20-way checkpoint (default: shipped cnn_20way)")
    p.add_argument("--released", action="store_true", help="use the released Ortner et al. 5-way weights")
    p.add_argument("--pcm-preset", default="hermes_per_column",
                   help="named chip of pcm.presets: hermes_per_column (old name hermes), hermes_per_core, "
                        "aihwkit_compat, aihwkit_per_column, ideal")
    p.add_argument("--bn-stats", default="transductive", choices=("transductive", "support"))
    p.add_argument("--shift-px", type=int, default=0,
                   help="test-time shift augmentation (sw, q4, pcm): support and query images also as copies "
                        "shifted by up to this many pixels, 0..2 (9 / 25 copies); 0 = the paper's protocol")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pcm-seed", type=int, default=None,
                   help="seed of the programmed chip (its programming noise and drift; default --seed + 17): one "
                        "chip serves all tasks, so compare models over several --pcm-seed")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out-dir", default="runs/cnn/eval")
    p.add_argument("--data-dir", default=None, help="folder with images_evaluation.(npz|zip)")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--no-progress", action="store_true")


def parse_setting(s: str) -> tuple[int, int]:
    w, k = s.lower().rstrip("s").split("w")
    return int(w), int(k)


def ci95(a):
    import numpy as np  # noqa: PLC0415

    a = np.asarray(a, float)
    return float(a.mean()), float(1.96 * a.std(ddof=1) / np.sqrt(len(a))) if len(a) > 1 else float("nan")


def _model_for(ways: int, args):
    from pcm_l2l_ros.vision import model as M  # noqa: PLC0415

    if args.released:
        if ways != 5:
            raise ValueError("the released weights are 5-way only")
        p, cfg = M.load_released()
        return p, cfg, "released ortner2025 omniglot_weights.npz"
    path = getattr(args, f"model{ways}", None) or M.shipped_model_path(ways)
    p, cfg, _ = M.load_model(path)
    if cfg.ways < ways:
        raise ValueError(f"{path} is a {cfg.ways}-way model, setting needs {ways}")
    p, cfg = M.restrict_ways(p, cfg, ways)  # a larger model serves N ways with its first N readout columns
    return p, cfg, str(path)


def scratch_baseline(images, ways: int, shots: int, queries: int, n_tasks: int, steps: int, lr: float,
                     record: int, rng, channels: int = 56, progress: bool = True):
    """Train the CNN from a random init on each task's support set; accuracy at steps 0..record, and steps."""
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415
    import torch.nn.functional as F  # noqa: PLC0415
    from tqdm import tqdm  # noqa: PLC0415

    from pcm_l2l_ros.vision import model as M  # noqa: PLC0415
    from pcm_l2l_ros.vision.sampler import TaskSampler  # noqa: PLC0415

    cfg = M.CNNConfig(ways=ways, channels=channels)
    sampler = TaskSampler(images, ways, shots, queries)
    out = np.zeros((n_tasks, record + 2))
    for i in tqdm(range(n_tasks), disable=not progress, desc=f"scratch {ways}w{shots}s", mininterval=5):
        t = sampler.sample(rng)
        p = M.to_torch(M.init_params(cfg, rng), requires_grad=True)
        with torch.no_grad():
            p["readout"].normal_(0, 0.01, generator=torch.Generator().manual_seed(int(rng.integers(2**31))))
        opt = torch.optim.Adam(list(p.values()), lr=lr)
        xs, xq = torch.as_tensor(t.support_x[None]), torch.as_tensor(t.query_x[None])
        ys, yq = torch.as_tensor(t.support_y), torch.as_tensor(t.query_y)
        for step in range(steps + 1):
            if step <= record or step == steps:
                with torch.no_grad():
                    acc = float((M.features(p, xq, cfg)[0] @ p["readout"]).argmax(-1).eq(yq).float().mean())
                out[i, step if step <= record else record + 1] = acc
            if step == steps:
                break
            loss = F.cross_entropy(M.features(p, xs, cfg)[0] @ p["readout"], ys)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return out


def run(args: argparse.Namespace) -> int:
    import numpy as np  # noqa: PLC0415
    from tqdm import tqdm  # noqa: PLC0415

    from pcm_l2l_ros.pcm.presets import resolve  # noqa: PLC0415

    resolve(args.pcm_preset)  # an unknown chip name fails now, not after the software evaluations
    from pcm_l2l_ros.vision.shifts import check_shift_px, tile_labels  # noqa: PLC0415

    check_shift_px(args.shift_px)

    from pcm_l2l_ros.compute_threads import limit_compute_threads  # noqa: PLC0415
    from pcm_l2l_ros.vision.deploy import FewShotChip, chip_configs, support_query_features  # noqa: PLC0415
    from pcm_l2l_ros.vision.maml import evaluate_software  # noqa: PLC0415
    from pcm_l2l_ros.vision.omniglot import load_split  # noqa: PLC0415
    from pcm_l2l_ros.vision.sampler import TaskSampler  # noqa: PLC0415
    from pcm_l2l_ros.vision.train_cmd import split_source  # noqa: PLC0415

    limit_compute_threads(args.threads)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ev = load_split("evaluation", split_source(args.data_dir, "evaluation"))
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    drifts = [float(v) for v in args.drift_times.split(",") if v.strip()]
    pcm_tasks = args.pcm_tasks or args.tasks
    rows: list[dict] = []
    per_task: dict[str, np.ndarray] = {}
    csv_path = out_dir / "results.csv"
    fields = ["setting", "mode", "drift_s", "step", "n_tasks", "acc", "ci95", "devices_written_per_step",
              "devices_written_per_task", "distinct_devices_per_task", "devices_total", "model", "shift_px", "wall_s"]

    def emit(setting, mode, drift, acc, model_name, wall, dev_step=None, dev_task=None, dev_total=None,
             dev_distinct=None):
        key = f"{setting}_{mode}" + ("" if drift is None else f"_{int(drift)}s")
        per_task[key] = acc
        for k in range(acc.shape[1]):
            m, h = ci95(acc[:, k])
            step = k if not (mode == "scratch" and k == acc.shape[1] - 1) else args.scratch_steps
            rows.append({"setting": setting, "mode": mode, "drift_s": "" if drift is None else drift, "step": step,
                         "n_tasks": acc.shape[0], "acc": round(m, 5), "ci95": round(h, 5),
                         "devices_written_per_step": "" if dev_step is None else round(dev_step, 1),
                         "devices_written_per_task": "" if dev_task is None else round(dev_task, 1),
                         "distinct_devices_per_task": "" if dev_distinct is None else round(dev_distinct, 1),
                         "devices_total": "" if dev_total is None else dev_total, "model": model_name,
                         "shift_px": 0 if mode == "scratch" else args.shift_px, "wall_s": round(wall, 1)})
        m, h = ci95(acc[:, -1])
        log.info("%s %s%s: final acc %.4f +- %.4f (n=%d)%s", setting, mode,
                 "" if drift is None else f" @ {drift:g} s", m, h, acc.shape[0],
                 "" if dev_step is None else f", devices/step {dev_step:.0f}, per task {dev_task:.0f} writes to "
                 f"{dev_distinct:.0f} distinct devices ({100 * dev_distinct / dev_total:.2f} %) of {dev_total}")
        with csv_path.open("w", newline="") as f:  # rewrite after every result: partial runs are usable
            w = csv.DictWriter(f, fields)
            w.writeheader()
            w.writerows(rows)
        np.savez(out_dir / "per_task.npz", **per_task)

    for setting in [s.strip() for s in args.settings.split(",") if s.strip()]:
        ways, shots = parse_setting(setting)
        params, cfg, model_name = _model_for(ways, args)
        sampler = TaskSampler(ev.images, ways, shots, args.queries)
        task_seed = args.seed * 1000 + ways * 10 + shots  # the same tasks in every mode
        if "sw" in modes:
            t0 = time.time()
            acc = evaluate_software(params, cfg, sampler, args.tasks, np.random.default_rng(task_seed),
                                    bn_stats=args.bn_stats, shift_px=args.shift_px)
            emit(setting, "sw", None, acc, model_name, time.time() - t0)
        if "q4" in modes:
            t0 = time.time()
            acc = evaluate_software(params, cfg, sampler, args.tasks, np.random.default_rng(task_seed),
                                    bn_stats=args.bn_stats, quantize_bits=4, shift_px=args.shift_px)
            emit(setting, "q4", None, acc, model_name, time.time() - t0)
        if "pcm" in modes:
            pcm_seed = args.seed + 17 if args.pcm_seed is None else args.pcm_seed
            chip = FewShotChip(params, cfg, chip_configs(args.pcm_preset), np.random.default_rng(pcm_seed))
            total = chip.device_counts()["total"]
            for drift in drifts:
                t0 = time.time()
                chip.drift(drift)
                trng = np.random.default_rng(task_seed)
                wrng = np.random.default_rng([args.seed, ways, shots, int(drift)])
                accs, dev, distinct = [], [], []
                chunk = 10
                bar = tqdm(total=pcm_tasks, disable=args.no_progress, desc=f"pcm {setting} @{drift:g}s",
                           mininterval=5)
                done = 0
                while done < pcm_tasks:
                    n = min(chunk, pcm_tasks - done)
                    b = sampler.sample_batch(trng, n)
                    hs, hq = support_query_features(chip, b.support_x, b.query_x, args.bn_stats, args.shift_px)
                    for i in range(n):
                        r = chip.adapt_features(hs[i], tile_labels(b.support_y[i], args.shift_px), hq[i],
                                                cfg.inner_steps, wrng)
                        accs.append((r.step_labels == b.query_y[i]).mean(1))
                        dev.append(r.devices_written_per_step)
                        distinct.append(r.devices_written_distinct)
                    done += n
                    bar.update(n)
                bar.close()
                dev = np.asarray(dev, float)
                emit(setting, "pcm", drift, np.asarray(accs), model_name, time.time() - t0,
                     dev_step=float(dev.mean()), dev_task=float(dev.sum(1).mean()), dev_total=total,
                     dev_distinct=float(np.mean(distinct)))
        if "scratch" in modes:
            t0 = time.time()
            acc = scratch_baseline(ev.images, ways, shots, args.queries, args.scratch_tasks, args.scratch_steps,
                                   args.scratch_lr, cfg.inner_steps, np.random.default_rng(task_seed),
                                   progress=not args.no_progress)
            emit(setting, "scratch", None, acc, "random init", time.time() - t0)
    if not args.no_plots:
        plot_results(csv_path, out_dir)
    log.info("wrote %s", csv_path)
    return 0


def plot_results(csv_path: Path, out_dir: Path) -> None:
    """acc_vs_step.png (one panel per setting) and acc_vs_drift.png (final step)."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    with Path(csv_path).open() as f:
        rows = list(csv.DictReader(f))
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    if not settings:
        return
    fig, axes = plt.subplots(1, len(settings), figsize=(4 * len(settings), 3.4), squeeze=False)
    for ax, s in zip(axes[0], settings, strict=True):
        curves: dict[str, list] = {}
        for r in rows:
            if r["setting"] != s:
                continue
            label = r["mode"] + (f" @{float(r['drift_s']):g}s" if r["drift_s"] else "")
            if r["mode"] == "scratch" and int(r["step"]) > 4:
                label += f" (step {r['step']})"
            curves.setdefault(label, []).append((int(r["step"]), float(r["acc"]), float(r["ci95"] or 0)))
        for label, pts in curves.items():
            pts.sort()
            xs = [p[0] for p in pts if p[0] <= 8]
            if not xs:
                ax.axhline(pts[-1][1], ls=":", color="gray", label=label)
                continue
            ax.errorbar(xs, [p[1] for p in pts if p[0] <= 8], yerr=[p[2] for p in pts if p[0] <= 8],
                        marker="o", ms=3, capsize=2, label=label)
        ax.set_title(s)
        ax.set_xlabel("inner step")
        ax.set_ylabel("query accuracy")
        ax.set_ylim(0, 1.01)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out_dir / "acc_vs_step.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.4))
    for s in settings:
        pcm = sorted((float(r["drift_s"]), float(r["acc"]), float(r["ci95"] or 0)) for r in rows
                     if r["setting"] == s and r["mode"] == "pcm" and r["step"] == "4")
        if pcm:
            ax.errorbar([max(p[0], 1.0) for p in pcm], [p[1] for p in pcm], yerr=[p[2] for p in pcm],
                        marker="o", capsize=2, label=f"{s} PCM")
        sw = [float(r["acc"]) for r in rows if r["setting"] == s and r["mode"] == "sw" and r["step"] == "4"]
        if sw:
            ax.axhline(sw[0], ls="--", lw=0.8, color=ax.lines[-1].get_color() if ax.lines else "k",
                       label=f"{s} software")
    ax.set_xscale("log")
    ax.set_xlabel("time since programming, s (0 s plotted at 1 s)")
    ax.set_ylabel("query accuracy after 4 steps")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out_dir / "acc_vs_drift.png", dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """``pcm-l2l eval-cnn ARGS`` (also ``python -m``): through the CLI, which configures logging."""
    from pcm_l2l_ros.cli import main as cli_main  # noqa: PLC0415

    return cli_main(["eval-cnn", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
