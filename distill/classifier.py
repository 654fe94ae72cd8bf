"""Cross-entropy training of an ANN from scratch: the system of ``multispike train``.

For data without pretrained weights (the embedded digits, a CIFAR VGG-16) the ANN is trained
first; its weights then feed ``multispike convert --checkpoint`` and the distillation
teacher.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from multispike.convert.calibrate import batch_inputs

__all__ = ["Classifier"]


class Classifier(L.LightningModule):
    """Cross-entropy training of a classifier: SGD with Nesterov momentum, one-cycle schedule.

    Args:
        model: the network to train (trained in place), e.g.
            ``multispike.zoo.load_model("ms_resnet20", num_classes=10, in_chans=1)``.
        lr: peak learning rate.
        weight_decay: weight decay.
        label_smoothing: cross-entropy label smoothing.
        torch_compile: run the training steps' forward through ``torch.compile`` (validation
            and test stay eager; the saved weights are the same tensors).
    """

    def __init__(
        self,
        model: nn.Module,
        lr: float = 0.05,
        weight_decay: float = 5e-4,
        label_smoothing: float = 0.0,
        torch_compile: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        self.top1 = nn.ModuleDict()  # per split ("fit", "val", "test"), built in setup
        # a tuple, so that the compiled wrapper is not a second registered submodule
        self._compiled: tuple[nn.Module] | None = None

    @property
    def ann(self) -> nn.Module:
        """The network being trained (its ``pretrained_cfg`` sets the data normalisation)."""
        return self.model

    def setup(self, stage: str) -> None:
        classes = getattr(self.model, "num_classes", None) or self.trainer.datamodule.num_classes
        for split in ("fit", "val", "test"):
            self.top1[split] = MulticlassAccuracy(int(classes), average="micro")

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
        opt = torch.optim.SGD(
            self.parameters(), lr=self.hparams.lr, momentum=0.9, nesterov=True,
            weight_decay=self.hparams.weight_decay,
        )  # fmt: skip
        total = max(1, int(self.trainer.estimated_stepping_batches))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, self.hparams.lr, total_steps=total)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
