"""Omniglot (Lake et al., 2015) loader: official zips / PNG trees / the npz bundle -> 28 x 28 float, ink = 1.

Sources, in the order :func:`load_split` tries them (``source=None``):

1. ``<shared>/data/omniglot/images_<split>.npz`` (bool, True = white background, 105 x 105);
2. an official zip ``images_<split>.zip`` (PNG tree ``images_<split>/<Alphabet>/characterNN/XXXX_YY.png``),
   or the same tree extracted to a folder.

Any official-format zip or folder can be passed explicitly (e.g. ``images_background_small1.zip``,
a 5-alphabet subset). Character index ``c`` of a split is the official file number ``XXXX`` minus 1
(background) or minus 965 (evaluation); drawer index = ``YY`` - 1. Subsets keep the official numbering
in ``char_ids`` so they can be compared with the full npz.

Resizing 105 -> 28 is exact area averaging (each output pixel is the mean of the 3.75 x 3.75 input
pixels it covers; the same as OpenCV ``INTER_AREA`` / PIL ``BOX``), computed in integers (x4 replication,
15 x 15 block sums, / 225), so it is bit-identical for any source and batch size.
The output is float32 in [0, 1] with **ink = 1, background = 0** (the released Ortner et al. weights
expect the opposite; :mod:`pcm_l2l_ros.vision.model` converts per checkpoint).

Resized arrays are cached in ``~/.cache/pcm_l2l_ros/omniglot`` (or ``$PCM_L2L_CACHE`` /
``cache_dir=``), keyed by the source's sha256, so a second load takes milliseconds.

:func:`download_official` fetches the official zips from the Omniglot repository
(https://github.com/brendenlake/omniglot, folder ``python/``) and verifies their MD5 (the checksums
published by torchvision) and, if given, a sha256. It is only ever called by a user
(``python -m pcm_l2l_ros.vision.omniglot --download DIR``), never by tests.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import logging
import os
import re
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pcm_l2l_ros.checkpoint import atomic_write

log = logging.getLogger(__name__)

SPLITS = ("background", "evaluation")
N_CHARS = {"background": 964, "evaluation": 659}
FIRST_CHAR = {"background": 1, "evaluation": 965}  # official file number of character index 0
N_DRAWERS = 20
RAW_SIZE = 105
SIZE = 28

OFFICIAL_URL = "https://github.com/brendenlake/omniglot/raw/master/python/images_{split}.zip"
# MD5 of the official zips as published by torchvision.datasets.Omniglot.
OFFICIAL_MD5 = {
    "background": "68d2efa1b9178cc56df9314c21c6e718",
    "evaluation": "6b91aef0f799c5bb55b94e3f2daec811",
}
_PNG_RE = re.compile(r"(\d{4})_(\d{2})\.png$")
_CACHE_VERSION = 1


@dataclass
class OmniglotSplit:
    """Resized characters of one split.

    images: float32 (n_chars, 20, 28, 28) in [0, 1], ink = 1.
    char_ids: int64 (n_chars,), the character index within the split (official number - first).
    split: 'background' or 'evaluation'.
    """

    images: np.ndarray
    char_ids: np.ndarray
    split: str

    @property
    def n_chars(self) -> int:
        return int(self.images.shape[0])


# ---------------------------------------------------------------------------------------------- resize
def area_matrix(n_in: int = RAW_SIZE, n_out: int = SIZE) -> np.ndarray:
    """(n_out, n_in) matrix whose row i averages the input interval [i s, (i+1) s), s = n_in / n_out."""
    s = n_in / n_out
    a = np.zeros((n_out, n_in), dtype=np.float64)
    for i in range(n_out):
        lo, hi = i * s, (i + 1) * s
        for j in range(int(np.floor(lo)), min(int(np.ceil(hi)), n_in)):
            a[i, j] = (min(hi, j + 1) - max(lo, j)) / s
    return a


def resize_area(images: np.ndarray, size: int = SIZE, chunk: int = 256) -> np.ndarray:
    """Area-average (..., H, H) -> (..., size, size), float32. Input may be bool, int or float.

    Exact and separable: with L = lcm(H, size), every pixel is replicated L/H times and blocks of L/size
    are summed, along rows then columns; the sum is divided by (L/size)^2 (for 105 -> 28: x4, blocks of 15,
    / 225). Bool/int input is summed in integers, so the result does not depend on batch size or order.
    Equals ``A @ img @ A.T`` with ``A = area_matrix(H, size)``.
    """
    x = np.asarray(images)
    n_in = x.shape[-1]
    lcm = np.lcm(n_in, size)
    rep, blk = lcm // n_in, lcm // size
    lead = x.shape[:-2]
    flat = x.reshape((-1,) + x.shape[-2:])
    acc = np.int32 if (x.dtype == bool or np.issubdtype(x.dtype, np.integer)) else np.float64
    out = np.empty((flat.shape[0], size, size), np.float32)
    for i in range(0, flat.shape[0], chunk):
        c = flat[i:i + chunk].astype(acc)
        c = np.repeat(c, rep, axis=1).reshape(c.shape[0], size, blk, n_in).sum(axis=2)
        c = np.repeat(c, rep, axis=2).reshape(c.shape[0], size, size, blk).sum(axis=3)
        out[i:i + chunk] = c / float(blk * blk)
    return out.reshape(lead + (size, size))


def to_ink(raw_white_bg: np.ndarray) -> np.ndarray:
    """Official pixels (True = white background) -> ink mask (True = ink); float input -> 1 - x."""
    x = np.asarray(raw_white_bg)
    return ~x if x.dtype == bool else 1.0 - x


# ---------------------------------------------------------------------------------------------- raw readers
def read_npz_raw(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The bundle's ``images`` bool (n, 20, 105, 105) (True = background) and character ids (n,)."""
    with np.load(path, allow_pickle=False) as z:
        images = z["images"]
        labels = z["labels"]
    return images, labels[:, 0].astype(np.int64)


def _decode_png(data: bytes) -> np.ndarray:
    from PIL import Image  # noqa: PLC0415 - pillow comes with matplotlib; only needed for PNG sources

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("L"), dtype=np.uint8) > 127


def read_official_raw(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read an official zip or extracted PNG tree; returns raw bool (n, 20, 105, 105) and character ids.

    Characters are sorted by their official number; every character must have all 20 drawers.
    """
    path = Path(path)
    entries: dict[int, dict[int, bytes]] = {}
    if path.is_dir():
        files = [(str(p.relative_to(path)), p) for p in path.rglob("*.png")]
        items = ((name, p.read_bytes()) for name, p in files)
    else:
        zf = zipfile.ZipFile(path)
        items = ((n, zf.read(n)) for n in zf.namelist() if n.endswith(".png"))
    for name, data in items:
        m = _PNG_RE.search(name)
        if not m:
            continue
        num, drawer = int(m.group(1)), int(m.group(2))
        entries.setdefault(num - FIRST_CHAR[split], {})[drawer - 1] = data
    if not entries:
        raise ValueError(f"{path}: no Omniglot PNGs found")
    ids = np.array(sorted(entries), dtype=np.int64)
    if ids.min() < 0 or ids.max() >= N_CHARS[split]:
        raise ValueError(f"{path}: character numbers outside the {split} split")
    raw = np.zeros((len(ids), N_DRAWERS, RAW_SIZE, RAW_SIZE), dtype=bool)
    for i, c in enumerate(ids):
        drawers = entries[int(c)]
        if sorted(drawers) != list(range(N_DRAWERS)):
            raise ValueError(f"{path}: character {c} has drawers {sorted(drawers)}")
        for d in range(N_DRAWERS):
            raw[i, d] = _decode_png(drawers[d])
    return raw, ids


# ---------------------------------------------------------------------------------------------- cache
def default_cache_dir() -> Path:
    env = os.environ.get("PCM_L2L_CACHE")
    base = Path(env) if env else Path.home() / ".cache" / "pcm_l2l_ros"
    return base / "omniglot"


def _sha256(path: Path) -> str:
    if path.is_dir():  # a PNG tree: hash the sorted file list and sizes (cheap, good enough as a key)
        h = hashlib.sha256()
        for p in sorted(path.rglob("*.png")):
            h.update(f"{p.relative_to(path)}:{p.stat().st_size}".encode())
        return h.hexdigest()
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def default_source(split: str) -> Path:
    """The npz bundle (or an official zip next to it) in ``shared/data/omniglot``."""
    from pcm_l2l_ros.paths import shared_dir  # noqa: PLC0415

    folder = shared_dir() / "data" / "omniglot"
    for name in (f"images_{split}.npz", f"images_{split}.zip", f"images_{split}"):
        if (folder / name).exists():
            return folder / name
    raise FileNotFoundError(f"no Omniglot {split} data in {folder}; run "
                            "`python -m pcm_l2l_ros.vision.omniglot --download DIR` and pass source=DIR/...")


def load_split(split: str = "background", source: str | Path | None = None, *,
               cache_dir: str | Path | None = None, use_cache: bool = True) -> OmniglotSplit:
    """Load one split as 28 x 28 float32, ink = 1 (see module docstring for the sources)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}")
    src = Path(source) if source is not None else default_source(split)
    if not src.exists():
        raise FileNotFoundError(src)
    cache_file = None
    if use_cache:
        cdir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        cache_file = cdir / f"{split}_{SIZE}_{_sha256(src)[:16]}_v{_CACHE_VERSION}.npz"
        if cache_file.is_file():
            try:
                with np.load(cache_file, allow_pickle=False) as z:
                    return OmniglotSplit(z["images"], z["char_ids"], split)
            except (OSError, ValueError, KeyError) as e:  # corrupt cache: rebuild
                log.warning("ignoring corrupt cache %s: %s", cache_file, e)
    if src.suffix == ".npz":
        raw, ids = read_npz_raw(src)
    else:
        raw, ids = read_official_raw(src, split)
    images = resize_area(to_ink(raw))
    out = OmniglotSplit(images, ids, split)
    if cache_file is not None:
        try:
            with atomic_write(cache_file) as f:  # concurrent processes may build the same cache
                np.savez(f, images=images, char_ids=ids)
        except OSError as e:
            log.warning("could not write cache %s: %s", cache_file, e)
    return out


# ---------------------------------------------------------------------------------------------- download
def download_official(dest: str | Path, splits: tuple[str, ...] = SPLITS,
                      sha256: dict[str, str] | None = None) -> list[Path]:
    """Download the official zips into ``dest`` and verify MD5 (and sha256 if given). User-invoked only.

    A download goes to ``<name>.part`` and is verified there; only a verified file is renamed into place
    (a failed check deletes the partial file and raises ValueError), so a truncated or tampered download
    never becomes ``images_<split>.zip``. An existing zip is verified the same way."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for split in splits:
        target = dest / f"images_{split}.zip"
        if not target.exists():
            url = OFFICIAL_URL.format(split=split)
            log.info("downloading %s", url)
            tmp = target.with_suffix(".part")
            urllib.request.urlretrieve(url, tmp)  # noqa: S310 - fixed https URL
            try:
                _verify_zip(tmp, split, sha256)
            except ValueError:
                tmp.unlink(missing_ok=True)
                raise
            tmp.replace(target)
        out.append(_verify_zip(target, split, sha256))
    return out


def _verify_zip(path: Path, split: str, sha256: dict[str, str] | None) -> Path:
    """MD5 against the published checksum and sha256 against ``sha256[split]`` if given; raises ValueError."""
    data = path.read_bytes()
    md5 = hashlib.md5(data).hexdigest()  # noqa: S324 - checksum published by torchvision
    if md5 != OFFICIAL_MD5[split]:
        raise ValueError(f"{path}: md5 {md5} != official {OFFICIAL_MD5[split]}; delete it and retry")
    digest = hashlib.sha256(data).hexdigest()
    if sha256 and split in sha256 and sha256[split] != digest:
        raise ValueError(f"{path}: sha256 {digest} != expected {sha256[split]}")
    log.info("%s ok (md5 %s, sha256 %s)", path, md5, digest)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Omniglot: download the official zips / build the 28x28 cache")
    p.add_argument("--download", metavar="DIR", help="download + verify the official zips into DIR")
    p.add_argument("--cache", action="store_true", help="build the resized cache for both splits")
    p.add_argument("--source-dir", help="folder with images_<split>.(npz|zip) (default: shared/data/omniglot)")
    args = p.parse_args(argv)
    # a standalone data tool, not a pcm-l2l sub-command: same log format as the CLI
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.download:
        download_official(args.download)
    if args.cache:
        for split in SPLITS:
            src = None
            if args.source_dir:
                d = Path(args.source_dir)
                src = next((d / n for n in (f"images_{split}.npz", f"images_{split}.zip", f"images_{split}")
                            if (d / n).exists()), None)
            s = load_split(split, src)
            log.info("%s: %s", split, s.images.shape)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
