"""CLI errors (issue #15 item 9): a bad argument or a missing file is one clear line on stderr and a non-zero
exit, no traceback; a PCM_L2L_SHARED that points nowhere is an error, not a fall-back to another folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pcm_l2l_ros import paths

REPO = Path(__file__).resolve().parent.parent


def _cli(*argv: str, **env: str) -> subprocess.CompletedProcess:
    e = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), **env)
    return subprocess.run([sys.executable, "-m", "pcm_l2l_ros.cli", *argv], cwd=REPO, env=e, capture_output=True,
                          text=True, timeout=300)


def test_missing_checkpoint_is_one_line_without_traceback():
    r = _cli("eval-cnn", "--settings", "7w3s")
    assert r.returncode != 0
    assert "Traceback" not in r.stderr, r.stderr
    errors = [line for line in r.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "cnn_7way" in errors[0], r.stderr


def test_shared_folder_that_points_nowhere_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PCM_L2L_SHARED", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="PCM_L2L_SHARED"):
        paths.shared_dir()
    r = _cli("eval-cnn", "--settings", "5w1s", "--tasks", "2", "--out", str(tmp_path / "out"),
             PCM_L2L_SHARED=str(tmp_path / "nowhere"))
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert "PCM_L2L_SHARED" in r.stderr, r.stderr
