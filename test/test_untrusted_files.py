"""Loading untrusted files (issue #15 item 8): corrupt and truncated checkpoints stop a node at start with
one clear line (no traceback); training states load with ``weights_only=True`` (numpy arrays allowed, code
never run); the Omniglot download is verified as a partial file before it is renamed into place."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pcm_l2l_ros.checkpoint import CheckpointError, load_checkpoint, torch_load
from pcm_l2l_ros.paths import MODELS_DIR

REPO = Path(__file__).resolve().parent.parent


def _copy_checkpoint(src: Path, dst: Path, *, truncate: bool = False, garbage: bool = False,
                     fix_sha: bool = False) -> Path:
    data = src.read_bytes()
    if truncate:
        data = data[: len(data) // 2]
    if garbage:
        data = np.random.default_rng(0).integers(0, 256, len(data), dtype=np.uint8).tobytes()
    dst.write_bytes(data)
    side = json.loads(src.with_suffix(".json").read_text())
    if fix_sha:                                        # the sidecar agrees: only the npz itself is broken
        side["sha256"] = hashlib.sha256(data).hexdigest()
    dst.with_suffix(".json").write_text(json.dumps(side))
    return dst


@pytest.mark.parametrize("kind", ["truncated", "garbage_with_matching_sha"])
def test_broken_checkpoint_is_a_clear_error(tmp_path, kind):
    path = _copy_checkpoint(MODELS_DIR / "snn_l2l.npz", tmp_path / "snn.npz", truncate=kind == "truncated",
                            garbage=kind != "truncated", fix_sha=kind != "truncated")
    with pytest.raises(CheckpointError, match="sha256|corrupt or truncated"):
        load_checkpoint(path)


@pytest.mark.parametrize("module,param,model,extra", [
    # the managed nodes load their checkpoints at configure: autostart configures at start-up
    # (over the lifecycle services: test_vision_lifecycle.py, test_controller_lifecycle.py)
    ("pcm_l2l_ros.nodes.controller_node", "checkpoint", "snn_l2l.npz", ["-p", "autostart:=true"]),
    ("pcm_l2l_ros.nodes.vision_node", "checkpoint_5way", "cnn_5way.npz", ["-p", "autostart:=true"]),
])
def test_node_with_a_corrupt_checkpoint_stops_at_start_with_one_line(ros_domain, tmp_path, module, param, model,
                                                                     extra):
    path = _copy_checkpoint(MODELS_DIR / model, tmp_path / model, garbage=True, fix_sha=True)
    env = dict(os.environ, ROS_DOMAIN_ID=str(ros_domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-m", module, "--ros-args", "-p", f"{param}:={path}", *extra], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr[-3000:]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    errors = [line for line in r.stderr.splitlines() if "cannot start" in line]
    assert len(errors) == 1 and "corrupt or truncated" in errors[0] and model in errors[0], r.stderr[-3000:]


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_training_states_load_weights_only(tmp_path):
    import torch

    good = {"params": {"w": np.ones((2, 3), np.float32)}, "rng": np.random.default_rng(1).bit_generator.state,
            "t": torch.zeros(3), "args": {"run_dir": tmp_path}, "iteration": 7}
    torch.save(good, tmp_path / "state.pt")
    st = torch_load(tmp_path / "state.pt")
    np.testing.assert_array_equal(st["params"]["w"], good["params"]["w"])
    assert st["iteration"] == 7 and st["args"]["run_dir"] == tmp_path
    torch.save({"x": _Evil()}, tmp_path / "evil.pt")
    with pytest.raises(pickle.UnpicklingError):
        torch_load(tmp_path / "evil.pt")
    src = (REPO / "pcm_l2l_ros" / "vision" / "maml.py").read_text() + \
        (REPO / "pcm_l2l_ros" / "snn" / "train_cmd.py").read_text()
    assert "weights_only=False" not in src


def test_download_is_verified_before_it_is_renamed_into_place(tmp_path, monkeypatch):
    from pcm_l2l_ros.vision import omniglot

    src = tmp_path / "src" / "images_background.zip"
    src.parent.mkdir()
    with zipfile.ZipFile(src, "w") as z:
        z.writestr("images_background/a.txt", "x")
    monkeypatch.setattr(omniglot, "OFFICIAL_URL", f"file://{src.parent}/images_{{split}}.zip")
    dest = tmp_path / "dest"
    # wrong checksum (a truncated/tampered download): refused, and nothing is left in place
    monkeypatch.setattr(omniglot, "OFFICIAL_MD5", {"background": "0" * 32})
    with pytest.raises(ValueError, match="md5"):
        omniglot.download_official(dest, splits=("background",))
    assert sorted(p.name for p in dest.iterdir()) == []
    # right md5, wrong sha256: refused too
    md5 = hashlib.md5(src.read_bytes()).hexdigest()  # noqa: S324 - the published checksum's kind
    monkeypatch.setattr(omniglot, "OFFICIAL_MD5", {"background": md5})
    with pytest.raises(ValueError, match="sha256"):
        omniglot.download_official(dest, splits=("background",), sha256={"background": "f" * 64})
    assert sorted(p.name for p in dest.iterdir()) == []
    # verified: renamed into place
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    out = omniglot.download_official(dest, splits=("background",), sha256={"background": sha})
    assert out == [dest / "images_background.zip"] and sorted(p.name for p in dest.iterdir()) == [
        "images_background.zip"]
    shutil.rmtree(dest)
