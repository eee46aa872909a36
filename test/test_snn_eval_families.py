"""``pcm-l2l eval-snn --family NAME|all``: one-shot error per task family, with the per-family table and plot."""

from __future__ import annotations

import csv
import json

from pcm_l2l_ros.snn import eval_cmd, families


def test_eval_snn_all_families(tmp_path):
    rc = eval_cmd.main(["--family", "all", "--n", "3", "--val-n", "3", "--eta-grid", "0.01", "--drift", "3600",
                        "--plots", "0", "--out", str(tmp_path)])
    assert rc == 0
    with open(tmp_path / "families.csv") as f:
        rows = list(csv.DictReader(f))
    got = {(r["family"], r["condition"], r["platform"]) for r in rows}
    for fam in families.FAMILIES:
        meta = json.loads((tmp_path / fam / "metrics.json").read_text())
        assert meta["family"] == fam and meta["n"] == 3
        for cond, plat in (("no_update", "software"), ("natural_eprop", "software"),
                           ("natural_eprop_q16", "software"), ("symmetric_eprop", "software"),
                           ("random_eprop", "software"), ("natural_eprop", "pcm_3600s")):
            assert (fam, cond, plat) in got
    # the per-family numbers are those of the family's own run
    ell = json.loads((tmp_path / "ellipse" / "metrics.json").read_text())["rows"]
    nat = next(r for r in ell if r["condition"] == "natural_eprop" and r["platform"] == "software")
    row = next(r for r in rows if r["family"] == "ellipse" and r["condition"] == "natural_eprop"
               and r["platform"] == "software")
    assert float(row["ee_median_cm"]) == nat["ee_median_cm"]
    md = (tmp_path / "families.md").read_text()
    assert all(f"| {fam} | 3 |" in md for fam in families.FAMILIES) and "chip 1 h" in md
    assert (tmp_path / "families.png").stat().st_size > 0


def test_eval_snn_one_family_and_unknown_family(tmp_path):
    rc = eval_cmd.main(["--family", "lemniscate", "--n", "2", "--no-pcm", "--no-baselines", "--plots", "0",
                        "--out", str(tmp_path / "l")])
    assert rc == 0
    assert json.loads((tmp_path / "l" / "metrics.json").read_text())["family"] == "lemniscate"
    assert eval_cmd.main(["--family", "circle", "--n", "2", "--out", str(tmp_path / "c")]) == 2
