"""Few-shot accuracy against training time: docs/vision_budget.csv -> docs/vision_budget.png.

Each row of the CSV is one checkpoint evaluated with ``pcm-l2l eval-cnn --modes sw,pcm --drift-times 3600
--tasks 1000`` (evaluation split, task seed 0): software and chip (1 h drift) accuracy after the 4 readout
steps, against the hours of training steps on one CPU core that produced it (the sidecars' ``train_wall_s``,
pre-training included). Run from the repository root: ``tools/env.sh python tools/plot_vision_budget.py``.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

DOCS = Path(__file__).resolve().parent.parent / "docs"


def main() -> int:
    rows = list(csv.DictReader((DOCS / "vision_budget.csv").open()))
    settings = sorted({r["setting"] for r in rows}, key=lambda s: (-int(s.split("w")[0]), s))
    recipes = list(dict.fromkeys(r["recipe"] for r in rows))  # one colour per recipe across the panels
    fig, axes = plt.subplots(1, len(settings), figsize=(5.5 * len(settings), 5.6))
    for ax, setting in zip(axes, settings, strict=True):
        curves: dict[str, list[dict]] = defaultdict(list)
        for r in rows:
            if r["setting"] == setting:
                curves[r["recipe"]].append(r)
        for recipe, pts in curves.items():
            pts.sort(key=lambda r: float(r["train_hours_one_core"]))
            h = [float(r["train_hours_one_core"]) for r in pts]
            color = f"C{recipes.index(recipe) % 10}"
            ax.plot(h, [float(r["software"]) for r in pts], "o--", color=color, label=f"{recipe}, software")
            ax.plot(h, [float(r["chip_1h"]) for r in pts], "s-", color=color, label=f"{recipe}, chip 1 h")
        ax.set_title(f"{setting} (evaluation split, 1,000 tasks)")
        ax.set_xlabel("training time, hours on one CPU core")
        ax.set_ylabel("query accuracy after 4 readout steps (%)")
        ax.grid(alpha=0.3)
    legend: dict[str, object] = {}  # every recipe once, whichever panel it appears in
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=2, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.27, 1, 1))
    fig.savefig(DOCS / "vision_budget.png", dpi=110)
    print(f"wrote {DOCS / 'vision_budget.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
