"""Teachers beyond a single pretrained model: one trained on the spot, or several averaged.

:func:`trained_teacher` is a teacher factory a recipe can name: it loads the weights file
when it exists and otherwise trains the timm/zoo model with plain cross-entropy
(:class:`Classifier`) and saves the weights there (safetensors), so later runs reuse them.
:class:`TeacherEnsemble` makes several classifiers one teacher by averaging their logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from multispike.convert.calibrate import batch_inputs

from .students import timm_model

__all__ = ["Classifier", "TeacherEnsemble", "trained_teacher"]


class Classifier(L.LightningModule):
    """Cross-entropy training of a plain classifier (SGD, Nesterov, cosine learning rate).

    Args:
        model: the network to train (trained in place).
        num_classes: classes, for the accuracy metric.
        lr: peak learning rate.
        weight_decay: weight decay.
    """

    def __init__(
        self, model: nn.Module, num_classes: int, lr: float = 0.05, weight_decay: float = 5e-4
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        self.val_top1 = MulticlassAccuracy(num_classes, average="micro")

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def training_step(self, batch, batch_idx: int) -> Tensor:
        loss = F.cross_entropy(self(batch_inputs(batch)), batch[1])
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        self.val_top1(self(batch_inputs(batch)), batch[1])
        self.log("val/top1", self.val_top1, on_epoch=True, prog_bar=True)

    def configure_optimizers(self) -> dict:
        opt = torch.optim.SGD(
            self.parameters(), lr=self.hparams.lr, momentum=0.9, nesterov=True,
            weight_decay=self.hparams.weight_decay,
        )  # fmt: skip
        total = max(1, int(self.trainer.estimated_stepping_batches))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, self.hparams.lr, total_steps=total)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def trained_teacher(
    model_name: str,
    data: L.LightningDataModule,
    weights: str,
    max_epochs: int = 30,
    lr: float = 0.05,
    num_classes: int | None = None,
    in_chans: int | None = None,
    seed: int = 0,
) -> nn.Module:
    """A teacher loaded from ``weights``, or trained on ``data`` and saved there first.

    Args:
        model_name: timm/zoo registry name, e.g. ``"ms_resnet20"``.
        data: a DataModule with ``num_classes`` (e.g. ``DigitsDataModule``).
        weights: ``.safetensors`` file to load, or to write after training.
        max_epochs: training epochs when the file does not exist.
        lr: peak learning rate of that training.
        num_classes: classifier size (default: ``data.num_classes``).
        in_chans: input channels (default: ``data.input_shape[0]`` when known).
        seed: seed of the initialisation and the data order.
    """
    path = Path(weights)
    classes = num_classes or data.num_classes
    shape = getattr(data, "input_shape", None)
    chans = in_chans or (shape[0] if shape else None)
    if path.is_file():
        return timm_model(model_name, checkpoint=str(path), num_classes=classes, in_chans=chans)
    if path.suffix != ".safetensors":
        raise ValueError(f"teacher weights must be a .safetensors file, got {weights!r}")
    L.seed_everything(seed, verbose=False)
    model = timm_model(model_name, num_classes=classes, in_chans=chans)
    trainer = L.Trainer(
        max_epochs=max_epochs, logger=False, enable_checkpointing=False, enable_model_summary=False,
        accelerator="auto", devices=1,
    )  # fmt: skip
    trainer.fit(Classifier(model, classes, lr=lr), datamodule=data)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return model.eval()


class TeacherEnsemble(nn.Module):
    """Several classifiers as one teacher: their mean logits ``z = (1/M) Σ_m z_m``.

    The distillation target ``softmax(z/τ)`` is then the normalised geometric mean of the
    members' tempered distributions. Members see the same input and must agree on the
    number of classes; give members that share the input normalisation.

    Args:
        members: the classifiers (e.g. ``timm_model("ms_resnet56", pretrained=True)``).
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(members) == 0:
            raise ValueError("TeacherEnsemble needs at least one member model")
        self.members = nn.ModuleList(members)

    def forward(self, x: Tensor) -> Tensor:
        logits = [member(x) for member in self.members]
        shapes = {tuple(z.shape) for z in logits}
        if len(shapes) > 1:
            named = ", ".join(f"members.{i}: {tuple(z.shape)}" for i, z in enumerate(logits))
            raise ValueError(
                f"TeacherEnsemble members disagree on their output shape ({named}): give "
                "members with the same classifier"
            )
        return torch.stack(logits).mean(0)
