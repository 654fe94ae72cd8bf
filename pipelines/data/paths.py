"""Where the DataModules find their datasets when no path is given: the local data folder.

``MULTISPIKE_DATA`` names a folder laid out like ``../shared/data`` (``cifar10/``, ``nmnist/``,
...); without it, ``../shared/data`` beside the repository (or the working directory) is used
(:func:`multispike.zoo.paths.shared_data_dir`, the same folder the zoo's weights come from).
"""

from __future__ import annotations

from pathlib import Path

from ...zoo.paths import ENV_VAR as DATA_VAR
from ...zoo.paths import missing_data_dir, shared_data_dir

__all__ = ["DATA_VAR", "local_data", "missing_data_dir"]


def local_data(relative: str) -> Path | None:
    """``relative`` inside the local data folder, or ``None`` when there is no such folder."""
    root = shared_data_dir()
    return root / relative if root is not None else None
