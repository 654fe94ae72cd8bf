"""Lightning checkpoints with a content hash: written with one, refused when it does not match.

:class:`HashedCheckpointIO` (the ``train``/``distill`` commands' checkpoint IO plugin) writes
``<file>.sha256`` beside every checkpoint and, on reading, verifies it and unpickles with
``weights_only=True`` only. :func:`verify_checkpoint` is the same check for a path given by a
user (``--ckpt_path``), run before anything is built.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from multispike.zoo import CheckpointError

__all__ = ["HashedCheckpointIO", "sha256_of", "verify_checkpoint"]

SUFFIX = ".sha256"


def sha256_of(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checkpoint(path: str | Path, *, load: bool = False) -> dict[str, Any] | None:
    """Check a checkpoint file before it is used; with ``load``, also read it safely.

    The file must exist and be a torch archive; when a ``<file>.sha256`` lies beside it (every
    checkpoint multispike writes has one), its content must match.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: not a checkpoint, truncated, a hash mismatch, or (with ``load``) a
            pickle that needs more than tensors and plain values (it could run code).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    recorded = path.with_name(path.name + SUFFIX)
    if recorded.is_file():
        expected = (recorded.read_text().split() or [""])[0]
        if sha256_of(path) != expected:
            raise CheckpointError(
                f"{path} does not match its SHA-256 in {recorded.name}: the checkpoint is "
                "corrupt or was changed after it was written; resume from another one"
            )
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint archive (truncated, or another kind of file)"
        )
    if not load:
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError for code, anything else for damage
        raise CheckpointError(
            f"{path} cannot be read safely (weights_only=True refused it: "
            f"{type(err).__name__}); use a checkpoint written by multispike or plain tensors"
        ) from err


class HashedCheckpointIO(TorchCheckpointIO):
    """``torch.save`` checkpoints with a ``.sha256`` beside each; reads verify it and load
    with ``weights_only=True``."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        super().save_checkpoint(checkpoint, path, storage_options=storage_options)
        Path(f"{path}{SUFFIX}").write_text(f"{sha256_of(path)}  {Path(path).name}\n")

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        verify_checkpoint(path)
        location = map_location or (lambda storage, loc: storage)
        return super().load_checkpoint(path, map_location=location, weights_only=True)

    def remove_checkpoint(self, path) -> None:
        super().remove_checkpoint(path)
        Path(f"{path}{SUFFIX}").unlink(missing_ok=True)
