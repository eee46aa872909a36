"""Backbone pre-training (pretrain-cnn): class mapping, schedule, learning, exact resumption, export -> --init."""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest
import torch

from pcm_l2l_ros.checkpoint import save_checkpoint
from pcm_l2l_ros.vision import model as M
from pcm_l2l_ros.vision.maml import MetaTrainer, TrainSettings
from pcm_l2l_ros.vision.omniglot import load_split
from pcm_l2l_ros.vision.pretrain import Pretrainer, PretrainSettings, class_images, one_cycle_lr


@pytest.fixture(scope="module")
def background():
    return load_split("background").images


def _small(**kw) -> PretrainSettings:
    base = dict(epochs=2, batch=40, channels=12, monitor_tasks=0, ckpt_every=1000, seed=3)
    base.update(kw)
    return PretrainSettings(**base)


def test_rotation_classes_follow_the_task_sampler_convention(background):
    imgs = background[:7]
    c = class_images(imgs, rotations=True)
    assert c.shape == (28, 20, 28, 28)
    for cls in (0, 6, 7, 15, 27):
        assert np.array_equal(c[cls], np.rot90(imgs[cls % 7], k=cls // 7, axes=(1, 2)))
    assert class_images(imgs, rotations=False).shape == (7, 20, 28, 28)


def test_one_cycle_schedule_warms_up_then_decays():
    total, peak = 1000, 3e-3
    lrs = np.array([one_cycle_lr(t, total, peak, 0.1) for t in range(total)])
    assert lrs.argmax() == 100 and lrs.max() == pytest.approx(peak)
    assert np.all(np.diff(lrs[:100]) > 0) and np.all(np.diff(lrs[101:]) <= 0)
    assert lrs[-1] < peak / 100


def test_settings_are_validated_before_anything_is_built(tmp_path, background):
    for bad in (dict(bn_group=7), dict(epochs=0), dict(lr_max=0.0)):
        with pytest.raises(ValueError):
            Pretrainer(_small(**bad), tmp_path / "x", background[:5])


def test_pretraining_learns_the_characters(tmp_path, background):
    """30 characters (no rotations), 30 epochs: batch accuracy far above chance (1/30) and loss falls."""
    s = _small(epochs=30, batch=50, channels=16, rotations=False, lr_max=5e-3, label_smoothing=0.0)
    tr = Pretrainer(s, tmp_path / "run", background[:30])
    tr.train(progress=False)
    with (tmp_path / "run" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    first = np.mean([float(r["loss"]) for r in rows[:10]])
    last_loss = np.mean([float(r["loss"]) for r in rows[-24:]])
    last_acc = np.mean([float(r["acc"]) for r in rows[-24:]])
    assert last_loss < 0.5 * first
    assert last_acc > 0.5, last_acc


def test_resumed_run_equals_uninterrupted(tmp_path, background):
    imgs = background[:10]
    s = _small()
    a = Pretrainer(s, tmp_path / "a", imgs)
    a.train(progress=False)
    b = Pretrainer(dataclasses.replace(s), tmp_path / "b", imgs)
    b.train(progress=False, max_steps=5)
    b2 = Pretrainer(dataclasses.replace(s), tmp_path / "b", imgs, resume=True)
    assert b2.step_count == 5
    b2.train(progress=False)
    assert a.step_count == b2.step_count == a.total_steps
    for k in a.params:
        assert torch.equal(a.params[k], b2.params[k]), k
    assert torch.equal(a.head, b2.head)
    ra = (tmp_path / "a" / "metrics.csv").read_text().splitlines()
    rb = (tmp_path / "b" / "metrics.csv").read_text().splitlines()
    strip = [[c for i, c in enumerate(line.split(",")) if i != 2] for line in ra], \
        [[c for i, c in enumerate(line.split(",")) if i != 2] for line in rb]  # column 2 is wall time
    assert strip[0] == strip[1]
    with pytest.raises(ValueError, match="resume with the same"):
        Pretrainer(dataclasses.replace(s, seed=4), tmp_path / "b", imgs, resume=True)


def test_export_then_init_restores_the_backbone(tmp_path, background):
    s = _small(channels=56)
    tr = Pretrainer(s, tmp_path / "pre", background[:8])
    tr.train(progress=False, max_steps=2)
    arrays = tr.numpy_params(20)
    assert arrays["readout"].shape == (56, 20) and not arrays["readout"].any()
    path = save_checkpoint(tmp_path / "backbone.npz", arrays, kind=M.KIND, seed=3,
                           config=M.CNNConfig(ways=20).to_dict())
    # a 20-way run takes the convs and the (zero) readout; a 5-way run the convs only
    for ways, expect in ((20, {"conv1", "conv2", "conv3", "conv4", "readout"}),
                         (5, {"conv1", "conv2", "conv3", "conv4"})):
        mt = MetaTrainer(TrainSettings(ways=ways, meta_batch=2, monitor_every=0), tmp_path / f"maml{ways}",
                         background[:30])
        before = mt.numpy_params()
        assert set(mt.init_from(path)) == expect
        for k in M.CONV_NAMES:
            assert np.array_equal(mt.numpy_params()[k], arrays[k])
            assert not np.array_equal(before[k], arrays[k])


def test_init_from_a_run_state_restores_adam(tmp_path, background):
    s = TrainSettings(ways=5, meta_batch=2, monitor_every=0, ckpt_every=1, channels=16, seed=1)
    a = MetaTrainer(s, tmp_path / "a", background[:30])
    a.train(iterations=2, progress=False)
    b = MetaTrainer(dataclasses.replace(s, seed=9), tmp_path / "b", background[:30])
    assert "adam_state" in b.init_from(tmp_path / "a" / "state.pt")
    st_a, st_b = a.opt.state_dict()["state"], b.opt.state_dict()["state"]
    assert all(torch.equal(st_a[i]["exp_avg"], st_b[i]["exp_avg"]) for i in st_a)


def test_a_larger_model_serves_fewer_ways():
    cfg = M.CNNConfig(ways=20)
    p = M.init_params(cfg, np.random.default_rng(0))
    p["readout"] = np.arange(56 * 20, dtype=np.float32).reshape(56, 20)
    p5, cfg5 = M.restrict_ways(p, cfg, 5)
    assert cfg5.ways == 5 and cfg.ways == 20
    assert np.array_equal(p5["readout"], p["readout"][:, :5]) and p5["conv2"] is p["conv2"]
    with pytest.raises(ValueError):
        M.restrict_ways(p, cfg, 21)


def test_mvm_noise_training_is_seeded_and_resumable(tmp_path, background):
    """Hardware-aware option --mvm-noise: drawn from the run's Generator, so a resumed run is exact."""
    s = TrainSettings(ways=5, meta_batch=2, monitor_every=0, ckpt_every=1, channels=16, seed=1, mvm_noise=0.05)
    a = MetaTrainer(s, tmp_path / "a", background[:30])
    a.train(iterations=3, progress=False)
    b = MetaTrainer(dataclasses.replace(s), tmp_path / "b", background[:30])
    b.train(iterations=2, progress=False)
    b = MetaTrainer(dataclasses.replace(s), tmp_path / "b", background[:30], resume=True)
    b.train(iterations=3, progress=False)
    clean = MetaTrainer(dataclasses.replace(s, mvm_noise=0.0), tmp_path / "c", background[:30])
    clean.train(iterations=3, progress=False)
    for k in M.CONV_NAMES:
        assert torch.equal(a.params[k], b.params[k])
    assert not torch.equal(a.params["conv2"], clean.params["conv2"])


def test_mvm_noise_scales_with_input_and_column_full_scale():
    """The per-MVM noise is relative to the DAC input scale and the column's w_max: scaling the image by 3
    scales conv1's noise by 3, so the normalised features keep the same signal-to-noise ratio (BN's eps
    made negligible)."""
    cfg = M.CNNConfig(bn_eps=1e-9)
    p = M.to_torch(M.init_params(cfg, np.random.default_rng(0)))
    x = torch.rand(1, 40, 28, 28)
    spread = []
    for scale in (1.0, 3.0):
        h = [M.features(p, scale * x, cfg, 0.05, torch.Generator().manual_seed(s)) for s in range(2)]
        spread.append(float((h[0] - h[1]).std()))
    assert spread[0] > 0.01
    assert spread[1] == pytest.approx(spread[0], rel=0.05)
    h0 = M.features(p, x, cfg)
    dev = [float((M.features(p, x, cfg, c, torch.Generator().manual_seed(0)) - h0).std()) for c in (0.01, 0.05, 0.2)]
    assert dev[0] < dev[1] < dev[2], dev


def test_mvm_noise_works_with_both_paddings():
    for padding in ("symmetric", "tf_same"):
        cfg = M.CNNConfig(padding=padding)
        p = M.to_torch(M.init_params(cfg, np.random.default_rng(0)))
        h = M.features(p, torch.rand(2, 5, 28, 28), cfg, 0.04, torch.Generator().manual_seed(0))
        assert h.shape == (2, 5, 56) and torch.isfinite(h).all()


def test_sidecar_command_holds_no_machine_path(tmp_path, monkeypatch):
    import json  # noqa: PLC0415

    monkeypatch.setattr("sys.argv", ["/some/where/bin/pcm-l2l", "pretrain-cnn", "--note", "a b"])
    save_checkpoint(tmp_path / "c.npz", {"w": np.zeros(2, np.float32)}, kind="x", seed=0)
    meta = json.loads((tmp_path / "c.json").read_text())
    assert meta["command"] == "pcm-l2l pretrain-cnn --note 'a b'"


def test_hardware_aware_pretraining_resumes_exactly(tmp_path, background):
    imgs = background[:10]
    s = _small(weight_noise=0.04, mvm_noise=0.04)
    a = Pretrainer(s, tmp_path / "a", imgs)
    a.train(progress=False)
    b = Pretrainer(dataclasses.replace(s), tmp_path / "b", imgs)
    b.train(progress=False, max_steps=3)
    b = Pretrainer(dataclasses.replace(s), tmp_path / "b", imgs, resume=True)
    b.train(progress=False)
    clean = Pretrainer(dataclasses.replace(s, weight_noise=0.0, mvm_noise=0.0), tmp_path / "c", imgs)
    clean.train(progress=False)
    for k in a.params:
        assert torch.equal(a.params[k], b.params[k]), k
    assert not torch.equal(a.params["conv3"], clean.params["conv3"])
