"""Event frames for teacher and student: the teacher sees ``F`` frames, the student fewer.

Batches of event data hold ``x`` of shape ``(B, F, C, H, W)``. The ANN teacher runs on
every frame and averages its logits; the student's frames are re-binned by summing
consecutive groups (down to one multi-level frame). Frames and SNN steps are decoupled:
``S`` student frames feed ``T`` steps when ``T`` is a multiple of ``S`` (each frame held
for ``T/S`` steps; one frame is presented at every step).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from ..convert.calibrate import batch_inputs

__all__ = ["StudentFrames", "calibration_frames", "rebin_frames", "student_input", "teacher_logits"]


def rebin_frames(frames: Tensor, bins: int) -> Tensor:
    """Sum ``(B, F, ...)`` frames into ``bins`` near-equal groups of consecutive frames."""
    count = frames.shape[1]
    if not 1 <= bins <= count:
        raise ValueError(f"cannot re-bin {count} frames into {bins}: need 1 <= bins <= {count}")
    if bins == count:
        return frames
    return torch.stack([g.sum(1) for g in torch.tensor_split(frames, bins, dim=1)], dim=1)


def teacher_logits(teacher: nn.Module, x: Tensor) -> Tensor:
    """Teacher logits ``(B, K)``: per frame and averaged for ``(B, F, C, H, W)`` inputs."""
    if x.dim() != 5:
        return teacher(x)
    batch, count = x.shape[:2]
    return teacher(x.flatten(0, 1)).view(batch, count, -1).mean(1)


def student_input(x: Tensor, frames: int | None, timesteps: int | None) -> Tensor:
    """The student's input for a batch ``x``.

    Args:
        x: ``(B, C, H, W)`` images (returned as they are) or ``(B, F, C, H, W)`` frames.
        frames: ``S``, student frames after re-binning (``None``: ``min(F, T)``, one
            frame per step as far as the frames go).
        timesteps: ``T`` of an SNN student, ``None`` for a QANN (which takes one frame).

    Returns:
        ``(B, C, H, W)`` when the student sees one frame (static input), else
        ``(T, B, C, H, W)``, frame ``s`` repeated for ``T/S`` steps.
    """
    if x.dim() != 5:
        return x
    count = x.shape[1]
    if timesteps is None:
        if frames not in (None, 1):
            raise ValueError(f"a QANN student takes one frame, got student frames={frames}")
        frames = 1
    frames = min(count, timesteps) if frames is None else frames
    binned = rebin_frames(x, frames)
    if frames == 1:
        return binned[:, 0]
    if timesteps % frames:
        raise ValueError(
            f"{frames} student frames cannot feed {timesteps} SNN steps: timesteps must be a "
            "multiple of the student frames"
        )
    return binned.transpose(0, 1).repeat_interleave(timesteps // frames, dim=0)


class StudentFrames:
    """Re-iterable view of a loader yielding the student's single-frame inputs (calibration).

    Args:
        loader: batches of images or of ``(B, F, C, H, W)`` frames (labels ignored).
        frames, timesteps: as for :func:`student_input`; frames seen at several steps are
            flattened into the batch.
        limit: stop after this many batches (default: all).
    """

    def __init__(self, loader: Iterable, frames: int | None, timesteps: int | None,
                 limit: int | None = None) -> None:  # fmt: skip
        self.loader, self.frames, self.timesteps, self.limit = loader, frames, timesteps, limit

    def __iter__(self) -> Iterator[Tensor]:
        for index, batch in enumerate(self.loader):
            if self.limit is not None and index >= self.limit:
                return
            x = student_input(batch_inputs(batch), self.frames, self.timesteps)
            yield x.flatten(0, 1) if x.dim() == 5 else x


def calibration_frames(
    datamodule: Any, images: int, frames: int | None, timesteps: int | None
) -> StudentFrames:
    """The student's inputs of about ``images`` training images of ``datamodule``: its
    ``calibration_dataloader`` where it has one, else the first batches of its training loader.

    Raises:
        ValueError: no DataModule (``None``).
    """
    if datamodule is None:
        raise ValueError(
            "StepwiseDistillation builds its student from the source ANN on the training "
            "data: fit with a DataModule, or pass student=..."
        )
    if hasattr(datamodule, "calibration_dataloader"):
        loader = datamodule.calibration_dataloader(num_images=images)
        return StudentFrames(loader, frames, timesteps)
    loader = datamodule.train_dataloader()
    batches = math.ceil(images / (loader.batch_size or 1))
    return StudentFrames(loader, frames, timesteps, batches)
