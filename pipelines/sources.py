"""What every command starts from: the source ANN, its data normalised like its weights, and
loaders over the first images of a split."""

from __future__ import annotations

from typing import Any

import lightning as L
from torch import nn
from torch.utils.data import DataLoader, Subset

__all__ = ["ann_and_data", "first_images", "preprocessing"]


def ann_and_data(
    model: str,
    data: L.LightningDataModule,
    *,
    checkpoint: str | None = None,
    pretrained: bool = False,
    num_classes: int | None = None,
    in_chans: int | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """The ANN (:func:`multispike.zoo.load_model`) with classes and channels of ``data``
    unless given, and ``data`` set to normalise like the ANN's weights were trained
    (``adopt_model_config``). Returns the ANN and its ``create_model`` kwargs.

    Raises:
        ValueError: ``num_classes`` / ``in_chans`` contradict the data (both are named).
    """
    from ..zoo import load_model

    shape = getattr(data, "input_shape", None)
    data_classes = getattr(data, "num_classes", None)
    for flag, given, found in (("num_classes", num_classes, data_classes),
                               ("in_chans", in_chans, shape[0] if shape else None)):  # fmt: skip
        if given is not None and found is not None and given != found:
            raise ValueError(
                f"--{flag} {given} contradicts --data {type(data).__name__}, which has {found}"
            )
    if pretrained and checkpoint is None and num_classes is None and data_classes is not None:
        _check_pretrained_classes(model, data, int(data_classes))
    kwargs = {"num_classes": num_classes or data_classes, "in_chans": in_chans or (shape or [0])[0]}
    kwargs = {k: int(v) for k, v in kwargs.items() if v}
    ann = load_model(model, checkpoint=checkpoint, pretrained=pretrained, **kwargs)
    if hasattr(data, "adopt_model_config"):
        data.adopt_model_config(ann)
    return ann, kwargs


def _check_pretrained_classes(model: str, data: L.LightningDataModule, classes: int) -> None:
    """Refuse a pretrained classifier whose head does not match the data's classes: timm
    would silently swap in a random head."""
    import timm

    cfg = timm.models.get_pretrained_cfg(model)
    trained = getattr(cfg, "num_classes", None)
    if trained and trained != classes:
        where = getattr(data, "path", None)
        where = f" at {where}" if where else ""
        raise ValueError(
            f"--data {type(data).__name__}{where} has {classes} classes, but the pretrained "
            f"{model} was trained on {trained}: give a dataset with its classes, or pass "
            f"--num_classes {classes} to start a new (random) classifier head on purpose"
        )


def first_images(loader: DataLoader, images: int | None) -> DataLoader:
    """``loader`` over the first ``images`` samples of its dataset (all of them for ``None``)."""
    if images is None or images >= len(loader.dataset):
        return loader
    if images < 1:
        raise ValueError(f"the number of evaluation images must be >= 1, got {images}")
    return DataLoader(
        Subset(loader.dataset, range(images)),
        batch_size=loader.batch_size,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
    )


def preprocessing(data: Any) -> dict[str, list[float]] | None:
    """The normalisation ``data`` applies, ``{"mean", "std"}``, as a model folder records it
    (``None`` when the DataModule does not normalise)."""
    if not getattr(data, "normalize", False) or not hasattr(data, "mean"):
        return None
    return {"mean": [float(m) for m in data.mean], "std": [float(s) for s in data.std]}
