"""The accuracies a distillation logs on its validation and test splits: the student's top-1
after every step and top-5, for each ``T`` of the schedule, and the teacher's top-1.

Logged at the end of each epoch as ``{split}/top1_t{t}``, ``{split}/top5``,
``{split}/teacher_top1``, ``{split}/stage`` and ``{split}/top1`` (after the last step); on
validation also ``val/top1_last_stage``, what checkpoints are chosen on.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from .metrics import StepAccuracy

__all__ = ["EvalMetrics", "StepAccuracyLogging"]

SPLITS = ("val", "test")


class EvalMetrics(nn.Module):
    """The accuracies of one split, as torchmetrics (summed over DDP ranks when computed).

    Args:
        classes: classifier outputs (top-5 becomes top-``min(5, classes)``).
        steps: every ``T`` the student runs with in the schedule (1 for a QANN).
    """

    def __init__(self, classes: int, steps: Iterable[int]) -> None:
        super().__init__()
        top5 = min(5, classes)
        steps = sorted(set(steps))
        self.top1 = nn.ModuleDict({f"T{t}": StepAccuracy(t, top_k=1) for t in steps})
        self.top5 = nn.ModuleDict({f"T{t}": StepAccuracy(t, top_k=top5) for t in steps})
        self.teacher_top1 = MulticlassAccuracy(classes, average="micro")

    def update(self, outputs: Tensor, teacher_logits: Tensor, target: Tensor) -> None:
        """One batch: student ``outputs`` ``(T, B, classes)``, teacher logits ``(B, classes)``."""
        steps = outputs.shape[0]
        self.top1[f"T{steps}"].update(outputs, target)
        self.top5[f"T{steps}"].update(outputs, target)
        self.teacher_top1.update(teacher_logits, target)

    def compute(self, split: str, steps: int) -> dict[str, Tensor]:
        """``{split}/top1_t{t}`` for ``t = 1..T``, ``{split}/top5`` (after ``T`` steps) and
        ``{split}/teacher_top1``; empty when nothing at ``T = steps`` was measured."""
        top1 = self.top1[f"T{steps}"]
        if not top1.update_count:
            return {}
        # torchmetrics squeezes one-element results: (T,) again
        acc1 = top1.compute().reshape(-1)
        acc5 = self.top5[f"T{steps}"].compute().reshape(-1)
        values = {f"{split}/top1_t{t + 1}": acc for t, acc in enumerate(acc1)}
        values[f"{split}/top5"] = acc5[-1]
        values[f"{split}/teacher_top1"] = self.teacher_top1.compute()
        return values

    def reset(self) -> None:
        for metric in (*self.top1.values(), *self.top5.values(), self.teacher_top1):
            metric.reset()


class StepAccuracyLogging:
    """The logging half of :class:`~multispike.distill.module.StepwiseDistillation`.

    The host (a LightningModule) calls :meth:`build_eval_metrics` in ``setup`` and
    ``eval_metrics[split].update`` in its steps; it has ``timesteps``, ``stages`` and
    ``stage_index``.
    """

    SELECTION_KEY = "val/top1_last_stage"

    eval_metrics: nn.ModuleDict

    def build_eval_metrics(self, classes: int) -> None:
        """One :class:`EvalMetrics` per split, for every ``T`` of the schedule."""
        steps = [s.timesteps if s.student == "snn" else 1 for s in self.stages]
        self.eval_metrics = nn.ModuleDict({split: EvalMetrics(classes, steps) for split in SPLITS})

    def log_step_accuracy(self, split: str) -> None:
        """Log what ``split`` measured at the present ``T`` and the stage; then reset."""
        metrics, steps = self.eval_metrics[split], self.timesteps or 1
        values = metrics.compute(split, steps)
        if not values:
            return
        top1 = values[f"{split}/top1_t{steps}"]
        values[f"{split}/stage"] = torch.tensor(float(max(self.stage_index, 0)))
        self.log_dict(values, prog_bar=False)
        self.log(f"{split}/top1", top1, prog_bar=True)
        if split == "val":  # what checkpoints are chosen on: only the last stage competes
            last = self.stage_index == len(self.stages) - 1
            self.log(self.SELECTION_KEY, top1 if last else torch.tensor(-1.0))
        metrics.reset()

    def on_validation_epoch_end(self) -> None:
        self.log_step_accuracy("val")

    def on_test_epoch_end(self) -> None:
        self.log_step_accuracy("test")
