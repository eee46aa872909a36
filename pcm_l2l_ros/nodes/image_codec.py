"""sensor_msgs/Image -> the CNN's input (28 x 28 float32, ink = 1), with validation.

Pure numpy on the message's fields (``height``, ``width``, ``encoding``, ``is_bigendian``, ``step``,
``data``), so it is tested without rclpy. Accepted encodings: ``mono8``, ``mono16``, ``32FC1`` (values in
[0, 1]), ``rgb8``/``bgr8`` (converted to luminance). Any size from 8 x 8 to 1024 x 1024 is area-resampled to
28 x 28 (the same resampling as the Omniglot loader). Polarity: written characters are dark ink on light
paper (as the Omniglot scans); the image is inverted so that ink = 1. An image whose mean intensity is below
0.5 is taken to be light ink on a dark background already and is not inverted.
"""

from __future__ import annotations

import functools
import threading

import numpy as np

from pcm_l2l_ros.arrays import work_array
from pcm_l2l_ros.vision.omniglot import area_matrix

SIZE = 28
MIN_SIDE, MAX_SIDE = 8, 1024
_CHANNELS = {"mono8": (1, np.dtype("u1")), "mono16": (1, np.dtype("u2")), "32FC1": (1, np.dtype("f4")),
             "rgb8": (3, np.dtype("u1")), "bgr8": (3, np.dtype("u1"))}
ENCODINGS = tuple(_CHANNELS)


class ImageError(ValueError):
    """The image cannot be used (the message says why)."""


def check_header(height: int, width: int, encoding: str, step: int, n_bytes: int) -> int:
    """Check an image's header against its data length without touching the pixels; returns the pixel count
    (height x width). Raises ImageError on any inconsistency."""
    if encoding not in _CHANNELS:
        raise ImageError(f"encoding '{encoding[:32]}' not supported (use one of {', '.join(ENCODINGS)})")
    if not (MIN_SIDE <= height <= MAX_SIDE and MIN_SIDE <= width <= MAX_SIDE):
        raise ImageError(f"size {width}x{height} outside {MIN_SIDE}..{MAX_SIDE} pixels per side")
    channels, dtype = _CHANNELS[encoding]
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageError(f"step {step} < {row_bytes} bytes needed for a row of {width} {encoding} pixels")
    if n_bytes != step * height:
        raise ImageError(f"data has {n_bytes} bytes, expected step*height = {step * height}")
    return height * width


def decode(height: int, width: int, encoding: str, is_bigendian: int, step: int, data: bytes) -> np.ndarray:
    """Pixel intensities (height, width) float32 in [0, 1]; raises ImageError on any inconsistency."""
    check_header(height, width, encoding, step, len(data))   # before the allocation
    out = np.empty((height, width), np.float32)
    decode_into(height, width, encoding, is_bigendian, step, data, out)
    return out


def decode_into(height: int, width: int, encoding: str, is_bigendian: int, step: int, data: bytes,
                out: np.ndarray) -> None:
    """:func:`decode` written into ``out`` ((height, width) float32), without a temporary for one-channel
    images; raises ImageError on any inconsistency (``out`` is then partly written)."""
    check_header(height, width, encoding, step, len(data))
    channels, dtype = _CHANNELS[encoding]
    row_bytes = width * channels * dtype.itemsize
    buf = np.frombuffer(data, dtype=np.uint8).reshape(height, step)[:, :row_bytes]  # no copy of the message
    if dtype.itemsize > 1:   # a view as wider words needs contiguous rows
        buf = np.ascontiguousarray(buf).view(dtype.newbyteorder(">" if is_bigendian else "<"))
    if channels == 3:
        px = buf.reshape(height, width, 3).astype(np.float32)
        px *= np.float32(1.0 / 255.0)
        r, g, b = (px[..., 0], px[..., 1], px[..., 2]) if encoding == "rgb8" else (px[..., 2], px[..., 1], px[..., 0])
        out[...] = 0.299 * r + 0.587 * g + 0.114 * b
    elif encoding == "mono8":
        np.multiply(buf, np.float32(1.0 / 255.0), out=out)
    elif encoding == "mono16":
        np.multiply(buf, np.float32(1.0 / 65535.0), out=out)
    else:  # 32FC1
        out[...] = buf
        if not np.all(np.isfinite(out)):
            raise ImageError("32FC1 image contains NaN or inf")
        if out.min() < 0.0 or out.max() > 1.0:
            raise ImageError("32FC1 values must lie in [0, 1]")


@functools.lru_cache(maxsize=32)
def _area_matrix32(n_in: int) -> np.ndarray:
    a = area_matrix(n_in, SIZE).astype(np.float32)
    a.flags.writeable = False
    return a


def to_model_inputs(intensities) -> np.ndarray:
    """Images (H, W) of intensities in [0, 1] -> (n, 28, 28) float32 with ink = 1 (polarity as documented;
    area resampling, images of one size resampled together)."""
    out = np.empty((len(intensities), SIZE, SIZE), np.float32)
    for idx in _by_shape([np.shape(p) for p in intensities]).values():
        out[idx] = _resample(np.stack([np.asarray(intensities[i], dtype=np.float32) for i in idx]))
    return out


def to_model_input(intensity: np.ndarray) -> np.ndarray:
    """One (H, W) image of intensities in [0, 1] -> (28, 28) float32 with ink = 1."""
    return to_model_inputs([intensity])[0]


def images_to_input(msgs) -> np.ndarray:
    """Several sensor_msgs/Image (or objects with their fields) -> (n, 28, 28) float32, ink = 1: each image is
    decoded straight into this thread's work array of its size group (:func:`_work`), no copy per image."""
    msgs = list(msgs)
    for m in msgs:   # every header before any pixel
        check_header(int(m.height), int(m.width), str(m.encoding), int(m.step), len(m.data))
    out = np.empty((len(msgs), SIZE, SIZE), np.float32)
    for (h, w), idx in _by_shape([(int(m.height), int(m.width)) for m in msgs]).items():
        x = _work((len(idx), h, w))
        for j, i in enumerate(idx):
            m = msgs[i]
            decode_into(h, w, str(m.encoding), int(m.is_bigendian), int(m.step), m.data, x[j])
        out[idx] = _resample(x)
    return out


def _by_shape(shapes) -> dict[tuple[int, int], list[int]]:
    """Indices of the images of each size, in order of first appearance."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, shape in enumerate(shapes):
        groups.setdefault(tuple(shape), []).append(i)
    return groups


def _resample(x: np.ndarray) -> np.ndarray:
    """(k, h, w) float32 intensities -> (k, 28, 28) ink = 1: area resampling of the columns, then of the rows
    (one GEMM each), and the polarity."""
    k, h, w = x.shape
    r = (x.reshape(k * h, w) @ _area_matrix32(w).T).reshape(k, h, SIZE)        # resample columns
    r = (_area_matrix32(h) @ r.transpose(1, 0, 2).reshape(h, k * SIZE))        # and rows, one GEMM:
    r = r.reshape(SIZE, k, SIZE).transpose(1, 0, 2)                            # (k, 28, 28)
    flip = x.mean(axis=(1, 2)) >= 0.5   # dark ink on light paper: invert (area rows sum to 1, so
    r[flip] = 1.0 - r[flip]             # inverting after resampling = resampling the inverted image)
    return np.clip(r, 0.0, 1.0)


_work_arrays = threading.local()   # this thread's decoded-pixels buffer, kept between requests


def _work(shape: tuple[int, int, int]) -> np.ndarray:
    """A float32 array of ``shape`` (contents undefined) cut from this thread's kept buffer
    (:func:`pcm_l2l_ros.arrays.work_array`)."""
    return work_array(_work_arrays.__dict__, "decoded", shape)


#: file name endings :func:`image_file_fields` reads (whatever Pillow opens; PNG is the usual)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".pbm", ".tif", ".tiff", ".gif", ".webp")


def image_file_fields(path) -> dict:
    """An image file as the fields of a sensor_msgs/Image (``height``, ``width``, ``encoding``, ``is_bigendian``,
    ``step``, ``data``) that the vision node decodes with :func:`decode`, exactly as a camera's message: grey
    images (1-bit as Omniglot's PNGs, 8-bit, grey palettes) as ``mono8``, 16-bit ones as ``mono16``, float ones as
    ``32FC1``, colour as ``rgb8``; transparency is composited onto white paper. The header is checked as the node
    checks it (:func:`check_header`); raises ImageError with the file's name if it cannot be used."""
    from PIL import Image as PILImage  # noqa: PLC0415 - Pillow only where files are read

    try:
        with PILImage.open(path) as im:
            im.load()
            if "A" in im.mode or (im.mode == "P" and "transparency" in im.info):
                grey = im.mode in ("LA", "La") or (im.mode == "P" and _grey_palette(im))
                paper = PILImage.new("RGBA", im.size, (255, 255, 255, 255))
                im = PILImage.alpha_composite(paper, im.convert("RGBA")).convert("L" if grey else "RGB")
            if im.mode.startswith("I;16"):
                a = np.asarray(im).astype("<u2")
                encoding = "mono16"
            elif im.mode == "I":
                a32 = np.asarray(im)
                if a32.size and (a32.min() < 0 or a32.max() > 65535):
                    raise ImageError("32-bit integer pixels outside 0..65535")
                a, encoding = a32.astype("<u2"), "mono16"
            elif im.mode == "F":
                a, encoding = np.asarray(im).astype("<f4"), "32FC1"
            elif im.mode in ("1", "L") or (im.mode == "P" and _grey_palette(im)):
                a, encoding = np.asarray(im.convert("L"), dtype=np.uint8), "mono8"
            else:
                a, encoding = np.asarray(im.convert("RGB"), dtype=np.uint8), "rgb8"
    except ImageError as e:
        raise ImageError(f"{path}: {e}") from e
    except (OSError, ValueError) as e:   # not an image, truncated, unknown format
        raise ImageError(f"{path}: cannot read the image: {e}") from e
    a = np.ascontiguousarray(a)
    height, width = a.shape[:2]
    step = a.strides[0]
    data = a.tobytes()
    try:
        check_header(height, width, encoding, step, len(data))
    except ImageError as e:
        raise ImageError(f"{path}: {e}") from e
    return {"height": height, "width": width, "encoding": encoding, "is_bigendian": 0, "step": step, "data": data}


def _grey_palette(im) -> bool:
    pal = im.getpalette() or []
    rgb = np.asarray(pal[: 3 * (len(pal) // 3)]).reshape(-1, 3)
    return bool(len(rgb)) and bool(np.all(rgb[:, 0] == rgb[:, 1]) and np.all(rgb[:, 1] == rgb[:, 2]))
