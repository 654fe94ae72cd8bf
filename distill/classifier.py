"""Cross-entropy training from scratch: the system of ``multispike train``.

For data without pretrained weights (the embedded digits, a wide CIFAR network) the ANN is
trained first; its weights then feed ``multispike convert --checkpoint`` and the distillation
teacher. With ``levels`` the network is trained quantized from the first step (QAT from
scratch): every ReLU is a multi-level quantizer with a learned per-channel λ, BatchNorm stays
unfolded during training, and the result is saved as a QANN model folder whose SNN at
``T = 1`` is that QANN bit for bit.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from ..convert import calibrate
from ..convert.calibrate import batch_inputs, quantizers
from ..zoo import CheckpointError

__all__ = ["MIN_THRESHOLD", "Classifier", "triangle"]

MIN_THRESHOLD = 1e-2  # the smallest λ QAT keeps (thresholds follow BatchNorm, so ~1 to 4)


class Classifier(L.LightningModule):
    """Cross-entropy training of a classifier: SGD with Nesterov momentum.

    Schedules (per step): ``onecycle`` (PyTorch's one-cycle) or ``triangle`` (airbench's: the
    learning rate rises linearly from 0.2·lr to lr over the first ``warmup`` of the steps, then
    falls linearly to 0.07·lr).

    Before the first step the model is set up from the training data: a model with an
    ``init_from_data(images)`` method (the zoo's airbench nets: patch whitening) gets
    ``init_images`` normalised training images; with ``levels`` the model is then quantized
    (:func:`~multispike.convert.calibrate` with BatchNorm kept, λ from the 99.9th percentile
    of its activations after BatchNorm statistics of a few batches). A resumed fit rebuilds
    the same structure and loads its weights from the checkpoint.

    Args:
        model: the network to train, e.g.
            ``multispike.zoo.load_model("ms_resnet20", num_classes=10, in_chans=1)``; on the
            command line ``--model.model multispike.zoo.load_model --model.model.model_name
            ms_resnet20``.
        lr: peak learning rate.
        weight_decay: weight decay (PyTorch's, coupled to the learning rate).
        label_smoothing: cross-entropy label smoothing.
        momentum: Nesterov momentum.
        schedule: ``onecycle`` or ``triangle``.
        warmup: fraction of the steps spent rising (``triangle``).
        bias_lr_scale: learning rate multiplier of BatchNorm shifts (their weight decay is
            divided by it, so the decay per step stays); airbench uses 64.
        threshold_lr_scale: learning rate multiplier of the quantizers' λ (QAT); λ get no
            weight decay and are kept ≥ ``MIN_THRESHOLD`` after every step (a λ driven to 0 or
            below silences or inverts its channel).
        init_images: training images given to ``init_from_data`` and to QAT calibration.
        levels: ``L`` for quantization-aware training from scratch (``None``: a float ANN).
        per_channel: one λ per channel (QAT).
        torch_compile: run the training steps' forward through ``torch.compile`` (validation
            and test stay eager; the saved weights are the same tensors).
    """

    def __init__(
        self,
        model: nn.Module,
        lr: float = 0.05,
        weight_decay: float = 5e-4,
        label_smoothing: float = 0.0,
        momentum: float = 0.9,
        schedule: Literal["onecycle", "triangle"] = "onecycle",
        warmup: float = 0.23,
        bias_lr_scale: float = 1.0,
        threshold_lr_scale: float = 1.0,
        init_images: int = 5000,
        levels: int | None = None,
        per_channel: bool = True,
        torch_compile: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["model"])
        if levels is not None and not 1 <= levels <= 255:
            raise ValueError(f"levels must be in 1..255 (or None for a float ANN), got {levels}")
        if not 0 <= warmup < 1:
            raise ValueError(f"warmup must be a fraction in [0, 1), got {warmup}")
        self.model = model
        self._source = (model,)  # the float ANN (a tuple: not a second registered submodule)
        self.top1 = nn.ModuleDict()  # per split ("fit", "val", "test"), built in setup
        self._compiled: tuple[nn.Module] | None = None

    @property
    def ann(self) -> nn.Module:
        """The float network given (its ``pretrained_cfg`` sets the data normalisation)."""
        return self._source[0]

    def setup(self, stage: str) -> None:
        classes = getattr(self.ann, "num_classes", None) or self.trainer.datamodule.num_classes
        for split in ("fit", "val", "test"):
            self.top1[split] = MulticlassAccuracy(int(classes), average="micro")

    def configure_model(self) -> None:
        """Data-dependent setup before the first step (and before a checkpoint is restored)."""
        self._build_from_data()
        if self.trainer.state.fn == "fit":  # train mode before Lightning's summary counts it
            self.model.train()

    def _build_from_data(self) -> None:
        if self.model is not self.ann:  # quantized already
            return
        datamodule = getattr(self.trainer, "datamodule", None)
        needs_data = hasattr(self.model, "init_from_data") or self.hparams.levels is not None
        if not needs_data or datamodule is None:
            return
        loader = datamodule.calibration_dataloader(self.hparams.init_images)
        batches = [batch_inputs(b).to(self.device) for b in loader]
        if hasattr(self.model, "init_from_data"):
            self.model.init_from_data(torch.cat(batches))
        if self.hparams.levels is not None:
            self.model = _quantized_from_scratch(self.model, batches, self.hparams)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a checkpoint of another quantization (levels or per-channel setting)."""
        saved = checkpoint.get("hyper_parameters", {})
        keys = ("levels", "per_channel") if self.hparams.levels is not None else ("levels",)
        for key in keys:
            if saved.get(key, self.hparams[key]) != self.hparams[key]:
                where = getattr(self.trainer, "ckpt_path", None) or "the checkpoint"
                raise CheckpointError(
                    f"{where} was trained with {key}={saved[key]!r}, this run has "
                    f"{key}={self.hparams[key]!r}: resume with the same --model.{key}, or start "
                    "a new run"
                )

    def on_fit_start(self) -> None:
        """Train in train mode (BatchNorm statistics, dropout), however the model was handed
        over: Lightning keeps each module's mode, and ``load_model`` returns eval mode."""
        self.train()

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        if self.hparams.torch_compile and self._compiled is None:
            self._compiled = (torch.compile(self.model),)
        model = self._compiled[0] if self._compiled else self.model
        logits = model(batch_inputs(batch))
        loss = F.cross_entropy(logits, batch[1], label_smoothing=self.hparams.label_smoothing)
        self.top1["fit"](logits.detach(), batch[1])
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log("train/top1", self.top1["fit"], on_step=False, on_epoch=True)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Keep every λ ≥ ``MIN_THRESHOLD`` (projected gradient descent)."""
        with torch.no_grad():
            for quantizer in self._quantizers():
                quantizer.threshold.clamp_(min=MIN_THRESHOLD)

    def _quantizers(self) -> list[nn.Module]:
        return list(quantizers(self.model).values()) if self.model is not self.ann else []

    def _eval_step(self, batch: Any, split: str) -> None:
        logits = self(batch_inputs(batch))
        self.log(f"{split}/loss", F.cross_entropy(logits, batch[1]), sync_dist=True)
        self.top1[split](logits, batch[1])
        self.log(f"{split}/top1", self.top1[split], on_epoch=True, prog_bar=True)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def configure_optimizers(self) -> dict:
        hp = self.hparams
        shifts = {
            id(p) for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            for p in m.parameters(recurse=False) if p.requires_grad
        }  # fmt: skip
        thresholds = {id(q.threshold) for q in self._quantizers()}
        trained = [p for p in self.model.parameters() if p.requires_grad]
        plain = [p for p in trained if id(p) not in shifts | thresholds]
        groups = [
            {"params": plain},
            {
                "params": [p for p in trained if id(p) in shifts],
                "lr": hp.lr * hp.bias_lr_scale,
                "weight_decay": hp.weight_decay / hp.bias_lr_scale,
            },
            {
                "params": [p for p in trained if id(p) in thresholds],
                "lr": hp.lr * hp.threshold_lr_scale,
                "weight_decay": 0.0,
            },
        ]
        opt = torch.optim.SGD(
            [g for g in groups if g["params"]], lr=hp.lr, momentum=hp.momentum, nesterov=True,
            weight_decay=hp.weight_decay,
        )  # fmt: skip
        total = max(1, int(self.trainer.estimated_stepping_batches))
        if hp.schedule == "onecycle":
            peaks = [g["lr"] for g in opt.param_groups]
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, peaks, total_steps=total)
        else:
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda step: triangle(step, total, hp.warmup)
            )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def triangle(step: int, total: int, warmup: float, start: float = 0.2, end: float = 0.07) -> float:
    """airbench's learning-rate factor: ``start → 1`` linearly over the first ``warmup·total``
    steps, then ``1 → end`` linearly until ``total``."""
    peak = max(1, math.floor(warmup * total))
    if step < peak:
        return start + (1 - start) * step / peak
    return 1 + (end - 1) * min(1.0, (step - peak) / max(1, total - peak))


@torch.no_grad()
def _quantized_from_scratch(model: nn.Module, batches: list[torch.Tensor], hp: Any) -> nn.Module:
    """The model's QANN for training: BatchNorm kept, λ from data after BN statistics."""
    mode = model.training
    model.train()
    for x in batches[:8]:  # running statistics of the data, not of the initialisation
        model(x)
    model.train(mode)
    qann = calibrate(
        model, batches, hp.levels, per_channel=hp.per_channel, fold=False, progress=False
    )
    trained = {name: p.requires_grad for name, p in model.named_parameters()}
    for name, param in qann.named_parameters():  # frozen ones (whitening, BN scales) stay
        param.requires_grad_(trained.get(name, True))
    cfg = getattr(model, "pretrained_cfg", None) or {}
    if cfg.get("architecture"):
        qann.meta["multispike"]["architecture"] = {
            "model_name": cfg["architecture"],
            "model_kwargs": {
                "num_classes": int(getattr(model, "num_classes", cfg.get("num_classes", 0))),
                "in_chans": int(qann.meta["multispike"]["input_shape"][0]),
            },
        }
    return qann
