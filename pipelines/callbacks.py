"""Lightning callbacks that connect distillation to the rest of the pipeline.

:class:`SaveStudent` writes the distilled student of a
:class:`~multispike.distill.module.StepwiseDistillation` fit as a model directory
(:func:`multispike.pipelines.serialize.save`), the input of ``multispike evaluate
--model-dir`` and ``multispike export``::

    trainer = L.Trainer(callbacks=[SaveStudent("runs/digits/student")])
    trainer.fit(system, datamodule)
    snn = multispike.pipelines.load("runs/digits/student")  # == system.student, bit for bit

``multispike distill`` always has it (``--save_student.dirpath DIR``, ``.model_name``,
``.model_kwargs``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import timm
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from . import serialize

__all__ = ["SaveStudent"]


class SaveStudent(L.Callback):
    """At the end of a fit, save ``pl_module.student`` with :func:`serialize.save`.

    The name and kwargs are resolved when the fit starts, so a student that could not be
    saved fails before training rather than after it. Only global rank zero writes; the
    training module is left untouched.

    Args:
        dirpath: the model directory (default: ``<trainer.log_dir>/student``, or
            ``<default_root_dir>/student`` without a logger).
        model_name: the timm name the student's architecture is created with (default: that
            of the ANN it was converted from, ``pretrained_cfg["architecture"]`` of the
            module's ``ann``: its ``source``, else its ``teacher``).
        model_kwargs: the ``timm.create_model`` kwargs, used as given (default:
            ``num_classes`` of that ANN and ``in_chans`` of the student's input shape).
    """

    def __init__(
        self,
        dirpath: str | None = None,
        model_name: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.dirpath = dirpath
        self.model_name = model_name
        self.model_kwargs = model_kwargs
        self._target: tuple[Path, str, dict[str, Any]] | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # every rank: trainer.log_dir is a collective (broadcast) under DDP
        root = trainer.log_dir or trainer.default_root_dir
        dirpath = Path(self.dirpath) if self.dirpath else Path(root) / "student"
        ann = pl_module.ann  # the ANN the student was converted from
        name = self.model_name or _architecture(ann)
        if not timm.is_model(name):
            raise ValueError(
                f"save_student: {name!r} is not a registered timm model; pass the student's "
                "architecture with --save_student.model_name NAME"
            )
        kwargs = self.model_kwargs
        if kwargs is None:
            in_chans = int(serialize.conversion_meta(pl_module.student)["input_shape"][0])
            kwargs = {"num_classes": _num_classes(ann), "in_chans": in_chans}
        self._target = (dirpath, name, dict(kwargs))

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        dirpath, name, kwargs = self._target  # resolved in on_fit_start
        serialize.save(pl_module.student, dirpath, model_name=name, model_kwargs=kwargs)
        rank_zero_info(f"distilled student ({name}, {kwargs}) saved to {dirpath}")


def _architecture(ann: nn.Module) -> str:
    name = (getattr(ann, "pretrained_cfg", None) or {}).get("architecture")
    if not name:
        raise ValueError(
            f"save_student: the source ANN ({type(ann).__name__}) does not record its timm "
            "name (pretrained_cfg['architecture']); pass it with --save_student.model_name "
            "NAME (SaveStudent(model_name=...))"
        )
    return name


def _num_classes(ann: nn.Module) -> int:
    classes = getattr(ann, "num_classes", None)
    if classes is None and hasattr(ann, "get_classifier"):
        classes = getattr(ann.get_classifier(), "out_features", None)
    if classes is None:
        raise ValueError(
            f"save_student: cannot tell the classes of the source ANN ({type(ann).__name__}); "
            "pass --save_student.model_kwargs '{num_classes: K, in_chans: C}'"
        )
    return int(classes)
