"""``pcm-l2l report``: plot the metrics CSVs that training and evaluation write (matplotlib, Agg).

For every CSV given (or found under ``--runs``), every numeric column is plotted against the first column
(the iteration or step) into ``<out>/<csv stem>.png``; a moving average is drawn over noisy curves.
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("csv", nargs="*", type=Path, help="metrics CSV files")
    p.add_argument("--runs", type=Path, default=None, help="folder searched recursively for metrics.csv")
    p.add_argument("--out", type=Path, default=Path("outputs/report"), help="folder for the PNGs")
    p.add_argument("--smooth", type=int, default=50, help="moving-average window (points)")


def _read(path: Path) -> tuple[str, dict[str, list[float]]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path}: no rows")
    cols: dict[str, list[float]] = {}
    for name in rows[0]:
        try:
            vals = [float(r[name]) if r[name] not in ("", None) else math.nan for r in rows]
        except ValueError:
            continue  # a text column
        cols[name] = vals
    x = next(iter(rows[0]))
    if x not in cols:
        raise ValueError(f"{path}: first column {x!r} is not numeric")
    return x, cols


def plot(path: Path, out: Path, smooth: int) -> Path:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    x_name, cols = _read(path)
    x = np.asarray(cols.pop(x_name))
    names = [n for n, v in cols.items() if np.isfinite(v).any()]
    n = max(1, len(names))
    ncol = min(3, n)
    fig, axes = plt.subplots((n + ncol - 1) // ncol, ncol, figsize=(4.5 * ncol, 3 * ((n + ncol - 1) // ncol)),
                             squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    for ax, name in zip(axes.ravel(), names, strict=False):
        y = np.asarray(cols[name])
        ok = np.isfinite(y)
        ax.plot(x[ok], y[ok], lw=0.6, alpha=0.5 if ok.sum() > 2 * smooth else 1.0)
        if ok.sum() > 2 * smooth:
            k = np.ones(smooth) / smooth
            ax.plot(x[ok][smooth - 1:], np.convolve(y[ok], k, mode="valid"), lw=1.5)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(x_name, fontsize=8)
    fig.suptitle(str(path))
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    dest = out / f"{path.parent.name}_{path.stem}.png"
    fig.savefig(dest, dpi=100)
    plt.close(fig)
    return dest


def run(args: argparse.Namespace) -> int:
    files = list(args.csv)
    if args.runs is not None:
        files += sorted(args.runs.rglob("*.csv"))
    if not files:
        print("no CSV given (pass files or --runs FOLDER)")
        return 2
    for f in files:
        try:
            print(f"{f} -> {plot(f, args.out, args.smooth)}")
        except (OSError, ValueError) as e:
            print(f"{f}: skipped ({e})")
    return 0
