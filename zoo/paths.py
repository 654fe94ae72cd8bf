"""Where the zoo finds pretrained weights offline: the local data folder.

Set ``MULTISPIKE_DATA`` to a folder laid out like ``../shared/data`` (its ``weights/``
sub-folder holds the files); without it, ``../shared/data`` beside the repository is used
when present.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import parts

__all__ = [
    "ENV_VAR",
    "LOCAL_WEIGHTS",
    "REPO_WEIGHTS",
    "missing_data_dir",
    "pretrained_path",
    "shared_data_dir",
]

ENV_VAR = "MULTISPIKE_DATA"

# zoo model → file pattern inside the data folder (the first match is used)
LOCAL_WEIGHTS = {
    "ms_resnet20": "weights/akamaster-cifar10-resnet/resnet20-*.th",
    "ms_resnet32": "weights/akamaster-cifar10-resnet/resnet32-*.th",
    "ms_resnet44": "weights/akamaster-cifar10-resnet/resnet44-*.th",
    "ms_resnet56": "weights/akamaster-cifar10-resnet/resnet56-*.th",
    "ms_nir_nmnist_cnn": "weights/nir-nmnist-cnn/sinabs-cnn-ann.pth",
}


# zoo model → weights trained by this project, committed under benchmarks/checkpoints/ of the
# repository (a clone or an editable install has them; a wheel does not), whole or in parts
# (see multispike.zoo.parts)
REPO_WEIGHTS = {
    "ms_airbench_relu": "benchmarks/checkpoints/airbench_relu_cifar10/model.safetensors",
    "ms_airbench_relu_wide": "benchmarks/checkpoints/airbench_relu_wide_cifar10/model.safetensors",
}
_REPOSITORY = Path(__file__).resolve().parents[1]


def _data_dir_candidates() -> list[Path]:
    value = os.environ.get(ENV_VAR)
    if value:
        return [Path(value).expanduser()]
    # ../shared/data beside the repository, or beside the working directory
    return [root / "shared" / "data" for root in (_REPOSITORY.parent, Path.cwd().parent)]


def shared_data_dir() -> Path | None:
    """The local data folder, or ``None`` when neither the setting nor a fallback exists."""
    return next((path for path in _data_dir_candidates() if path.is_dir()), None)


def missing_data_dir() -> str:
    """Why there is no local data folder, for an error message (see :func:`shared_data_dir`)."""
    value = os.environ.get(ENV_VAR)
    if value:
        return f"{ENV_VAR}={value} is not a folder"
    tried = " or ".join(str(path) for path in dict.fromkeys(_data_dir_candidates()))
    return f"{ENV_VAR} is not set and there is no {tried}"


def pretrained_path(name: str) -> Path:
    """The local pretrained weights of zoo model ``name`` (``"ms_resnet20"`` or ``"resnet20"``).

    Raises:
        FileNotFoundError: no local file for ``name``; the message says where it looked.
    """
    base = name.split(".")[0]
    if base in REPO_WEIGHTS:
        path = _REPOSITORY / REPO_WEIGHTS[base]
        if not parts.exists(path):
            raise FileNotFoundError(
                f"no local pretrained weights for {name!r}: looked for {path} and its parts "
                "(they are committed in the repository; a wheel does not carry them: pass "
                "--checkpoint)"
            )
        return parts.joined_file(path)
    key = base if base in LOCAL_WEIGHTS else f"ms_{base}"
    if key not in LOCAL_WEIGHTS:
        raise FileNotFoundError(
            f"the zoo keeps no local weights for {name!r} (it has "
            f"{sorted([*LOCAL_WEIGHTS, *REPO_WEIGHTS])})"
        )
    root = shared_data_dir()
    pattern = LOCAL_WEIGHTS[key]
    matches = sorted(root.glob(pattern)) if root is not None else []
    if not matches:
        where = f"looked for {root / pattern}" if root is not None else missing_data_dir()
        raise FileNotFoundError(
            f"no local pretrained weights for {name!r}: {where}; set {ENV_VAR} to the data "
            f"folder that holds {pattern}"
        )
    return matches[0]
