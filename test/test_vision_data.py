"""Omniglot loader and task sampler (real data from shared/data/omniglot)."""

from __future__ import annotations

import numpy as np
import pytest

from pcm_l2l_ros.paths import shared_dir
from pcm_l2l_ros.vision import omniglot as og
from pcm_l2l_ros.vision.sampler import TaskSampler

DATA = shared_dir() / "data" / "omniglot"


@pytest.fixture(scope="module")
def background():
    return og.load_split("background", DATA / "images_background.npz")  # user cache (~/.cache) is fine


def test_area_resize_is_exact_box_average():
    a = og.area_matrix(105, 28)
    assert a.shape == (28, 105)
    np.testing.assert_allclose(a.sum(axis=1), 1.0, atol=1e-12)  # each output pixel averages 3.75 inputs
    np.testing.assert_allclose(a.sum(axis=0), 28 / 105, atol=1e-12)  # each input pixel used once in total
    img = np.random.default_rng(0).random((105, 105))
    np.testing.assert_allclose(og.resize_area(img).mean(), img.mean(), rtol=1e-6)  # mass preserved
    np.testing.assert_allclose(og.resize_area(img), a @ img @ a.T, atol=1e-6)  # = area-matrix form
    b = img > 0.5
    np.testing.assert_array_equal(og.resize_area(b), og.resize_area(b.astype(np.float64)))
    blocks = np.kron(np.eye(4), np.ones((15, 15)))[:60, :60]  # integer factor 60 -> 4 = plain block mean
    np.testing.assert_allclose(og.resize_area(blocks, 4), np.eye(4), atol=1e-6)


def test_npz_split_shapes_and_ink(background):
    assert background.images.shape == (964, 20, 28, 28)
    assert background.images.dtype == np.float32
    assert np.array_equal(background.char_ids, np.arange(964))
    im = background.images
    assert im.min() >= 0.0 and im.max() <= 1.0
    # ink = 1: strokes are a small fraction of the image; borders are background (0)
    assert 0.03 < im.mean() < 0.2
    assert im[:, :, 0, :].mean() < 0.01


def test_official_zip_equals_npz(background, tmp_path):
    """The official-format zip (PNG tree) and the npz bundle give identical 28x28 tensors."""
    small = og.load_split("background", DATA / "images_background_small1.zip", cache_dir=tmp_path)
    assert small.n_chars == 136
    assert np.array_equal(small.images, background.images[small.char_ids])
    # the cache returns the same arrays
    again = og.load_split("background", DATA / "images_background_small1.zip", cache_dir=tmp_path)
    assert np.array_equal(again.images, small.images) and np.array_equal(again.char_ids, small.char_ids)


def test_sampler_no_replacement_distinct_queries(background):
    s = TaskSampler(background.images, ways=20, shots=5, queries=5, rotations=True)
    rng = np.random.default_rng(3)
    for _ in range(50):
        t = s.sample(rng)
        assert len({tuple(c) for c in t.classes}) == 20  # classes without replacement
        assert sorted(np.bincount(t.support_y)) == [5] * 20 and sorted(np.bincount(t.query_y)) == [5] * 20
        allx = np.concatenate([t.support_x, t.query_x]).reshape(200, -1)
        # every support and query image is a distinct drawing (no duplicated query slots)
        assert len({a.tobytes() for a in allx}) == 200
    t = s.sample(rng)
    assert t.support_y[:5].tolist() != [0] * 5 or t.support_y[5:10].tolist() != [1] * 5  # shuffled


def test_sampler_images_match_labels(background):
    s = TaskSampler(background.images, ways=5, shots=2, queries=3, rotations=True)
    t = s.sample(np.random.default_rng(1))
    for x, y in zip(np.concatenate([t.support_x, t.query_x]), np.concatenate([t.support_y, t.query_y]),
                    strict=True):
        c, r = t.classes[y]
        cands = np.rot90(background.images[c], k=int(r), axes=(1, 2))
        assert any(np.array_equal(x, cand) for cand in cands)


def test_sampler_determinism(background):
    s = TaskSampler(background.images, ways=5, shots=1, queries=2)
    a = s.sample_batch(np.random.default_rng(7), 4)
    b = s.sample_batch(np.random.default_rng(7), 4)
    c = s.sample_batch(np.random.default_rng(8), 4)
    assert np.array_equal(a.support_x, b.support_x) and np.array_equal(a.query_y, b.query_y)
    assert not np.array_equal(a.support_x, c.support_x)


def test_sampler_rejects_impossible_tasks(background):
    with pytest.raises(ValueError):
        TaskSampler(background.images, ways=5, shots=15, queries=6)
    with pytest.raises(ValueError):
        TaskSampler(background.images[:3], ways=5, shots=1, queries=1)
