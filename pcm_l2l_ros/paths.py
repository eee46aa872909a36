"""Where things are: the package's data files and the read-only ``shared`` folder (data, reference weights).

``shared_dir()`` is ``$PCM_L2L_SHARED`` if set, else the ``shared`` folder next to the repository
(``<repo>/../shared``), which is where the development and CI checkouts keep it.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
#: shipped meta-trained checkpoints; ``$PCM_L2L_MODELS`` points elsewhere (e.g. freshly trained models)
MODELS_DIR = Path(os.environ["PCM_L2L_MODELS"]) if os.environ.get("PCM_L2L_MODELS") else PACKAGE_DIR / "models"


def shared_dir() -> Path:
    """Return the folder with ``data/`` and ``reference/`` (raises FileNotFoundError if absent).

    A set ``$PCM_L2L_SHARED`` is the only place looked at: if it holds neither ``data/`` nor ``reference/``
    that is an error, never a silent fall-back to another folder."""
    env = os.environ.get("PCM_L2L_SHARED")
    if env:
        c = Path(env)
        if (c / "data").is_dir() or (c / "reference").is_dir():
            return c.resolve()
        raise FileNotFoundError(
            f"PCM_L2L_SHARED={env} holds neither data/ nor reference/ (unset it to use the "
            "shared folder next to the repository)"
        )
    candidates = [REPO_DIR.parent / "shared", Path.cwd().parent / "shared", Path.cwd() / "shared"]
    for c in candidates:
        if (c / "data").is_dir() or (c / "reference").is_dir():
            return c.resolve()
    raise FileNotFoundError(
        "shared data folder not found; set PCM_L2L_SHARED to the folder holding data/ and reference/ "
        f"(looked in: {', '.join(str(c) for c in candidates)})"
    )


def package_share_file(*parts: str) -> Path:
    """Locate an installed data file (``urdf/…``, ``config/…``) from a source checkout or an ament install."""
    local = REPO_DIR.joinpath(*parts)
    if local.exists():
        return local
    try:  # installed with colcon: share/pcm_l2l_ros/<parts>
        from ament_index_python.packages import get_package_share_directory  # noqa: PLC0415

        installed = Path(get_package_share_directory("pcm_l2l_ros")).joinpath(*parts)
        if installed.exists():
            return installed
    except Exception:  # noqa: BLE001 - ament index absent or package not installed
        pass
    raise FileNotFoundError(f"package file not found: {'/'.join(parts)}")
