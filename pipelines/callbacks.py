"""Lightning callbacks that hand a fit's result to the rest of the pipeline.

Both save the model chosen on the validation split: the weights of the trainer's best
``ModelCheckpoint`` when one was kept, else the weights at the end of the fit.

- :class:`SaveStudent` writes the distilled student of a
  :class:`~multispike.distill.module.StepwiseDistillation` fit as a model folder
  (:func:`multispike.pipelines.folder.serialize.save`), the input of ``multispike evaluate
  --model_dir`` and ``multispike export``; ``multispike distill`` always has it
  (``--save_student.dirpath DIR``, ``.model_name``, ``.model_kwargs``).
- :class:`SaveWeights` writes a trained ANN's weights as safetensors, the input of
  ``--checkpoint`` everywhere; ``multispike train`` always has it (``--save_weights.path``).

::

    trainer = L.Trainer(callbacks=[SaveStudent("runs/digits/student")])
    trainer.fit(system, datamodule)
    snn = multispike.pipelines.load("runs/digits/student")
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import lightning as L
import timm
import torch
from torch import nn

from ..convert import fold_qann
from ..distill.console import announce
from .folder import serialize
from .folder.checkpoints import verify_checkpoint
from .folder.weights_file import write_safetensors
from .sources import preprocessing

__all__ = ["SaveStudent", "SaveWeights", "chosen_state"]


def chosen_state(trainer: L.Trainer) -> tuple[dict[str, torch.Tensor] | None, str]:
    """The LightningModule state dict of the best checkpoint on the validation split.

    Returns ``(state dict, description)``; ``(None, "last")`` when no best checkpoint was
    kept (no validation, or no ``ModelCheckpoint`` with a monitor).
    """
    callback = trainer.checkpoint_callback
    best = getattr(callback, "best_model_path", "") if callback is not None else ""
    if not best or not Path(best).is_file():
        return None, "the last weights"
    checkpoint = verify_checkpoint(best, load=True)
    score = float(callback.best_model_score)
    return checkpoint["state_dict"], f"{best} ({callback.monitor} = {score:.4f})"


def _submodule_state(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


class SaveStudent(L.Callback):
    """At the end of a fit, save the chosen ``pl_module.student`` with :func:`serialize.save`.

    The name and kwargs are resolved when the fit starts, so a student that could not be
    saved fails before training rather than after it. Only global rank zero writes; the
    training module is left untouched (the chosen weights go into a copy).

    Args:
        dirpath: the model folder (default: ``<trainer.log_dir>/student``, or
            ``<default_root_dir>/student`` without a logger).
        model_name: the timm name the student's architecture is created with (default: the
            one its model folder recorded when the student was loaded from one, else
            ``pretrained_cfg["architecture"]`` of the module's ``ann``: its ``source``, else
            its ``teacher``).
        model_kwargs: the ``timm.create_model`` kwargs, used as given (default: the model
            folder's, else ``num_classes`` of that ANN and ``in_chans`` of the student's
            input shape).
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
        meta = serialize.conversion_meta(pl_module.student)
        recorded = meta.get("architecture") or {}
        name = self.model_name or recorded.get("model_name") or _architecture(ann)
        if not timm.is_model(name):
            raise ValueError(
                f"save_student: {name!r} is not a registered timm model; pass the student's "
                "architecture with --save_student.model_name NAME"
            )
        kwargs = self.model_kwargs
        if kwargs is None and recorded and name == recorded.get("model_name"):
            kwargs = recorded.get("model_kwargs", {})
        if kwargs is None:
            in_chans = int(meta["input_shape"][0])
            kwargs = {"num_classes": _num_classes(ann), "in_chans": in_chans}
        self._target = (dirpath, name, dict(kwargs))

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self._save(trainer, pl_module)
        trainer.strategy.barrier("save_student")  # a next stage may read it on any rank

    def _save(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dirpath, name, kwargs = self._target  # resolved in on_fit_start
        state, which = chosen_state(trainer)
        student = pl_module.student
        if state is not None:
            from ..distill.students import load_student_state

            student = copy.deepcopy(student)
            load_student_state(student, _submodule_state(state, "student."))
        serialize.save(
            student, dirpath, model_name=name, model_kwargs=kwargs,
            preprocessing=preprocessing(trainer.datamodule),
        )  # fmt: skip
        announce(pl_module, f"student ({name}, {kwargs}) from {which} saved to {dirpath}")


class SaveWeights(L.Callback):
    """At the end of a fit, save the chosen weights of ``pl_module.model``: a float ANN as
    safetensors, a QANN trained from scratch (``train --model.levels L``) as a model folder
    with its BatchNorms folded (:func:`~multispike.convert.fold_qann`).

    Args:
        path: the ``.safetensors`` file of a float ANN (default:
            ``<trainer.log_dir>/model.safetensors``).
        model_dir: the model folder of a QANN (default: ``<trainer.log_dir>/qann``).
    """

    def __init__(self, path: str | None = None, model_dir: str | None = None) -> None:
        if path is not None and Path(path).suffix != ".safetensors":
            raise ValueError(f"save_weights.path must end in .safetensors, got {path!r}")
        self.path = path
        self.model_dir = model_dir
        self._file: Path | None = None
        self._folder: Path | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        root = trainer.log_dir or trainer.default_root_dir
        self._file = Path(self.path) if self.path else Path(root) / "model.safetensors"
        self._folder = Path(self.model_dir) if self.model_dir else Path(root) / "qann"

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self._save(trainer, pl_module)
        trainer.strategy.barrier("save_weights")  # a next stage may read it on any rank

    def _save(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        state, which = chosen_state(trainer)
        weights = pl_module.model.state_dict()
        if state is not None:
            weights = _submodule_state(state, "model.")
        if _is_qann(pl_module.model):
            self._save_qann(trainer, pl_module, weights, which)
            return
        self._file.parent.mkdir(parents=True, exist_ok=True)
        write_safetensors(weights, self._file)
        announce(pl_module, f"weights from {which} saved to {self._file}")

    def _save_qann(
        self, trainer: L.Trainer, pl_module: L.LightningModule, weights: dict, which: str
    ) -> None:
        qann = copy.deepcopy(pl_module.model)
        qann.load_state_dict(weights)
        folded = fold_qann(qann)
        recorded = serialize.conversion_meta(folded).get("architecture") or {}
        name = recorded.get("model_name") or _architecture(pl_module.ann)
        kwargs = recorded.get("model_kwargs") or {"num_classes": _num_classes(pl_module.ann)}
        serialize.save(
            folded, self._folder, model_name=name, model_kwargs=kwargs,
            preprocessing=preprocessing(trainer.datamodule),
        )  # fmt: skip
        announce(pl_module, f"QANN ({name}, BatchNorm folded) from {which} saved to {self._folder}")


def _is_qann(model: nn.Module) -> bool:
    return "multispike" in getattr(model, "meta", {})


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
