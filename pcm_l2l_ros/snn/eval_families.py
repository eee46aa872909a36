"""``pcm-l2l eval-snn --family all``: every task family in turn, then the per-family table and plot.

Each family of :data:`pcm_l2l_ros.snn.families.FAMILIES` is evaluated by :func:`pcm_l2l_ros.snn.eval_cmd.run`
(``--n`` trajectories, results in ``--out``/FAMILY/); then the one-shot end-effector error (median and p90, cm)
per family and condition is written as ``families.csv`` / ``families.md`` (:func:`family_table`) and plotted as
``families.png`` in ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

#: columns of the per-family table: (label, condition, platform prefix)
FAMILY_COLUMNS = (
    ("no update", "no_update", "software"),
    ("natural e-prop, software", "natural_eprop", "software"),
    ("natural, ΔW as on chip (sw)", "natural_eprop_q16", "software"),
    ("symmetric e-prop", "symmetric_eprop", "software"),
    ("random e-prop", "random_eprop", "software"),
    ("chip 1 h", "natural_eprop", "pcm_3600s"),
    ("chip 1 day", "natural_eprop", "pcm_86400s"),
)


def family_table(rows_by_family: dict[str, list[dict]]) -> tuple[list[dict], str]:
    """Long rows (family, condition, platform, n, loss, ee median / p90 / mean, cm) and a Markdown table
    (median / p90 in cm per family and condition) from each family's ``metrics.json`` rows."""
    long, present = [], []
    for fam, rows in rows_by_family.items():
        for r in rows:
            long.append(
                {
                    "family": fam,
                    "condition": r["condition"],
                    "platform": r["platform"],
                    "n": r["n"],
                    "eta": r.get("eta"),
                    "loss": r["loss"],
                    "ee_median_cm": r["ee_median_cm"],
                    "ee_p90_cm": r["ee_p90_cm"],
                    "ee_mean_cm": r["ee_mean_cm"],
                }
            )
    for col in FAMILY_COLUMNS:
        if any(r["condition"] == col[1] and r["platform"] == col[2] for r in long):
            present.append(col)
    lines = ["| family | n | " + " | ".join(c[0] for c in present) + " |", "|---|---|" + "---|" * len(present)]
    for fam in rows_by_family:
        cells = []
        n = ""
        for _, cond, plat in present:
            hit: dict | None = next(
                (r for r in long if r["family"] == fam and r["condition"] == cond and r["platform"] == plat), None
            )
            cells.append("–" if hit is None else f"{hit['ee_median_cm']:.2f} / {hit['ee_p90_cm']:.2f}")
            n = n or ("" if hit is None else str(hit["n"]))
        lines.append(f"| {fam} | {n} | " + " | ".join(cells) + " |")
    return long, "\n".join(lines) + "\n"


def _family_plot(out: Path, long: list[dict]) -> str:
    import matplotlib  # noqa: PLC0415 - lazy: plotting only here

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fams = list(dict.fromkeys(r["family"] for r in long))
    cols = [
        c
        for c in FAMILY_COLUMNS
        if c[1] != "no_update" and any(r["condition"] == c[1] and r["platform"] == c[2] for r in long)
    ]
    fig, ax = plt.subplots(figsize=(max(7.0, 1.3 * len(fams) * max(1, len(cols)) / 3), 4.5))
    width = 0.8 / max(1, len(cols))
    for k, (label, cond, plat) in enumerate(cols):
        med, p90 = [], []
        for f in fams:
            r = next((r for r in long if r["family"] == f and r["condition"] == cond and r["platform"] == plat), None)
            med.append(np.nan if r is None else r["ee_median_cm"])
            p90.append(np.nan if r is None else r["ee_p90_cm"])
        x = np.arange(len(fams)) + (k - (len(cols) - 1) / 2) * width
        ax.bar(x, med, width, label=label)
        ax.plot(x, p90, "k_", ms=8)
    ax.set_xticks(np.arange(len(fams)), fams, rotation=20)
    ax.set_ylabel("end-effector error after one update (cm)\nbar: median, dash: p90")
    ax.set_yscale("log")
    ax.axhline(3.0, color="grey", ls=":", lw=1)
    ax.axhline(5.0, color="grey", ls="--", lw=1)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("one-shot learning per task family (dotted 3 cm: software goal, dashed 5 cm: chip goal)", fontsize=9)
    fig.tight_layout()
    f = out / "families.png"
    fig.savefig(f, dpi=90)
    plt.close(fig)
    return f.name


def run_all(args: argparse.Namespace) -> int:
    """``--family all``: every family of :data:`families.FAMILIES` in turn (``--out``/FAMILY/), then the
    per-family table (families.csv, families.md) and plot (families.png)."""
    import copy  # noqa: PLC0415 - only here

    from pcm_l2l_ros.snn import families  # noqa: PLC0415
    from pcm_l2l_ros.snn.eval_cmd import run  # noqa: PLC0415 - eval_cmd imports this module lazily

    t_start = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows_by_family: dict[str, list[dict]] = {}
    for fam in families.FAMILIES:
        a = copy.copy(args)
        a.family, a.out = fam, out / fam
        rc = run(a)
        if rc != 0:
            return rc
        rows_by_family[fam] = json.loads((a.out / "metrics.json").read_text())["rows"]
    long, md = family_table(rows_by_family)
    with open(out / "families.csv", "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=list(long[0]))
        wr.writeheader()
        wr.writerows(long)
    head = (
        f"One-shot end-effector error, median / p90 (cm), {args.n} held-out trajectories per family "
        f"(seed {args.seed}), one update.\n\n"
    )
    (out / "families.md").write_text(head + md)
    plot = _family_plot(out, long) if args.plots >= 0 else ""
    print("\n" + head + md)
    print(f"wrote {out}/families.csv, families.md, {plot} ({time.time() - t_start:.0f} s)")
    return 0
