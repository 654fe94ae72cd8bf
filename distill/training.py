"""How a distillation runs its networks in training: the student in train mode, the teacher,
the source and unfoldable BatchNorms frozen in eval mode, and ``torch.compile`` of the
networks a training step runs.
"""

from __future__ import annotations

import warnings

import torch
from lightning.pytorch.utilities.warnings import PossibleUserWarning
from torch import nn

from .students import freeze_batchnorm

__all__ = ["TrainingNetworks"]


class TrainingNetworks:
    """The training-mode half of :class:`~multispike.distill.module.StepwiseDistillation`.

    The host (a LightningModule) has ``teacher``, ``source`` (or ``None``), ``student`` and
    the ``torch_compile`` hyper-parameter.
    """

    teacher: nn.Module
    source: nn.Module | None
    student: nn.Module | None
    # (compiled teacher, compiled student) once compiled; a tuple, so that the compiled
    # wrappers are not registered as submodules (no second state-dict entry)
    _compiled: tuple[nn.Module, nn.Module] | None = None

    def train(self, mode: bool = True):
        """Switch modes; the teacher, the source and unfoldable BatchNorms stay in eval mode."""
        super().train(mode)
        self.teacher.eval()
        if self.source is not None:
            self.source.eval()
        if self.student is not None:
            freeze_batchnorm(self.student)
        return self

    def on_fit_start(self) -> None:
        """Train the student in train mode (dropout, drop-path), however it was handed over:
        Lightning keeps each module's mode, and a student copied from an eval-mode teacher or
        loaded from disk starts in eval mode. The teacher, the source and frozen BatchNorms stay
        in eval mode on purpose, so Lightning's warning that counts them at the start of training
        is silenced, until :meth:`on_train_start` puts the caller's warning filters back."""
        self.train()
        self._eval_mode_warning_silenced = warnings.catch_warnings()
        self._eval_mode_warning_silenced.__enter__()
        warnings.filterwarnings(
            "ignore", r"Found \d+ module\(s\) in eval mode", PossibleUserWarning
        )

    def on_train_start(self) -> None:
        self._eval_mode_warning_silenced.__exit__(None, None, None)

    def training_networks(self) -> tuple[nn.Module, nn.Module]:
        """The teacher and student a training step runs: compiled with ``torch_compile``.

        The student is compiled again when a stage replaces it (e.g. QANN → SNN).
        """
        if not self.hparams.torch_compile:
            return self.teacher, self.student
        if self._compiled is None:
            teacher = torch.compile(self.teacher, options={"freezing": True})
            self._compiled = teacher, torch.compile(self.student)
        elif self._compiled[1]._orig_mod is not self.student:
            self._compiled = self._compiled[0], torch.compile(self.student)
        return self._compiled

    def on_train_end(self) -> None:
        self._compiled = None
