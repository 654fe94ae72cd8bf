"""Lightning checkpoints with a content hash: written with one, refused when it does not match.

:class:`HashedCheckpointIO` (the ``train``/``distill`` commands' checkpoint IO plugin) writes
``<file>.sha256`` beside every checkpoint and, on reading, verifies it and unpickles with
``weights_only=True`` only. :func:`verify_checkpoint` is the same check for a path given by a
user (``--ckpt_path``), run before anything is built.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ...zoo import CheckpointError
from .hashes import sha256_of

__all__ = [
    "FolderCheckpoint",
    "HashedCheckpointIO",
    "ScheduleGuard",
    "sha256_of",
    "verify_checkpoint",
]

SUFFIX = ".sha256"


def verify_checkpoint(path: str | Path, *, load: bool = False) -> dict[str, Any] | None:
    """Check a checkpoint file before it is used; with ``load``, also read it safely.

    The file must exist and be an intact torch archive (every member passes its CRC-32); when
    a ``<file>.sha256`` lies beside it (every checkpoint multispike writes has one), its
    content must match.

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
    try:  # the archive's own CRC-32s catch damage where no .sha256 was kept
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:  # ValueError: a name
        damaged = f"({type(err).__name__}: {err})"  # that is no longer UTF-8, among others
    if damaged is not None:
        raise CheckpointError(
            f"{path} is damaged: {damaged} fails the archive's CRC check; resume from another "
            "checkpoint (e.g. the epoch checkpoint beside it)"
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


class FolderCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose restored paths follow its folder.

    A checkpoint records the absolute paths of the best and last checkpoints. Lightning keeps
    the best path of a resumed run even when the folder was copied or moved (and drops its
    score), so the chosen model would be read from the old place, or missing. Here every
    recorded path under the checkpoint's old folder is moved to the present one: a run folder
    resumes from what is inside it.
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old, new = state_dict.get("dirpath"), self.dirpath
        if old and new and old != new:
            state_dict = _moved(state_dict, str(old), str(new))
        super().load_state_dict(state_dict)


def _moved(state: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    def move(path: Any) -> Any:
        if isinstance(path, str) and path and Path(path).parent == Path(old):
            return str(Path(new) / Path(path).name)
        return path

    state = dict(state, dirpath=new)
    for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
        state[key] = move(state.get(key, ""))
    state["best_k_models"] = {move(k): v for k, v in state.get("best_k_models", {}).items()}
    return state


class ScheduleGuard(L.Callback):
    """Refuses to resume a fit whose length changed: the learning-rate schedule of the
    checkpoint was laid out for its number of steps (``--trainer.max_epochs`` and the data
    size); resuming with another would run a different schedule than either run's config."""

    def __init__(self) -> None:
        self.total: int | None = None
        self._restored: int | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.total = int(trainer.estimated_stepping_batches)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._restored is not None and self._restored != self.total:
            raise CheckpointError(
                f"{trainer.ckpt_path}: its fit was laid out for {self._restored} optimizer "
                f"steps, this one has {self.total} (another --trainer.max_epochs, batch size "
                "or data size?): resume with the settings it was started with, or start a "
                "new run (--model.init_from to reuse its weights in distill)"
            )

    def state_dict(self) -> dict[str, Any]:
        return {"total_steps": self.total}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        value = state_dict.get("total_steps")
        self._restored = int(value) if isinstance(value, int) else None
