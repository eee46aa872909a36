"""limit_compute_threads: torch and every BLAS pool (numpy's and scipy's OpenBLAS) end up at n threads."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pcm_l2l_ros.compute_threads import limit_compute_threads

PROBE = """
import json, numpy, torch
from threadpoolctl import threadpool_info
from pcm_l2l_ros.compute_threads import limit_compute_threads
limit_compute_threads(1)
blas = [(i["filepath"], i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"]
print(json.dumps({"torch": torch.get_num_threads(), "blas": blas}))
"""


def test_limits_torch_and_both_openblas_pools():
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}  # library defaults
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120,
                         check=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    assert r["torch"] == 1
    assert len(r["blas"]) >= 2, r["blas"]          # numpy's and scipy's (Numba's np.dot) OpenBLAS
    assert all(n == 1 for _, n in r["blas"]), r["blas"]


def test_rejects_zero_threads():
    with pytest.raises(ValueError, match="at least one thread"):
        limit_compute_threads(0)
