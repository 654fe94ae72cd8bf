"""The model folder every stage reads and writes: ``config.json`` (architecture, L / N / T,
thresholds, transforms, preprocessing, library versions, the weights' sha256) beside
``model.safetensors``.

- :mod:`.serialize`: :func:`save`; :mod:`.deserialize`: :func:`load` (the QANN or SNN it holds);
- :mod:`.hashes`: the SHA-256 of the weights and of checkpoints;
- :mod:`.weights_file`: safetensors written with the same bytes for the same tensors;
- :mod:`.schema`: the checks a ``config.json`` passes before anything is built from it;
- :mod:`.checkpoints`: Lightning checkpoints with sha256 sidecars, resumable folders.
"""

from .deserialize import load
from .hashes import sha256_of
from .schema import ModelFileError, validate_config
from .serialize import CONFIG_FILE, WEIGHTS_FILE, conversion_meta, register_transform, save

__all__ = [
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "ModelFileError",
    "conversion_meta",
    "load",
    "register_transform",
    "save",
    "sha256_of",
    "validate_config",
]
