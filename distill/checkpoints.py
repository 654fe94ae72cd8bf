"""Checkpoints of a distillation: the stage they hold, student weights in either layout, and
hyper-parameters of earlier versions.

A checkpoint holds the student as a QANN (``student.*``) or an SNN (``student.net.*``);
:func:`student_state_in_layout` renames one into the other. Checkpoints written before the
calibration options became one object (issue 46) hold flat ``levels``, ``per_channel``,
``calibration`` (the method), ``percentile`` and ``calibration_images`` hyper-parameters;
:func:`upgrade_checkpoint` gathers them into ``calibration``.
"""

from __future__ import annotations

import io
from collections.abc import Collection, Mapping
from dataclasses import asdict, fields
from pathlib import Path
from typing import IO, Any

import torch

from ..convert import CalibrationOptions, SpikingNetwork
from .students import student_input_shape

__all__ = [
    "StudentCheckpoints",
    "student_state_in_layout",
    "upgrade_checkpoint",
    "upgrade_hparams",
]

_CALIBRATION_FIELDS = tuple(f.name for f in fields(CalibrationOptions))


def student_state_in_layout(
    state_dict: Mapping[str, Any], own_keys: Collection[str], snn: bool
) -> dict[str, Any]:
    """``state_dict`` with student keys in the present student's layout.

    Args:
        state_dict: a checkpoint's state, student keys as a QANN's or as an SNN's.
        own_keys: the keys of the module's own state dict (kept as they are).
        snn: the present student is an SNN (``student.net.*``), else a QANN.
    """

    def present(key: str) -> str:
        if key in own_keys or not key.startswith("student."):
            return key
        rest = key.removeprefix("student.").removeprefix("net.")
        return f"student.net.{rest}" if snn else f"student.{rest}"

    return {present(k): v for k, v in state_dict.items()}


def upgrade_hparams(hparams: Mapping[str, Any]) -> dict[str, Any] | None:
    """Hyper-parameters with flat calibration options in today's form, ``None`` if they are
    in it already: ``calibration`` becomes the dict of a
    :class:`~multispike.convert.CalibrationOptions`."""
    if not isinstance(hparams.get("calibration"), str) and "levels" not in hparams:
        return None
    upgraded = dict(hparams)
    flat = {name: upgraded.pop(name) for name in _CALIBRATION_FIELDS if name in upgraded}
    upgraded["calibration"] = asdict(CalibrationOptions(**flat))
    return upgraded


def upgrade_checkpoint(path: str | Path | IO) -> str | Path | IO:
    """``path``, or the checkpoint it holds with :func:`upgrade_hparams` applied (in memory)
    when its hyper-parameters are flat; anything that is not a local file is returned as is."""
    if not isinstance(path, (str, Path)) or not Path(path).is_file():
        return path
    try:  # mmap: the tensors are not read to look at the hyper-parameters
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        hparams = upgrade_hparams(checkpoint.get("hyper_parameters") or {})
    except Exception:  # not a plain checkpoint: Lightning's loader says why
        return path
    if hparams is None:
        return path
    checkpoint["hyper_parameters"] = hparams
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    buffer.seek(0)
    return buffer


class StudentCheckpoints:
    """The checkpoint half of :class:`~multispike.distill.module.StepwiseDistillation`: every
    checkpoint records its stage and the student's input shape, and rebuilds that structure
    before its weights load, so any stage resumes (``ckpt_path``) or loads
    (``load_from_checkpoint``).

    The host (a LightningModule) has ``student``, ``stage_index``, ``enter_stage(index)``,
    ``build_student(data, input_shape)`` and the ``input_shape`` hyper-parameter.
    """

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: str | Path | IO, *args: Any, **kwargs: Any):
        """Lightning's ``load_from_checkpoint``, for checkpoints with flat calibration
        hyper-parameters too (:func:`upgrade_checkpoint`)."""
        return super().load_from_checkpoint(upgrade_checkpoint(checkpoint_path), *args, **kwargs)

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ):
        """Load student weights in either layout, QANN (``student.*``) or SNN
        (``student.net.*``): a checkpoint written under weight averaging holds the averaged
        weights in the layout the student had when the average was copied (before the first
        stage converted it), the current weights in the present one."""
        if self.student is not None:
            snn = isinstance(self.student, SpikingNetwork)
            state_dict = student_state_in_layout(state_dict, set(self.state_dict()), snn)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["multispike"] = {
            "stage_index": max(self.stage_index, 0),
            "input_shape": student_input_shape(self.student),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Give the student the structure of the checkpoint's stage before its weights load."""
        info = checkpoint.get("multispike")
        if info is None:
            raise ValueError(
                "not a StepwiseDistillation checkpoint (no 'multispike' entry): use "
                "init_from=... to seed a student from other weights"
            )
        if self.student is None:
            self.build_student(None, self.hparams.input_shape or info["input_shape"])
        if info["stage_index"] < self.stage_index:
            raise ValueError(
                f"checkpoint is at stage {info['stage_index']} but the student is already at "
                f"stage {self.stage_index}"
            )
        self.enter_stage(info["stage_index"])
