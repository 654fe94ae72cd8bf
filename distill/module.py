"""The step-wise distillation system: a frozen teacher trains a QANN or SNN student.

Loss (docs/method.md §5, :func:`~multispike.distill.losses.stepwise_distillation_loss`):

    L = CE( mean_t o_t , y ) + α · (1/T) · Σ_t τ² · KL( softmax(z/τ) ‖ softmax(o_t/τ) )

Thresholds λ learn with the weights: straight-through ``floor`` in the QANN, straight
through the neuron in the SNN, back-propagation through time over ``T``. A schedule of
:class:`~multispike.distill.students.Stage` s runs quantization-aware training, conversion,
SNN distillation and a curriculum of fewer steps or spikes in one fit, on one set of
parameters; every checkpoint records its stage, so any stage resumes with ``ckpt_path``.

The system reads top-down here; its other concerns have files of their own: the stage
schedule (:mod:`.schedule`), train and eval modes and ``torch.compile`` (:mod:`.training`),
the optimizer (:mod:`.optim`), the accuracies it logs (:mod:`.step_accuracy`), checkpoints
(:mod:`.checkpoints`) and the students (:mod:`.students`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any, Literal

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from ..convert import CalibrationOptions, SpikingNetwork, model_device
from ..convert.calibrate import batch_inputs
from .checkpoints import StudentCheckpoints
from .frames import calibration_frames, student_input, teacher_logits
from .losses import stepwise_distillation_loss
from .mixing import BatchMix
from .optim import build_optimizer, warmup_cosine_scheduler
from .schedule import StageSchedule, check_schedule, default_stage, stages_as_dicts
from .step_accuracy import StepAccuracyLogging
from .students import (
    Stage,
    freeze_batchnorm,
    load_student_weights,
    quantized_student,
    student_input_shape,
)
from .training import TrainingNetworks

__all__ = ["StepwiseDistillation"]


class StepwiseDistillation(
    StageSchedule, TrainingNetworks, StepAccuracyLogging, StudentCheckpoints, L.LightningModule
):
    """Train a QANN/SNN student against a frozen teacher with the step-wise loss.

    The validation split picks the result: ``val/top1_last_stage`` (:attr:`SELECTION_KEY`) is
    the final-step top-1 in the last stage of the schedule and −1 before it, so a checkpoint
    monitored on it holds the network that is deployed, never an earlier stage's.

    Without ``student`` the QANN is calibrated from ``source`` (default: the teacher) in
    :meth:`setup` on the DataModule's training images, then brought to each stage of
    ``stages`` in turn.

    Args:
        teacher: the reference (the ANN, or a QANN); a frozen copy is kept.
        student: a QANN (:func:`~multispike.convert.calibrate`) or
            :class:`~multispike.convert.SpikingNetwork`, trained in place; ``None``: built
            from ``source``.
        source: the ANN the student is calibrated and converted from when ``student`` is
            ``None`` (default: the teacher), e.g. a ResNet-20 distilled from a ResNet-56
            teacher; a frozen copy is kept, so that resuming rebuilds the same student.
        stages: the schedule, :class:`Stage` s or their dicts (default: one stage that keeps
            the given student's kind, or an SNN with ``T = 1`` and ``N = L``).
        calibration: how the student built from ``source`` is calibrated
            (:class:`~multispike.convert.CalibrationOptions`: ``levels``, ``per_channel``,
            ``calibration`` (``percentile``, ``mse`` or ``reconstruct``), ``percentile``,
            ``calibration_images``, ``reconstruct_iterations``; default: its defaults); the
            reconstruction runs on the calibration images, on the ANN's device.
        init_from: a checkpoint of an earlier run whose student weights seed this one.
        input_shape: ``(C, H, W)`` of one student frame, for restoring without data
            (default: from the data, the checkpoint or the teacher's ``pretrained_cfg``).
        student_frames: event data: frames the student sees (``None``: ``min(F, T)``).
        mixup_alpha: MixUp ``Beta(α, α)`` of the training batches (0: off); the teacher
            sees the same mixed images (:class:`~multispike.distill.mixing.BatchMix`).
        cutmix_alpha: CutMix ``α`` (0: off); with both, each batch picks one at random.
        alpha: weight ``α`` of the distillation term.
        tau: temperature ``τ``.
        optimizer: ``"adamw"`` or ``"sgd"`` (momentum, Nesterov). Fine-tuning a converted
            network needs small steps: AdamW at 1e-4 keeps the pretrained accuracy where SGD
            at 1e-3 already lost it on CIFAR-10 ResNet-20 (BENCHMARKS.md).
        lr: peak learning rate (cosine decay to 0 over the fit).
        warmup_steps: optimizer steps of linear warm-up to ``lr`` before the cosine decay
            (for a peak well above 1e-4: fresh AdamW moments take full-size first steps).
        weight_decay: weight decay of weights (thresholds and biases get none).
        momentum: SGD momentum.
        torch_compile: run the training steps' student and teacher through ``torch.compile``
            (the frozen teacher with its weights folded into the graph). Validation, test and
            predict stay eager, so the accuracies logged are those of the network that is
            saved; the compiled student may round a value at a level boundary differently in
            the last bit, which training does not mind. Compiling takes tens of seconds at the
            first step and again at each stage; BENCHMARKS.md has the speed-up.
    """

    def __init__(
        self,
        teacher: nn.Module,
        student: nn.Module | None = None,
        source: nn.Module | None = None,
        stages: list[Stage] | None = None,
        calibration: CalibrationOptions | None = None,
        init_from: str | None = None,
        input_shape: list[int] | None = None,
        student_frames: int | None = None,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        alpha: float = 1.0,
        tau: float = 4.0,
        optimizer: Literal["sgd", "adamw"] = "adamw",
        lr: float = 1e-4,
        warmup_steps: int = 0,
        weight_decay: float = 5e-4,
        momentum: float = 0.9,
        torch_compile: bool = False,
    ) -> None:
        super().__init__()
        # hparams hold plain dicts, so that checkpoints load with torch.load(weights_only=True)
        stages = stages_as_dicts(stages)
        if not isinstance(calibration, CalibrationOptions):  # None, or the dict of a checkpoint
            calibration = CalibrationOptions(**(calibration or {}))
        self.calibration = calibration
        calibration = asdict(calibration)
        self.save_hyperparameters(ignore=["teacher", "student", "source"])
        if alpha < 0 or tau <= 0:
            raise ValueError(f"need alpha >= 0 and tau > 0, got alpha={alpha}, tau={tau}")
        if mixup_alpha < 0 or cutmix_alpha < 0:
            raise ValueError(
                f"need mixup_alpha, cutmix_alpha >= 0, got {mixup_alpha} and {cutmix_alpha}"
            )
        if optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {optimizer!r}")
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        if student is not None and source is not None:
            raise ValueError("pass student= (trained as given) or source= (to convert), not both")
        self.teacher = copy.deepcopy(teacher).eval().requires_grad_(False)
        self.source = None if source is None else copy.deepcopy(source).eval().requires_grad_(False)
        self.student = student
        if student is not None:
            student.requires_grad_(True)  # a student built from a frozen copy trains too
            freeze_batchnorm(student)
        self.stages = [Stage(**s) for s in stages] if stages else [default_stage(student)]
        check_schedule(self.stages)
        self.stage_index = -1
        self.eval_metrics = nn.ModuleDict()  # {split: EvalMetrics}, built in setup
        self.train_top1: MulticlassAccuracy | None = None  # likewise (needs classes)
        self.batch_mix: BatchMix | None = None  # likewise

    # -- the student ------------------------------------------------------------------------
    @property
    def ann(self) -> nn.Module:
        """The ANN the student is converted from: ``source``, else the teacher."""
        return self.teacher if self.source is None else self.source

    @property
    def timesteps(self) -> int | None:
        """``T`` of an SNN student, ``None`` for a QANN."""
        return self.student.timesteps if isinstance(self.student, SpikingNetwork) else None

    def build_student(self, data: Iterable | None, input_shape: list[int] | None) -> None:
        """The QANN of :attr:`ann`, calibrated on ``data`` (structure only without it, or with
        ``init_from``, whose weights it then loads), at the first stage."""
        hp = self.hparams
        calibrate = data is not None and hp.init_from is None
        self.student = quantized_student(
            self.ann, self.calibration, data=data if calibrate else None,
            input_shape=input_shape, progress=False,
        )  # fmt: skip
        self.enter_stage(0)
        if hp.init_from is not None:
            load_student_weights(self.student, hp.init_from)

    def _calibration_data(self) -> Iterable:
        datamodule = getattr(self.trainer, "datamodule", None)
        # the frames of the longest SNN stage, one frame per calibration input
        steps = max((s.timesteps for s in self.stages if s.student == "snn"), default=None)
        images = self.calibration.calibration_images
        return calibration_frames(datamodule, images, self.hparams.student_frames, steps)

    def configure_model(self) -> None:
        """Calibrate the student from the source ANN on the training data, once.

        Lightning's hook for modules built at fit time: callbacks that copy the module, such
        as :class:`~lightning.pytorch.callbacks.EMAWeightAveraging`, call it first. Without a
        trainer (``load_from_checkpoint``) :meth:`on_load_checkpoint` builds the student.
        """
        if self.student is None and self._trainer is not None:
            self.build_student(self._calibration_data(), self.hparams.input_shape)

    def setup(self, stage: str) -> None:
        """Build the student (first time), set the stage, build the metrics."""
        if stage == "fit" and not self.trainer.fast_dev_run:  # a smoke run may stop anywhere
            self.check_reaches_last_stage(self.trainer.max_epochs)
        self.configure_model()
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        self.enter_stage(self.stage_at(epoch))
        classes = self._num_classes()
        self.build_eval_metrics(classes)
        self.train_top1 = MulticlassAccuracy(classes, average="micro")
        if self.hparams.mixup_alpha or self.hparams.cutmix_alpha:
            self.batch_mix = BatchMix(classes, self.hparams.mixup_alpha, self.hparams.cutmix_alpha)

    def _num_classes(self) -> int:
        x = torch.zeros(1, *student_input_shape(self.student), device=model_device(self.teacher))
        with torch.no_grad():
            classes = int(self.teacher(x).shape[-1])
            source_classes = classes if self.source is None else int(self.source(x).shape[-1])
        if source_classes != classes:
            raise ValueError(
                f"the teacher has {classes} classes but the source ANN the student is converted "
                f"from has {source_classes}: pass a source= with the teacher's classifier"
            )
        return classes

    # -- forward and steps --------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        """Student outputs ``(T, B, classes)`` for images or ``(B, F, C, H, W)`` frames."""
        return self._student_outputs(self.student, x)

    def _student_outputs(self, student: nn.Module, x: Tensor) -> Tensor:
        out = student(student_input(x, self.hparams.student_frames, self.timesteps))
        return out if isinstance(self.student, SpikingNetwork) else out.unsqueeze(0)

    def _shared_step(self, batch: Any, train: bool = False) -> tuple[Tensor, Tensor, Tensor, Any]:
        """Outputs, teacher logits, labels and loss; ``train``: mixed batch, compiled networks."""
        x, y = batch_inputs(batch), batch[1]
        teacher, student = self.training_networks() if train else (self.teacher, self.student)
        if train and self.batch_mix is not None:
            x, y = self.batch_mix(x, y)
        with torch.no_grad():
            z = teacher_logits(teacher, x)
        out = self._student_outputs(student, x)
        loss = stepwise_distillation_loss(out, z, y, self.hparams.alpha, self.hparams.tau)
        return out, z, y, loss

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        out, _, y, loss = self._shared_step(batch, train=True)
        # mixed labels: accuracy against the larger share
        self.train_top1(out.detach().mean(0), y.argmax(-1) if y.dim() == 2 else y)
        self.log("train/loss", loss.total, on_step=True, on_epoch=True, prog_bar=True)
        self.log_dict({"train/ce": loss.ce, "train/kd": loss.kd}, on_step=False, on_epoch=True)
        self.log("train/top1", self.train_top1, on_step=False, on_epoch=True)
        return loss.total

    def _eval_step(self, batch: Any, split: str) -> None:
        out, z, y, loss = self._shared_step(batch)
        self.eval_metrics[split].update(out, z, y)
        self.log(f"{split}/loss", loss.total, on_epoch=True, sync_dist=True, prog_bar=True)
        self.log_dict(
            {f"{split}/ce": loss.ce, f"{split}/kd": loss.kd}, on_epoch=True, sync_dist=True
        )

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self(batch_inputs(batch))

    # -- optimisation ---------------------------------------------------------------------------
    def configure_optimizers(self) -> dict:
        hp = self.hparams
        opt = build_optimizer(self.student, hp.optimizer, hp.lr, hp.weight_decay, hp.momentum)
        total = self.trainer.estimated_stepping_batches
        sched = warmup_cosine_scheduler(opt, hp.warmup_steps, total)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
