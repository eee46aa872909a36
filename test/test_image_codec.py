"""sensor_msgs/Image fields -> CNN input: every accepted encoding, row padding, polarity, and refusals."""

from __future__ import annotations

import numpy as np
import pytest

from pcm_l2l_ros.nodes.image_codec import ImageError, decode, images_to_input, to_model_input
from pcm_l2l_ros.vision.omniglot import resize_area


def _ink_square(n=56):
    """Dark ink square on white paper, intensities in [0, 1]."""
    a = np.ones((n, n))
    a[n // 4: 3 * n // 4, n // 4: 3 * n // 4] = 0.0
    return a


def test_all_encodings_give_the_same_input():
    a = _ink_square()
    expected = resize_area(1.0 - a)             # ink = 1, the loader's own resampling
    h, w = a.shape
    mono8 = np.round(a * 255).astype(np.uint8)
    cases = {
        "mono8": (mono8.tobytes(), w, 0),
        "mono16": ((a * 65535).round().astype(">u2").tobytes(), 2 * w, 1),
        "32FC1": (a.astype("<f4").tobytes(), 4 * w, 0),
        "rgb8": (np.repeat(mono8[..., None], 3, axis=2).tobytes(), 3 * w, 0),
        "bgr8": (np.repeat(mono8[..., None], 3, axis=2).tobytes(), 3 * w, 0),
    }
    for enc, (data, step, big) in cases.items():
        x = to_model_input(decode(h, w, enc, big, step, data))
        assert x.shape == (28, 28) and x.dtype == np.float32
        np.testing.assert_allclose(x, expected, atol=2e-3, err_msg=enc)


def test_row_padding_is_skipped_and_colour_is_luminance():
    h, w = 10, 9
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = 255                                          # pure red
    padded = np.zeros((h, w * 3 + 5), np.uint8)
    padded[:, : w * 3] = img.reshape(h, -1)
    px = decode(h, w, "rgb8", 0, w * 3 + 5, padded.tobytes())
    np.testing.assert_allclose(px, 0.299)
    np.testing.assert_allclose(decode(h, w, "bgr8", 0, w * 3 + 5, padded.tobytes()), 0.114)


def test_light_ink_on_dark_background_is_not_inverted():
    a = 1.0 - _ink_square()                                    # mean < 0.5: already ink = 1
    np.testing.assert_allclose(to_model_input(a), resize_area(a), atol=1e-6)


@pytest.mark.parametrize("args,why", [
    ((28, 28, "yuv422", 0, 56, bytes(28 * 56)), "encoding"),
    ((4, 28, "mono8", 0, 28, bytes(4 * 28)), "size"),
    ((28, 2000, "mono8", 0, 2000, bytes(28 * 2000)), "size"),
    ((28, 28, "mono8", 0, 27, bytes(28 * 27)), "step"),
    ((28, 28, "mono8", 0, 28, bytes(28 * 28 - 1)), "bytes"),
    ((28, 28, "32FC1", 0, 112, np.full(784, np.nan, "<f4").tobytes()), "NaN"),
    ((28, 28, "32FC1", 0, 112, np.full(784, 2.0, "<f4").tobytes()), "[0, 1]"),
])
def test_bad_images_are_refused_with_a_reason(args, why):
    with pytest.raises(ImageError, match=why if why != "[0, 1]" else r"\[0, 1\]"):
        decode(*args)


def test_batched_conversion_equals_one_by_one():
    from types import SimpleNamespace

    rng = np.random.default_rng(0)
    msgs, singles = [], []
    for h, w in [(105, 105), (40, 33), (105, 105), (40, 33), (28, 28)]:
        a = (rng.random((h, w)) * 255).astype(np.uint8)
        if rng.random() < 0.5:
            a = 255 - a
        msgs.append(SimpleNamespace(height=h, width=w, encoding="mono8", is_bigendian=0, step=w, data=a.tobytes()))
        singles.append(to_model_input(a / 255.0))
    np.testing.assert_allclose(images_to_input(msgs), np.stack(singles), atol=1e-6)


def test_messages_decoded_in_place_equal_decode_then_convert():
    """images_to_input decodes into a per-thread work array reused across calls; the result is exactly that of
    decode() + to_model_inputs() for every encoding, byte order and row padding, also after a larger call."""
    from types import SimpleNamespace

    from pcm_l2l_ros.nodes.image_codec import _CHANNELS, to_model_inputs

    rng = np.random.default_rng(1)

    def batch(n, sizes):
        msgs = []
        for i in range(n):
            h, w = sizes[i % len(sizes)]
            enc = ("mono8", "mono16", "32FC1", "rgb8", "bgr8")[i % 5]
            big = i % 3 == 0
            ch, dt = _CHANNELS[enc]
            dt = dt.newbyteorder(">" if big else "<")
            a = rng.random((h, w, ch)) if dt.kind == "f" else rng.integers(0, np.iinfo(dt).max + 1, (h, w, ch))
            raw = a.astype(dt).reshape(h, -1).view(np.uint8)
            pad = 4 * (i % 2)
            data = np.concatenate([raw, np.full((h, pad), 7, np.uint8)], axis=1).tobytes()
            msgs.append(SimpleNamespace(height=h, width=w, encoding=enc, is_bigendian=int(big),
                                        step=raw.shape[1] + pad, data=data))
        return msgs

    for msgs in (batch(23, [(105, 105), (37, 50)]), batch(6, [(30, 20)]), batch(11, [(105, 105)])):
        want = to_model_inputs([decode(m.height, m.width, m.encoding, m.is_bigendian, m.step, m.data) for m in msgs])
        np.testing.assert_array_equal(images_to_input(msgs), want)
