"""Run every benchmark in this folder (same as ``pcm-l2l bench``)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from pcm_l2l_ros.bench_cmd import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
