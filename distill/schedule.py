"""The stage schedule of a distillation: which :class:`~multispike.distill.students.Stage` an
epoch is in, and which schedules are valid.

Stages run in order, each for its ``epochs`` (the last may run to the end of the fit); QANN
stages come before SNN stages, since an SNN cannot go back to a QANN.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from torch import nn

from ..convert import SpikingNetwork
from .console import announce
from .students import Stage, apply_stage

__all__ = ["StageSchedule", "check_schedule", "default_stage", "stage_at", "stages_as_dicts"]


def stages_as_dicts(stages: Sequence[Stage | dict[str, Any]] | None) -> list[dict] | None:
    """A schedule as plain dicts (hyper-parameters that load with ``weights_only=True``)."""
    return [asdict(s) if isinstance(s, Stage) else dict(s) for s in stages or []] or None


def default_stage(student: nn.Module | None) -> Stage:
    """The one stage of a schedule left out: the given student's kind and ``T``, or an SNN
    with ``T = 1`` for a student built from the ANN."""
    if isinstance(student, SpikingNetwork):
        return Stage("snn", timesteps=student.timesteps)
    return Stage("qann") if student is not None else Stage("snn")


def check_schedule(stages: Sequence[Stage]) -> None:
    """Refuse a schedule that cannot run.

    Raises:
        ValueError: ``epochs=None`` before the last stage, ``epochs < 1``, or a QANN stage
            after an SNN stage.
    """
    for index, stage in enumerate(stages):
        if stage.epochs is None and index != len(stages) - 1:
            raise ValueError(
                f"stage {index} has epochs=None: only the last stage may run to the end"
            )
        if stage.epochs is not None and stage.epochs < 1:
            raise ValueError(f"stage {index} has epochs={stage.epochs}: need >= 1")
    kinds = [stage.student for stage in stages]
    if "snn" in kinds and "qann" in kinds[kinds.index("snn") :]:
        raise ValueError("QANN stages must come before SNN stages in the schedule")


def stage_at(stages: Sequence[Stage], epoch: int) -> int:
    """Index of the stage that ``epoch`` belongs to (the last one after the schedule ends)."""
    end = 0
    for index, stage in enumerate(stages):
        if stage.epochs is None:
            return index
        end += stage.epochs
        if epoch < end:
            return index
    return len(stages) - 1


class StageSchedule:
    """The schedule half of :class:`~multispike.distill.module.StepwiseDistillation`: the
    student moves through ``stages`` by epoch and stays in the last.

    The host sets ``stages`` (a list of :class:`Stage`), ``stage_index = -1`` (no stage
    entered yet) and ``student``.
    """

    stages: list[Stage]
    stage_index: int
    student: nn.Module | None

    @property
    def stage(self) -> Stage:
        """The stage the student is in."""
        return self.stages[max(self.stage_index, 0)]

    def stage_at(self, epoch: int) -> int:
        """Index of the stage that ``epoch`` belongs to."""
        return stage_at(self.stages, epoch)

    def enter_stage(self, index: int) -> None:
        """Apply stages up to ``index`` to the student (no-op for stages already entered)."""
        while self.stage_index < index:
            self.stage_index += 1
            self.student = apply_stage(self.student, self.stages[self.stage_index])
            announce(self, f"distillation stage {self.stage_index}: {self.stage}")

    def check_reaches_last_stage(self, max_epochs: int | None) -> None:
        """Refuse a fit of ``max_epochs`` that ends before the last stage starts: its
        selection key (the last stage's validation top-1) would never be measured.

        Raises:
            ValueError: naming ``--trainer.max_epochs`` and the epochs the schedule needs.
        """
        start = sum(stage.epochs or 0 for stage in self.stages[:-1])
        if max_epochs is not None and max_epochs >= 0 and max_epochs <= start:
            raise ValueError(
                f"--trainer.max_epochs {max_epochs} ends before the schedule's last stage "
                f"(the {self.stages[-1].student}) starts at epoch {start}: give at least "
                f"{start + 1} epochs, or shorten the earlier stages (--model.stages)"
            )

    def on_train_epoch_start(self) -> None:
        self.enter_stage(self.stage_at(self.current_epoch))
