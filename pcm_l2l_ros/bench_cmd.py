"""``pcm-l2l bench``: run the benchmarks in ``bench/`` (each prints timings and ratios against its peers).

Benchmarks measure; they never assert. Peers that are not importable (aihwkit, snnTorch, Norse) are skipped
by the scripts themselves with a note. Use ``--only NAME`` to run one (e.g. ``pcm_mvm``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent / "bench"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--only", action="append", default=None, help="benchmark name (file stem), repeatable")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")


def run(args: argparse.Namespace) -> int:
    scripts = sorted(p for p in BENCH_DIR.glob("*.py") if not p.name.startswith("_") and p.stem != "run_all")
    if args.list:
        for s in scripts:
            print(s.stem)
        return 0
    if args.only:
        unknown = set(args.only) - {s.stem for s in scripts}
        if unknown:
            print(f"unknown benchmark(s): {sorted(unknown)}; see --list", file=sys.stderr)
            return 2
        scripts = [s for s in scripts if s.stem in args.only]
    failed = []
    for s in scripts:
        print(f"\n=== {s.stem} ===", flush=True)
        if subprocess.run([sys.executable, str(s)]).returncode != 0:
            failed.append(s.stem)
    if failed:
        print(f"\nbenchmarks that failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pcm-l2l bench", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))
