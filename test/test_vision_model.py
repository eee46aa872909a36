"""CNN shapes, per-task BatchNorm, the delta rule, MAML resumability and parity on the released weights."""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest
import torch

from pcm_l2l_ros.vision import model as M
from pcm_l2l_ros.vision.maml import (
    MetaTrainer,
    TrainSettings,
    evaluate_software,
    outer_lr_at,
    parse_lr_steps,
    task_losses,
)
from pcm_l2l_ros.vision.omniglot import load_split
from pcm_l2l_ros.vision.sampler import TaskSampler


@pytest.fixture(scope="module")
def evaluation():
    return load_split("evaluation")


def _rand_params(ways=5, seed=0):
    cfg = M.CNNConfig(ways=ways)
    p = M.init_params(cfg, np.random.default_rng(seed))
    p["readout"] = np.random.default_rng(seed + 1).normal(0, 0.1, p["readout"].shape).astype(np.float32)
    return M.to_torch(p), cfg


def test_shapes_and_param_count():
    p, cfg = _rand_params()
    assert p["conv1"].shape == (56, 1, 3, 3) and p["conv4"].shape == (56, 56, 3, 3)
    assert sum(v.numel() for v in p.values()) == 9 * 56 + 3 * 504 * 56 + 56 * 5  # 85,456 (docs/architecture.md §3.3)
    x = torch.rand(3, 7, 28, 28)
    h = M.features(p, x, cfg)
    assert h.shape == (3, 7, 56)


def test_batchnorm_uses_per_task_statistics():
    p, cfg = _rand_params()
    x = torch.rand(4, 6, 28, 28)
    h = M.features(p, x, cfg)
    # a task's features depend only on its own images
    x2 = x.clone()
    x2[1:] = torch.rand(3, 6, 28, 28) * 3
    assert torch.allclose(M.features(p, x2, cfg)[0], h[0], atol=1e-5)
    assert not torch.allclose(M.features(p, x2, cfg)[1], h[1], atol=1e-3)
    # BN output of each group has mean 0 / var 1 per channel
    y = M.conv_block(p, x.reshape(24, 1, 28, 28), "conv1", cfg)
    yn = M.batch_norm_groups(y, 4, cfg.bn_eps).reshape(4, 6, 56, 14, 14)
    raw_var = y.reshape(4, 6, 56, 14, 14).var(dim=(1, 3, 4), unbiased=False)
    m = yn.mean(dim=(1, 3, 4))
    v = yn.var(dim=(1, 3, 4), unbiased=False)
    assert m.abs().max() < 1e-4
    assert torch.allclose(v, raw_var / (raw_var + cfg.bn_eps), atol=1e-4)  # var -> 1 (up to eps)


def test_support_stats_variant_matches_transductive_on_same_images():
    p, cfg = _rand_params()
    xs = torch.rand(2, 5, 28, 28)
    hs, hq = M.features_support_stats(p, xs, xs, cfg)
    assert torch.allclose(hs, hq, atol=1e-5)
    assert torch.allclose(hs, M.features(p, xs, cfg), atol=1e-5)


def test_delta_rule_equals_autograd_gradient():
    torch.manual_seed(0)
    h, y = torch.randn(3, 10, 56), torch.randint(0, 5, (3, 10))
    w = torch.randn(3, 56, 5, requires_grad=True)
    loss = sum(torch.nn.functional.cross_entropy(h[i] @ w[i], y[i]) for i in range(3))
    (g,) = torch.autograd.grad(loss, w)
    assert torch.allclose(M.delta_rule_grad(h, y, w), g, atol=1e-6)


def test_second_order_differs_from_first_order(evaluation):
    p, cfg = _rand_params()
    for v in p.values():
        v.requires_grad_(True)
    b = TaskSampler(evaluation.images, 5, 1, 2).sample_batch(np.random.default_rng(0), 2)
    grads = []
    for fo in (False, True):
        loss, accs = task_losses(p, b, cfg, first_order=fo)
        grads.append(torch.autograd.grad(loss, [p["conv4"]])[0])
        assert accs.shape == (cfg.inner_steps + 1,)
    assert not torch.allclose(grads[0], grads[1])


def test_outer_temperature_scales_only_the_outer_loss(evaluation):
    """The temperature multiplies the query logits of the outer loss only: the same adapted readout (same per-step
    accuracies) and the loss equals the cross-entropy of the scaled logits, recomputed here from the inner loop."""
    p, cfg = _rand_params()
    b = TaskSampler(evaluation.images, 5, 1, 2).sample_batch(np.random.default_rng(1), 2)
    loss1, accs1 = task_losses(p, b, cfg)
    loss3, accs3 = task_losses(p, b, cfg, temperature=3.0)
    np.testing.assert_array_equal(accs1, accs3)
    hs = M.features(p, M.prepare_input(b.support_x, cfg), cfg)
    hq = M.features(p, M.prepare_input(b.query_x, cfg), cfg)
    w = M.adapt_readout(hs, torch.as_tensor(b.support_y), p["readout"].expand(hs.shape[0], -1, -1),
                        cfg.inner_steps, cfg.inner_lr)[-1]
    logits = (hq @ w).reshape(-1, cfg.ways)
    want = torch.nn.functional.cross_entropy(3.0 * logits, torch.as_tensor(b.query_y).reshape(-1))
    assert torch.allclose(loss3, want, rtol=1e-5) and not torch.allclose(loss1, loss3)


def test_released_weights_parity(evaluation):
    """Our code + the released 5-way weights: 5w5s, 4 readout steps -> high-90s query accuracy.

    100 tasks x 25 queries; the per-task accuracy spread is ~0.04, so the mean's sampling error is ~0.005.
    Measured: 0.97-0.98 (symmetric padding, background = 1 input)."""
    params, cfg = M.load_released()
    assert cfg.input_convention == "background1"
    acc = evaluate_software(params, cfg, TaskSampler(evaluation.images, 5, 5, 5), 100, np.random.default_rng(0))
    assert acc.shape == (100, 5)
    assert acc[:, -1].mean() >= 0.95
    assert acc[:, -1].mean() > acc[:, 1].mean() + 0.3  # the adaptation does the work
    # wrong input convention (ink = 1 fed to a background = 1 network) breaks it: the test is sensitive
    bad = M.CNNConfig(**{**cfg.to_dict(), "input_convention": "ink1"})
    acc_bad = evaluate_software(params, bad, TaskSampler(evaluation.images, 5, 5, 5), 20, np.random.default_rng(0))
    assert acc_bad[:, -1].mean() < acc[:, -1].mean() - 0.05


def test_training_resume_is_exact(evaluation, tmp_path):
    s = TrainSettings(ways=5, shots=(1, 2), queries=1, meta_batch=2, iterations=4, seed=3, ckpt_every=2,
                      monitor_every=0, outer_lr_steps=((3, 2e-4),))  # the rate drops after the resume
    imgs = evaluation.images[:60]
    a = MetaTrainer(s, tmp_path / "a", imgs)
    a.train(4, progress=False)
    b = MetaTrainer(s, tmp_path / "b", imgs)
    b.train(2, progress=False)
    c = MetaTrainer(s, tmp_path / "b", imgs, resume=True)
    assert c.iteration == 2
    c.train(4, progress=False)
    for k, v in a.numpy_params().items():
        np.testing.assert_array_equal(v, c.numpy_params()[k])
    assert len((tmp_path / "b" / "metrics.csv").read_text().strip().splitlines()) == 1 + 4
    with (tmp_path / "b" / "metrics.csv").open() as f:
        assert [float(r["outer_lr"]) for r in csv.DictReader(f)] == [1e-3, 1e-3, 1e-3, 2e-4]
    with pytest.raises(FileExistsError):
        MetaTrainer(s, tmp_path / "a", imgs)
    # the schedule is what sets the rate: the same run without the drop ends elsewhere
    d = MetaTrainer(dataclasses.replace(s, outer_lr_steps=()), tmp_path / "d", imgs)
    d.train(4, progress=False)
    assert not np.array_equal(d.numpy_params()["conv1"], a.numpy_params()["conv1"])


def test_outer_lr_steps():
    assert parse_lr_steps("15000:3e-4,17000:1e-4") == ((15000, 3e-4), (17000, 1e-4))
    assert parse_lr_steps(None) == ()
    s = TrainSettings(outer_lr=1e-3, outer_lr_steps=parse_lr_steps("10:3e-4,20:1e-4"))
    assert [outer_lr_at(s, i) for i in (0, 9, 10, 19, 20, 10**6)] == [1e-3, 1e-3, 3e-4, 3e-4, 1e-4, 1e-4]
    for bad in ("20:1e-4,10:3e-4", "10:3e-4,10:1e-4", "10", "a:1e-3", "10:0", "-1:1e-3"):
        with pytest.raises(ValueError):
            parse_lr_steps(bad)


def _two_steps_equal_one_plus_resumed_one(s, tmp_path, imgs):
    """Train 2 steps, and 1 step + resume + 1 step: the parameters must be identical. Returns the 2-step run."""
    t = MetaTrainer(s, tmp_path / "t", imgs)
    t.train(2, progress=False)
    u = MetaTrainer(s, tmp_path / "m", imgs)
    u.train(1, progress=False)
    u = MetaTrainer(s, tmp_path / "m", imgs, resume=True)
    u.train(2, progress=False)
    for k, v in t.numpy_params().items():
        np.testing.assert_array_equal(v, u.numpy_params()[k])
    return t


def test_weight_noise_reads_one_noisy_chip_per_step(evaluation, tmp_path):
    s = TrainSettings(ways=5, shots=(1,), queries=1, meta_batch=2, iterations=2, seed=4, ckpt_every=1,
                      monitor_every=0, weight_noise=0.05)
    imgs = evaluation.images[:60]
    t = MetaTrainer(s, tmp_path / "n", imgs)
    p = t._noisy_params()
    for k in M.CONV_NAMES:
        w = t.params[k].detach()
        rel = (p[k].detach() - w) / w.abs().amax(dim=(1, 2, 3), keepdim=True)
        assert abs(float(rel.std()) - 0.05) < 0.005  # relative to each output channel's max|W|
    assert torch.equal(p["readout"], t.params["readout"])  # only the conv kernels are on the noisy chip
    # the noise is a constant of the step: d(loss)/dW is taken at the noisy point and lands on W itself
    p["conv2"].sum().backward()
    assert torch.equal(t.params["conv2"].grad, torch.ones_like(t.params["conv2"]))
    # noisy training stays exactly resumable (the draws come from the run's saved generator)
    t = _two_steps_equal_one_plus_resumed_one(s, tmp_path, imgs)
    clean = MetaTrainer(dataclasses.replace(s, weight_noise=0.0), tmp_path / "c", imgs)
    clean.train(2, progress=False)
    assert not np.array_equal(clean.numpy_params()["conv1"], t.numpy_params()["conv1"])


def test_weight_noise_per_layer_scales_each_conv_layer(evaluation, tmp_path):
    """--weight-noise 0.1,0.02,0,0.05: each conv layer read with its own relative std, from the same draws."""
    assert M.parse_weight_noise("0.06") == 0.06
    assert M.parse_weight_noise("0.1,0.02,0,0.05") == (0.1, 0.02, 0.0, 0.05)
    for bad in ("0.1,0.2", "0.1,0.1,0.1,0.1,0.1", "-0.1", "nan", "a", "0.1,,0.1,0.1"):
        with pytest.raises(ValueError):
            M.parse_weight_noise(bad)
    imgs = evaluation.images[:60]
    s = TrainSettings(ways=5, shots=(1,), queries=1, meta_batch=2, iterations=2, seed=4, ckpt_every=1,
                      monitor_every=0, weight_noise=(0.1, 0.02, 0.0, 0.05))
    t = MetaTrainer(s, tmp_path / "l", imgs)
    u = MetaTrainer(dataclasses.replace(s, weight_noise=0.05), tmp_path / "s", imgs)  # same seed, same draws
    p, q = t._noisy_params(), u._noisy_params()
    for k, want in zip(M.CONV_NAMES, (0.1, 0.02, 0.0, 0.05), strict=True):
        w = t.params[k].detach()
        col = w.abs().amax(dim=(1, 2, 3), keepdim=True)
        rel = (p[k].detach() - w) / col
        assert abs(float(rel.std()) - want) < 0.1 * want + 1e-9
        xi_scalar = (q[k].detach() - w) / col / 0.05  # the scalar run's draw for this layer
        torch.testing.assert_close(rel, want * xi_scalar, rtol=1e-4, atol=1e-6)
    assert not M.any_weight_noise((0.0, 0.0, 0.0, 0.0)) and M.any_weight_noise((0.0, 0.0, 0.0, 0.01))


def test_chip_in_the_loop_reads_the_kernels_through_a_programmed_chip(evaluation, tmp_path):
    from pcm_l2l_ros.pcm import PCMArray
    from pcm_l2l_ros.vision.deploy import chip_configs, conv_chip_error, conv_matrix

    imgs = evaluation.images[:60]
    s = TrainSettings(ways=5, shots=(1,), queries=1, meta_batch=2, iterations=2, seed=4, ckpt_every=1,
                      monitor_every=0, chip_in_the_loop=True)
    t = MetaTrainer(s, tmp_path / "c", imgs)
    p = t._noisy_params()
    for k in M.CONV_NAMES:
        w = t.params[k].detach()
        rel = (p[k].detach() - w) / w.abs().amax(dim=(1, 2, 3), keepdim=True)
        assert 0.015 < float(rel.std()) < 0.12  # the chip's error at 1 h, a few % of each column's full scale
    assert torch.equal(p["readout"], t.params["readout"])
    p["conv3"].sum().backward()  # the chip's error is a constant of the step
    assert torch.equal(t.params["conv3"].grad, torch.ones_like(t.params["conv3"]))
    # an ideal chip adds nothing
    ideal = MetaTrainer(dataclasses.replace(s, chip_preset="ideal"), tmp_path / "i", imgs)._noisy_params()
    for k in M.CONV_NAMES:
        torch.testing.assert_close(ideal[k].detach(), t.params[k].detach(), rtol=0, atol=1e-6)
    # the error is the programmed array's, in the kernel's OIHW layout
    params = {k: v.detach().numpy() for k, v in t.params.items()}
    err = conv_chip_error(params, chip_configs(), np.random.default_rng(5), 3600.0)
    rng = np.random.default_rng(5)
    for k in M.CONV_NAMES:
        mat = conv_matrix(params[k])
        arr = PCMArray(mat, chip_configs(), rng)
        arr.drift(3600.0)
        np.testing.assert_allclose(conv_matrix(err[k]), arr.weights() - mat, rtol=0, atol=1e-6)
    # resumable: the chips come from the run's saved generator
    _two_steps_equal_one_plus_resumed_one(s, tmp_path, imgs)


@pytest.mark.parametrize("padding", ["symmetric", "tf_same"])
def test_grouped_features_equal_one_network_per_group(padding):
    """features() runs all groups as one grouped conv + native BN; it must equal a loop of per-group networks."""
    cfg = M.CNNConfig(padding=padding)
    p = M.to_torch(M.init_params(cfg, np.random.default_rng(3)), requires_grad=True)
    x = torch.rand(3, 6, 28, 28)
    h = M.features(p, x, cfg)
    ref = []
    for t in range(3):
        y = x[t].reshape(6, 1, 28, 28)
        for name in M.CONV_NAMES:
            y = M.batch_norm_groups(M.conv_block(p, y, name, cfg), 1, cfg.bn_eps)
        ref.append(y.amax(dim=(2, 3)))
    ref = torch.stack(ref)
    torch.testing.assert_close(h, ref, rtol=1e-4, atol=1e-5)
    g1 = torch.autograd.grad((h ** 2).sum(), list(p.values())[:4])
    g2 = torch.autograd.grad((ref ** 2).sum(), list(p.values())[:4])
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)
