"""Where the offline copies of real data and weights live.

Set ``MULTISPIKE_DATA`` to a folder laid out like ``../shared/data`` (``cifar10/``,
``nmnist/``, ``weights/``); without it, ``../shared/data`` beside the repository (or beside
the working directory) is used when present.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ENV_VAR", "shared_data_dir"]

ENV_VAR = "MULTISPIKE_DATA"


def shared_data_dir() -> Path | None:
    """The shared data folder, or ``None`` when neither the setting nor the fallback exists."""
    value = os.environ.get(ENV_VAR)
    if value:
        path = Path(value).expanduser()
        return path if path.is_dir() else None
    repo_root = Path(__file__).resolve().parents[1]
    for candidate in (repo_root.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"):
        if candidate.is_dir():
            return candidate
    return None
