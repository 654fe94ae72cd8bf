"""The step-wise distillation system: a frozen teacher trains a QANN or SNN student.

Loss (docs/method.md §5, :func:`~multispike.distill.losses.stepwise_distillation_loss`):

    L = CE( mean_t o_t , y ) + α · (1/T) · Σ_t τ² · KL( softmax(z/τ) ‖ softmax(o_t/τ) )

Thresholds λ learn with the weights: straight-through ``floor`` in the QANN, straight
through the neuron in the SNN, back-propagation through time over ``T``. A schedule of
:class:`~multispike.distill.students.Stage` s runs quantization-aware training, conversion,
SNN distillation and a curriculum of fewer steps or spikes in one fit, on one set of
parameters; every checkpoint records its stage, so any stage resumes with ``ckpt_path``.
"""

from __future__ import annotations

import copy
import functools
import math
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.warnings import PossibleUserWarning
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from ..convert import SpikingNetwork, model_device
from ..convert.calibrate import batch_inputs
from .frames import student_input, teacher_logits
from .losses import stepwise_distillation_loss
from .metrics import StepAccuracy
from .mixing import BatchMix
from .students import Stage, apply_stage, freeze_batchnorm, load_student_weights, quantized_student

__all__ = ["StepwiseDistillation"]


class StepwiseDistillation(L.LightningModule):
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
        levels: ``L`` of the student built from ``source``.
        per_channel: per-channel thresholds for that student.
        calibration: initial thresholds, ``"percentile"`` or ``"mse"``.
        percentile: the percentile for ``calibration="percentile"``.
        calibration_images: training images used to calibrate.
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

    SELECTION_KEY = "val/top1_last_stage"

    def __init__(
        self,
        teacher: nn.Module,
        student: nn.Module | None = None,
        source: nn.Module | None = None,
        stages: list[Stage] | None = None,
        levels: int = 4,
        per_channel: bool = False,
        calibration: Literal["percentile", "mse"] = "percentile",
        percentile: float = 99.9,
        calibration_images: int = 1024,
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
        stages = [asdict(s) if isinstance(s, Stage) else dict(s) for s in stages or []] or None
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
        self.stages = [Stage(**s) for s in stages] if stages else [_default_stage(student)]
        _check_schedule(self.stages)
        self.stage_index = -1
        self.val_steps = nn.ModuleDict()
        self.test_steps = nn.ModuleDict()
        self.train_top1: MulticlassAccuracy | None = None  # built in setup (needs classes)
        self.batch_mix: BatchMix | None = None  # likewise
        self.teacher_top1 = nn.ModuleDict()
        # (compiled teacher, compiled student) with torch_compile; a tuple, so that the
        # compiled wrappers are not registered as submodules (no second state_dict entry)
        self._compiled: tuple[nn.Module, nn.Module] | None = None

    # -- student construction and schedule ---------------------------------------------------
    @property
    def stage(self) -> Stage:
        """The stage the student is in."""
        return self.stages[max(self.stage_index, 0)]

    @property
    def ann(self) -> nn.Module:
        """The ANN the student is converted from: ``source``, else the teacher."""
        return self.teacher if self.source is None else self.source

    @property
    def timesteps(self) -> int | None:
        """``T`` of an SNN student, ``None`` for a QANN."""
        return self.student.timesteps if isinstance(self.student, SpikingNetwork) else None

    def stage_at(self, epoch: int) -> int:
        """Index of the stage that ``epoch`` belongs to."""
        end = 0
        for index, stage in enumerate(self.stages):
            if stage.epochs is None:
                return index
            end += stage.epochs
            if epoch < end:
                return index
        return len(self.stages) - 1

    def enter_stage(self, index: int) -> None:
        """Apply stages up to ``index`` to the student (no-op for stages already entered)."""
        while self.stage_index < index:
            self.stage_index += 1
            self.student = apply_stage(self.student, self.stages[self.stage_index])
            rank_zero_info(f"distillation stage {self.stage_index}: {self.stage}")

    def _student_input_shape(self) -> list[int] | None:
        if isinstance(self.student, SpikingNetwork):
            return list(self.student.input_shape)
        meta = getattr(self.student, "meta", {}).get("multispike", {})
        return meta.get("input_shape")

    def _build_student(self, data: Iterable | None, input_shape: list[int] | None) -> None:
        hp = self.hparams
        calibrate = data is not None and hp.init_from is None
        self.student = quantized_student(
            self.ann, hp.levels, data=data if calibrate else None,
            per_channel=hp.per_channel, input_shape=input_shape, method=hp.calibration,
            percentile=hp.percentile, progress=False,
        )  # fmt: skip
        self.enter_stage(0)
        if hp.init_from is not None:
            load_student_weights(self.student, hp.init_from)

    def _calibration_data(self) -> Iterable:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None:
            raise ValueError(
                "StepwiseDistillation builds its student from the source ANN on the training "
                "data: fit with a DataModule, or pass student=..."
            )
        images = self.hparams.calibration_images
        # the frames of the longest SNN stage, one frame per calibration input
        steps = max((s.timesteps for s in self.stages if s.student == "snn"), default=None)
        if hasattr(datamodule, "calibration_dataloader"):
            loader = datamodule.calibration_dataloader(num_images=images)
            return _StudentFrames(loader, self.hparams.student_frames, steps)
        loader = datamodule.train_dataloader()
        batches = math.ceil(images / (loader.batch_size or 1))
        return _StudentFrames(loader, self.hparams.student_frames, steps, batches)

    def configure_model(self) -> None:
        """Calibrate the student from the source ANN on the training data, once.

        Lightning's hook for modules built at fit time: callbacks that copy the module, such
        as :class:`~lightning.pytorch.callbacks.EMAWeightAveraging`, call it first. Without a
        trainer (``load_from_checkpoint``) :meth:`on_load_checkpoint` builds the student.
        """
        if self.student is None and self._trainer is not None:
            self._build_student(self._calibration_data(), self.hparams.input_shape)

    def setup(self, stage: str) -> None:
        """Build the student (first time), set the stage, build the metrics."""
        self.configure_model()
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        self.enter_stage(self.stage_at(epoch))
        classes = self._num_classes()
        top5 = min(5, classes)
        steps = sorted({s.timesteps if s.student == "snn" else 1 for s in self.stages})
        for metrics in (self.val_steps, self.test_steps):
            for t in steps:
                metrics[f"T{t}_top1"] = StepAccuracy(t, top_k=1)
                metrics[f"T{t}_top5"] = StepAccuracy(t, top_k=top5)
        self.train_top1 = MulticlassAccuracy(classes, average="micro")
        if self.hparams.mixup_alpha or self.hparams.cutmix_alpha:
            self.batch_mix = BatchMix(classes, self.hparams.mixup_alpha, self.hparams.cutmix_alpha)
        self.teacher_top1 = nn.ModuleDict(
            {split: MulticlassAccuracy(classes, average="micro") for split in ("val", "test")}
        )

    def _num_classes(self) -> int:
        x = torch.zeros(1, *self._student_input_shape(), device=model_device(self.teacher))
        with torch.no_grad():
            classes = int(self.teacher(x).shape[-1])
            source_classes = classes if self.source is None else int(self.source(x).shape[-1])
        if source_classes != classes:
            raise ValueError(
                f"the teacher has {classes} classes but the source ANN the student is converted "
                f"from has {source_classes}: pass a source= with the teacher's classifier"
            )
        return classes

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

    def on_train_epoch_start(self) -> None:
        self.enter_stage(self.stage_at(self.current_epoch))

    def on_train_end(self) -> None:
        self._compiled = None

    def _training_networks(self) -> tuple[nn.Module, nn.Module]:
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

    def train(self, mode: bool = True) -> StepwiseDistillation:
        """Switch modes; the teacher, the source and unfoldable BatchNorms stay in eval mode."""
        super().train(mode)
        self.teacher.eval()
        if self.source is not None:
            self.source.eval()
        if self.student is not None:
            freeze_batchnorm(self.student)
        return self

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
        teacher, student = self._training_networks() if train else (self.teacher, self.student)
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
        metrics = self.val_steps if split == "val" else self.test_steps
        steps = out.shape[0]
        metrics[f"T{steps}_top1"].update(out, y)
        metrics[f"T{steps}_top5"].update(out, y)
        self.teacher_top1[split].update(z, y)
        self.log(f"{split}/loss", loss.total, on_epoch=True, sync_dist=True, prog_bar=True)
        self.log_dict(
            {f"{split}/ce": loss.ce, f"{split}/kd": loss.kd}, on_epoch=True, sync_dist=True
        )

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def _log_step_accuracy(self, split: str) -> None:
        metrics = self.val_steps if split == "val" else self.test_steps
        steps = self.timesteps or 1
        top1 = metrics[f"T{steps}_top1"]
        if not top1.update_count:
            return
        # torchmetrics squeezes one-element results: (T,) again
        acc1 = top1.compute().reshape(-1)
        acc5 = metrics[f"T{steps}_top5"].compute().reshape(-1)
        values = {f"{split}/top1_t{t + 1}": acc for t, acc in enumerate(acc1)}
        values[f"{split}/top5"] = acc5[-1]
        values.update({f"{split}/teacher_top1": self.teacher_top1[split].compute()})
        values[f"{split}/stage"] = torch.tensor(float(max(self.stage_index, 0)))
        self.log_dict(values, prog_bar=False)
        self.log(f"{split}/top1", acc1[-1], prog_bar=True)
        if split == "val":  # what checkpoints are chosen on: only the last stage competes
            last = self.stage_index == len(self.stages) - 1
            self.log(self.SELECTION_KEY, acc1[-1] if last else torch.tensor(-1.0))
        for metric in (*metrics.values(), self.teacher_top1[split]):
            metric.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_step_accuracy("val")

    def on_test_epoch_end(self) -> None:
        self._log_step_accuracy("test")

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self(batch_inputs(batch))

    # -- optimisation and checkpoints ---------------------------------------------------------
    def configure_optimizers(self) -> dict:
        hp = self.hparams
        decay, no_decay = [], []
        for name, param in self.student.named_parameters():
            if param.requires_grad:
                plain = name.endswith("threshold") or param.dim() <= 1
                (no_decay if plain else decay).append(param)
        groups = [
            {"params": decay, "weight_decay": hp.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        if hp.optimizer == "sgd":
            opt = torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum, nesterov=True)
        else:
            opt = torch.optim.AdamW(groups, lr=hp.lr)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        if hp.warmup_steps >= total:
            raise ValueError(
                f"warmup_steps={hp.warmup_steps} leaves no step of the {total} in this fit for "
                "the cosine decay: lower warmup_steps or train longer"
            )
        factor = functools.partial(warmup_cosine, warmup=hp.warmup_steps, total=total)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def load_state_dict(
        self, state_dict: dict[str, Any], strict: bool = True, assign: bool = False
    ):
        """Load student weights in either layout, QANN (``student.*``) or SNN
        (``student.net.*``): a checkpoint written under weight averaging holds the averaged
        weights in the layout the student had when the average was copied (before the first
        stage converted it), the current weights in the present one."""
        if self.student is not None:
            own = set(self.state_dict())
            snn = isinstance(self.student, SpikingNetwork)

            def present(key: str) -> str:
                if key in own or not key.startswith("student."):
                    return key
                rest = key.removeprefix("student.").removeprefix("net.")
                return f"student.net.{rest}" if snn else f"student.{rest}"

            state_dict = {present(k): v for k, v in state_dict.items()}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["multispike"] = {
            "stage_index": max(self.stage_index, 0),
            "input_shape": self._student_input_shape(),
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
            self._build_student(None, self.hparams.input_shape or info["input_shape"])
        if info["stage_index"] < self.stage_index:
            raise ValueError(
                f"checkpoint is at stage {info['stage_index']} but the student is already at "
                f"stage {self.stage_index}"
            )
        self.enter_stage(info["stage_index"])


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """The learning-rate factor at ``step``: ``(step + 1) / warmup`` while ``step < warmup``,
    then ``½ (1 + cos(π (step − warmup) / (total − warmup)))`` (1 at the peak, 0 at ``total``).
    """
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / (total - warmup)))


def _default_stage(student: nn.Module | None) -> Stage:
    if isinstance(student, SpikingNetwork):
        return Stage("snn", timesteps=student.timesteps)
    return Stage("qann") if student is not None else Stage("snn")


def _check_schedule(stages: list[Stage]) -> None:
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


class _StudentFrames:
    """Re-iterable view of a loader yielding the student's single-frame inputs (calibration)."""

    def __init__(self, loader: Iterable, frames: int | None, timesteps: int | None,
                 limit: int | None = None) -> None:  # fmt: skip
        self.loader, self.frames, self.timesteps, self.limit = loader, frames, timesteps, limit

    def __iter__(self) -> Iterator[Tensor]:
        for index, batch in enumerate(self.loader):
            if self.limit is not None and index >= self.limit:
                return
            x = student_input(batch_inputs(batch), self.frames, self.timesteps)
            yield x.flatten(0, 1) if x.dim() == 5 else x
