"""Image files -> sensor_msgs/Image fields (``image_codec.image_file_fields``, what ``pcm-l2l classify`` sends): the
node's decoding of them gives the file's intensities, whatever the PNG's mode (no ROS needed)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pcm_l2l_ros.nodes.image_codec import ImageError, decode, image_file_fields, to_model_input


def _decoded(path):
    f = image_file_fields(path)
    return f, decode(f["height"], f["width"], f["encoding"], f["is_bigendian"], f["step"], f["data"])


@pytest.fixture
def grey():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(21, 34)).astype(np.uint8)


def test_grey_modes(tmp_path, grey):
    Image.fromarray(grey, mode="L").save(tmp_path / "l.png")
    f, px = _decoded(tmp_path / "l.png")
    assert f["encoding"] == "mono8" and (f["height"], f["width"]) == grey.shape
    np.testing.assert_allclose(px, grey / 255.0, atol=1e-6)

    ink = grey > 127  # 1-bit, as the official Omniglot PNGs
    Image.fromarray(ink).convert("1").save(tmp_path / "b.png")
    f, px = _decoded(tmp_path / "b.png")
    assert f["encoding"] == "mono8"
    np.testing.assert_array_equal(px, ink.astype(np.float32))

    g16 = grey.astype(np.uint16) * 257
    Image.fromarray(g16).save(tmp_path / "g16.png")
    f, px = _decoded(tmp_path / "g16.png")
    assert f["encoding"] == "mono16"
    np.testing.assert_allclose(px, g16 / 65535.0, atol=1e-6)


def test_colour_and_transparency(tmp_path, grey):
    rgb = np.stack([grey, grey, grey], axis=-1)
    Image.fromarray(rgb, mode="RGB").save(tmp_path / "rgb.png")
    f, px = _decoded(tmp_path / "rgb.png")
    assert f["encoding"] == "rgb8"
    np.testing.assert_allclose(px, grey / 255.0, atol=1e-5)

    # black ink on a transparent background: composited onto white paper
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[4:12, 7:9, 3] = 255
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    f, px = _decoded(tmp_path / "rgba.png")
    assert px[0, 0] == pytest.approx(1.0) and px[6, 7] == pytest.approx(0.0)
    x = to_model_input(px)  # dark ink on light paper: inverted, ink = 1
    assert x.max() > 0.5 and x[0, 0] == pytest.approx(0.0)


def test_unusable_files_name_the_file(tmp_path):
    Image.fromarray(np.zeros((4, 40), np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(ImageError, match=r"small\.png.*outside 8\.\.1024"):
        image_file_fields(tmp_path / "small.png")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(ImageError, match=r"junk\.png.*cannot read"):
        image_file_fields(tmp_path / "junk.png")
