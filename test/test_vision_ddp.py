"""Data-parallel meta-training: a 2-rank run (torchrun, gloo on loopback) takes the same steps as 1 process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from pcm_l2l_ros.checkpoint import torch_load


def _train(run_dir, ranks: int, extra: list[str] | None = None) -> dict[str, torch.Tensor]:
    args = ["-m", "pcm_l2l_ros.vision.train_cmd", "--ways", "5", "--shots", "1", "--queries", "2",
            "--channels", "8", "--meta-batch", "4", "--iterations", "3", "--monitor-every", "0",
            "--ckpt-every", "1", "--seed", "5", "--no-progress", "--run-dir", str(run_dir), *(extra or [])]
    if ranks > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}", *args]
    else:
        cmd = [sys.executable, *args]
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    return torch_load(run_dir / "state.pt")


def test_two_ranks_equal_one_process(tmp_path):
    one = _train(tmp_path / "one", 1)
    two = _train(tmp_path / "two", 2)
    assert one["iteration"] == two["iteration"] == 3
    for k, v in one["params"].items():
        torch.testing.assert_close(torch.as_tensor(two["params"][k]), torch.as_tensor(v), rtol=1e-4, atol=1e-6)
    # the logged (all-reduced) loss of each step is the whole meta-batch's loss
    rows = [(tmp_path / d / "metrics.csv").read_text().splitlines()[1:] for d in ("one", "two")]
    for a, b in zip(*rows, strict=True):
        assert float(a.split(",")[3]) == pytest.approx(float(b.split(",")[3]), rel=1e-4)
    # a different meta-batch (a wrong split of the tasks would look like this) ends elsewhere
    other = _train(tmp_path / "other", 1, ["--meta-batch", "2"])
    assert not torch.allclose(torch.as_tensor(other["params"]["conv2"]), torch.as_tensor(one["params"]["conv2"]))


def test_meta_batch_must_split_evenly(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m",
           "pcm_l2l_ros.vision.train_cmd", "--meta-batch", "3", "--iterations", "1", "--monitor-every", "0",
           "--channels", "8", "--no-progress", "--run-dir", str(tmp_path / "r")]
    r = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo"),
                       capture_output=True, text=True, timeout=240)
    assert r.returncode != 0 and "not divisible by 2 ranks" in r.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_device_runs(tmp_path):
    st = _train(tmp_path / "gpu", 1, ["--device", "cuda"])
    assert st["iteration"] == 3
