"""Students of a distillation: the teacher's calibrated QANN, the SNN sharing its weights.

The distillation system (:mod:`multispike.distill.module`) trains one set of parameters
through a schedule of :class:`Stage` s: quantization-aware training of the QANN, then the
SNN built on the very same parameter tensors (so optimizers and DDP keep working across the
switch), then fewer steps or spikes.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import fx, nn

from ..convert import (
    CalibrationOptions,
    SpikingNetwork,
    build_qann,
    neurons,
    quantizers,
    to_snn,
)
from ..convert.modules import get_module
from ..zoo import CheckpointError

__all__ = [
    "Stage",
    "apply_stage",
    "freeze_batchnorm",
    "load_student_state",
    "load_student_weights",
    "quantized_student",
    "spiking_view",
    "student_input_shape",
]

StudentKind = Literal["qann", "snn"]
_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclass
class Stage:
    """One stage of a distillation schedule.

    Attributes:
        student: ``"qann"`` (quantization-aware training, one step) or ``"snn"``.
        epochs: epochs spent in this stage; ``None`` (last stage only) runs to the end.
        timesteps: ``T`` of the SNN (ignored for the QANN).
        max_spikes: ``N`` of every SNN neuron (default: the QANN's levels ``L``).
        levels: ``L`` of every QANN quantizer (default: unchanged).
    """

    student: StudentKind = "snn"
    epochs: int | None = None
    timesteps: int = 1
    max_spikes: int | None = None
    levels: int | None = None


def freeze_batchnorm(model: nn.Module) -> None:
    """Keep BatchNorms that could not be folded frozen: eval mode, no gradient."""
    for module in model.modules():
        if isinstance(module, _BATCHNORMS):
            module.eval()
            for param in module.parameters(recurse=False):
                param.requires_grad_(False)


def student_input_shape(student: nn.Module | None) -> list[int] | None:
    """``(C, H, W)`` of one frame of ``student``'s input, as its conversion recorded it."""
    if isinstance(student, SpikingNetwork):
        return list(student.input_shape)
    meta = getattr(student, "meta", {}).get("multispike", {})
    return meta.get("input_shape")


def quantized_student(
    ann: nn.Module,
    calibration: CalibrationOptions,
    *,
    data: Iterable | None = None,
    input_shape: Sequence[int] | None = None,
    progress: bool = True,
) -> fx.GraphModule:
    """The QANN of ``ann``: calibrated on ``data`` as ``calibration`` says (a reconstruction
    included), or its structure only (λ = 1) without data; every parameter trains but those of
    unfoldable BatchNorms.
    """
    if data is None:
        qann = build_qann(ann, calibration.levels, per_channel=calibration.per_channel,
                          input_shape=input_shape)  # fmt: skip
    else:
        if calibration.calibration == "reconstruct":  # a frozen ANN would reconstruct nothing
            ann = copy.deepcopy(ann).requires_grad_(True)
        qann = calibration.apply(ann, data, progress=progress)
    qann.requires_grad_(True)  # a frozen teacher's copy would stay frozen
    freeze_batchnorm(qann)
    return qann


def spiking_view(qann: fx.GraphModule, max_spikes: int | None = None, timesteps: int = 1):
    """:func:`~multispike.convert.to_snn` whose SNN uses ``qann``'s parameter tensors.

    Every parameter and buffer of the converted copy is re-bound to the QANN's tensor at
    the same qualified name (λ included: quantizer and neuron both call it ``threshold``),
    so an optimizer or a DDP wrapper built on the QANN trains the SNN unchanged.
    """
    snn = to_snn(qann, max_spikes=max_spikes, timesteps=timesteps)
    for path, module in snn.net.named_modules():
        source = get_module(qann, path) if path else qann
        for name in list(module._parameters):
            module._parameters[name] = source._parameters[name]
        for name in list(module._buffers):
            module._buffers[name] = source._buffers[name]
    return snn


def apply_stage(student: nn.Module, stage: Stage) -> nn.Module:
    """Bring ``student`` (a QANN or SNN) to ``stage``; returns the (possibly new) student.

    A QANN becomes an SNN through :func:`spiking_view` (parameters shared); levels, spikes
    and steps are changed in place. An SNN cannot go back to a QANN.
    """
    if stage.student == "snn":
        if not isinstance(student, SpikingNetwork):
            if stage.levels is not None:
                _set_levels(student, stage.levels)
            student = spiking_view(student, stage.max_spikes, stage.timesteps)
        if stage.max_spikes is not None:
            for neuron in neurons(student).values():
                neuron.max_spikes = int(stage.max_spikes)
            student.net.meta["multispike"]["max_spikes"] = int(stage.max_spikes)
        if stage.timesteps < 1:
            raise ValueError(f"stage timesteps must be >= 1, got {stage.timesteps}")
        student.timesteps = int(stage.timesteps)
        return student
    if stage.student != "qann":
        raise ValueError(f"stage student must be 'qann' or 'snn', got {stage.student!r}")
    if isinstance(student, SpikingNetwork):
        raise ValueError(
            "a schedule cannot go from an SNN stage back to a QANN stage: put the 'qann' "
            "stages first"
        )
    if stage.levels is not None:
        _set_levels(student, stage.levels)
    return student


def _set_levels(qann: nn.Module, levels: int) -> None:
    if levels < 1:
        raise ValueError(f"stage levels must be >= 1, got {levels}")
    for quant in quantizers(qann).values():
        quant.levels = int(levels)
    if isinstance(qann, fx.GraphModule) and "multispike" in qann.meta:
        qann.meta["multispike"]["levels"] = int(levels)


def load_student_weights(student: nn.Module, path: str | Path) -> None:
    """Load a student's weights from a Lightning checkpoint or a state-dict file.

    Keys under ``student.`` are taken from Lightning checkpoints (see
    :func:`load_student_state`), so a QAT checkpoint can seed an SNN stage and an SNN
    checkpoint a later SNN stage with other ``T`` or ``N``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"student checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # text, truncated archive, or a pickle of more than tensors
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({type(err).__name__}); give a Lightning "
            "checkpoint of an earlier run or a state-dict file of tensors"
        ) from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CheckpointError(
            f"{path}: holds no state dict of tensors (a Lightning checkpoint's 'state_dict', or "
            "a mapping of parameter names to tensors)"
        )
    if any(k.startswith("student.") for k in state):
        state = {k[len("student.") :]: v for k, v in state.items() if k.startswith("student.")}
    try:
        load_student_state(student, state)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


def load_student_state(student: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a QANN's or SNN's state dict into ``student`` (a QANN or SNN), in place.

    QANN and SNN layouts are interchangeable: an SNN keeps its graph under ``net.``.

    Raises:
        ValueError: the state does not hold this student's weights (keys are named).
    """
    state = {k.removeprefix("net."): v for k, v in state.items()}
    if isinstance(student, SpikingNetwork):
        state = {f"net.{k}": v for k, v in state.items()}
    missing, unexpected = student.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"the weights are not this student's: missing {missing[:5]}, unexpected "
            f"{unexpected[:5]} (same model, levels and per_channel setting?)"
        )
