"""Where the DataModules find their datasets when no path is given: the local data folder.

``MULTISPIKE_DATA`` names a folder laid out like ``../shared/data`` (``cifar10/``, ``nmnist/``,
...); without it, ``../shared/data`` beside the repository (or the working directory) is used.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DATA_VAR", "local_data"]

DATA_VAR = "MULTISPIKE_DATA"


def local_data(relative: str) -> Path | None:
    """``relative`` inside the local data folder, or ``None`` when there is no such folder."""
    value = os.environ.get(DATA_VAR)
    bases = (Path(__file__).resolve().parents[3], Path.cwd().parent)
    roots = [Path(value).expanduser()] if value else [b / "shared" / "data" for b in bases]
    root = next((r for r in roots if r.is_dir()), None)
    return root / relative if root is not None else None
