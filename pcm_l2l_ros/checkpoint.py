"""Checkpoints: an ``.npz`` of arrays plus a sidecar ``.json`` that says how it was made.

The sidecar holds ``format_version``, ``kind``, ``shapes``, ``command``, ``git_hash``, ``seed``,
``metrics``, free ``config`` and the ``sha256`` of the npz. ``load_checkpoint`` checks all of it and fails
with a clear ``CheckpointError``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, or does not match what the caller expects."""


def git_hash(repo: Path | None = None) -> str:
    """Current commit of the repository holding this package, with ``+dirty`` if modified."""
    repo = repo or Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, check=True).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb", **open_kw: Any) -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path`` for writing; on a clean exit flush it to disk and rename it to
    ``path``.

    If the body raises (or the process dies), ``path`` keeps its previous content (the temporary file is
    removed on an exception), so a reader never sees a half-written file. The temporary name carries the
    process id: processes writing the same file (e.g. a shared cache) do not clash. ``open_kw`` go to ``open``
    (e.g. ``newline=""`` for a CSV).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, mode, **open_kw) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_checkpoint(path: str | Path, arrays: dict[str, np.ndarray], *, kind: str, seed: int | None,
                    metrics: dict[str, Any] | None = None, config: dict[str, Any] | None = None,
                    command: str | None = None, code_git_hash: str | None = None) -> Path:
    """Write ``path`` (.npz) and its sidecar ``path.with_suffix('.json')``; returns the npz path.

    ``code_git_hash``: the commit of the code that produced the arrays (e.g. taken when a training process
    started); default: the repository's state now.

    Both files are written with :func:`atomic_write`, so an interrupted save never leaves a half-written
    checkpoint behind.
    """
    path = Path(path).with_suffix(".npz")
    code = code_git_hash or git_hash()  # before writing: a checkpoint inside the repository would mark it dirty
    with atomic_write(path) as f:
        np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})
    meta = {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "shapes": {k: list(np.shape(v)) for k, v in arrays.items()},
        "dtypes": {k: str(np.asarray(v).dtype) for k, v in arrays.items()},
        "command": command if command is not None else _command_line(),
        "git_hash": code,
        "seed": seed,
        "metrics": metrics or {},
        "config": config or {},
        "sha256": sha256_file(path),
    }
    with atomic_write(path.with_suffix(".json"), "w") as f:
        f.write(json.dumps(meta, indent=2, sort_keys=True, default=_json_default) + "\n")
    return path


def load_checkpoint(path: str | Path, *, kind: str | None = None,
                    expect_shapes: dict[str, tuple[int, ...]] | None = None
                    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Load and verify a checkpoint; returns ``(arrays, sidecar)``.

    Checks: both files exist, format version, kind, sha256, the stored shapes, and ``expect_shapes``.
    """
    path = Path(path).with_suffix(".npz")
    side = path.with_suffix(".json")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not side.is_file():
        raise CheckpointError(f"checkpoint sidecar not found: {side} (every checkpoint needs one)")
    try:
        meta = json.loads(side.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"sidecar {side} is not valid JSON: {e}") from e
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{side}: format_version {meta.get('format_version')!r}, expected {FORMAT_VERSION}")
    if kind is not None and meta.get("kind") != kind:
        raise CheckpointError(f"{path}: kind {meta.get('kind')!r}, expected {kind!r}")
    digest = sha256_file(path)
    if digest != meta.get("sha256"):
        raise CheckpointError(f"{path}: sha256 {digest} does not match the sidecar ({meta.get('sha256')})")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path}: not a readable .npz ({type(e).__name__}: {e}); the file is corrupt or "
                              "truncated") from e
    for k, shape in meta.get("shapes", {}).items():
        if k not in arrays or list(arrays[k].shape) != list(shape):
            raise CheckpointError(f"{path}: array {k!r} missing or of wrong shape (sidecar says {shape})")
    for k, shape in (expect_shapes or {}).items():
        if k not in arrays:
            raise CheckpointError(f"{path}: array {k!r} missing")
        if tuple(arrays[k].shape) != tuple(shape):
            raise CheckpointError(f"{path}: array {k!r} has shape {arrays[k].shape}, expected {tuple(shape)}")
    return arrays, meta


def torch_load(path: str | Path, map_location=None) -> Any:
    """``torch.load(path, weights_only=True)`` of a training state: tensors, plain Python containers and
    numbers, and additionally (allow-listed) numpy arrays of plain dtypes and ``pathlib`` paths, which our
    training states hold. Nothing else is unpickled, so a crafted file cannot run code."""
    import pathlib  # noqa: PLC0415

    import torch  # noqa: PLC0415

    np_core = getattr(np, "_core", None) or np.core
    allowed = [np.ndarray, np.dtype, np_core.multiarray._reconstruct, np_core.multiarray.scalar,
               pathlib.PosixPath, pathlib.WindowsPath, pathlib.PurePosixPath]
    allowed += [t for t in vars(np.dtypes).values() if isinstance(t, type) and issubclass(t, np.dtype)]
    with torch.serialization.safe_globals(allowed):
        return torch.load(path, weights_only=True, map_location=map_location)


def _command_line() -> str:
    """The running command as a user would type it: the program's name without its folder (no machine path)."""
    argv = [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv and sys.argv[0] else list(sys.argv)
    return " ".join(shlex.quote(a) for a in argv)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
