#!/usr/bin/env python3
"""Type check of the core packages with a baseline that may only shrink.

Runs mypy (configuration: ``[tool.mypy]`` in pyproject.toml: pcm, snn, vision, arm) and compares its errors with
``tools/mypy_baseline.txt``. An error is identified by its code and message, not by file and line, so that moving
code between lines or files does not count as a new error. The check fails when an error occurs more often than in
the baseline; errors that disappeared are reported, and ``--update`` rewrites the baseline (do that only when the
list shrank, and commit it).

Usage: tools/env.sh python tools/typecheck.py [--update]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BASELINE = REPO / "tools" / "mypy_baseline.txt"
ERROR = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: (?P<msg>.*?)(?:\s+\[(?P<code>[a-z0-9-]+)\])?$")


def run_mypy() -> tuple[list[tuple[str, str]], str]:
    """[(key, location)] of every mypy error, and mypy's raw output."""
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-color-output", "--no-error-summary", "--show-absolute-path"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    out = proc.stdout + proc.stderr
    errors = []
    for line in out.splitlines():
        m = ERROR.match(line)
        if m:
            path = Path(m["file"])
            rel = path.relative_to(REPO) if path.is_absolute() and path.is_relative_to(REPO) else path
            errors.append((f"[{m['code'] or 'misc'}] {m['msg']}", f"{rel}:{m['line']}"))
    if proc.returncode not in (0, 1) or (proc.returncode == 1 and not errors):
        print(out, file=sys.stderr)
        raise SystemExit(f"typecheck: mypy failed to run (exit {proc.returncode})")
    return errors, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--update", action="store_true", help="rewrite the baseline with the current errors")
    args = ap.parse_args()

    errors, _ = run_mypy()
    now = Counter(key for key, _ in errors)
    if args.update:
        BASELINE.write_text("".join(f"{k}\n" for k in sorted(now.elements())))
        print(f"typecheck: baseline written, {sum(now.values())} errors")
        return 0
    lines = BASELINE.read_text().splitlines() if BASELINE.exists() else []
    base = Counter(line for line in lines if line.strip())
    new = now - base
    fixed = base - now
    if new:
        print(f"typecheck: {sum(new.values())} new mypy error(s) (not in {BASELINE.relative_to(REPO)}):")
        for key, loc in errors:
            if new[key] > 0:
                print(f"  {loc}: {key}")
        return 1
    msg = f"typecheck: {sum(now.values())} mypy errors, none new (baseline {sum(base.values())})"
    if fixed:
        msg += f"; {sum(fixed.values())} fixed: run tools/typecheck.py --update to shrink the baseline"
    print(msg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
