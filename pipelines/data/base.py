"""The plumbing every image-classification DataModule shares: options, splits, loaders.

A subclass says where its images come from (``_source``), which augmentation it uses in
training (``default_augmentation``) and which resizing it applies at evaluation
(``eval_geometry``); this base turns that into train/val/test/calibration loaders of
``(x, y)`` batches with ``x = (image - mean) / std``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset, default_collate
from torchvision.transforms import v2

from .errors import DataSpecError

__all__ = ["ClassificationDataModule", "ImageTransform", "TensorImageDataset"]

_STAGE_SPLITS = {
    "fit": ("train", "val"),
    "validate": ("val",),
    "test": ("test",),
    "predict": ("test",),
}


class ImageTransform:
    """Image (PIL or tensor) → float tensor ``(image / max - mean) / std`` after ``geometry``.

    ``max`` is 255 for uint8 images and 1 for float ones. ``random`` says whether ``geometry``
    draws random parameters; a transform with ``random=False`` acts on each image of a batch
    ``(B, C, H, W)`` alone, so it may be applied to whole batches.
    """

    def __init__(
        self,
        geometry: Sequence[Callable] = (),
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        random: bool = False,
    ) -> None:
        self.geometry = v2.Compose([v2.ToImage(), *geometry])
        self.mean = list(mean) if mean is not None else None
        self.std = list(std) if std is not None else None
        self.random = random

    def __call__(self, image) -> Tensor:
        x = v2.functional.to_dtype(
            self.geometry(image).as_subclass(Tensor), torch.float32, scale=True
        )
        return v2.functional.normalize(x, self.mean, self.std) if self.mean is not None else x


class TensorImageDataset(Dataset):
    """Images in one tensor ``(N, C, H, W)`` (uint8, or float in [0, 1]) with labels ``(N,)``.

    A transform declaring ``random=False`` (an :class:`ImageTransform` without augmentation) is
    applied once per batch of indices (``__getitems__``), which is much faster than per image.
    """

    def __init__(self, images: Tensor, labels: Tensor, transform: Callable | None = None) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])

    def __getitems__(self, indices: list[int]) -> list[tuple[Tensor, int]]:
        if getattr(self.transform, "random", True):
            return [self[i] for i in indices]
        images = self.transform(self.images[indices]) if self.transform else self.images[indices]
        return list(zip(images, self.labels[indices].tolist(), strict=True))


class ClassificationDataModule(L.LightningDataModule):
    """Base DataModule: loaders yielding ``(x, y)``, ``x`` normalised as ``(image - mean) / std``.

    Splits: ``train`` and ``test`` come from the dataset; ``val`` is ``val_size`` training images
    held out with a fixed seed (10 % by default) and never seen by training or calibration.
    The test split serves ``test``/``predict`` only: fitting, checkpoint selection and every
    other choice see the validation split, so the test set is read once, for the report.

    Normalisation: ``mean``/``std`` if given; else those of the model the data feeds, after
    :meth:`adopt_model_config` (timm's ``resolve_data_config``: the ``pretrained_cfg`` the
    weights were trained with); else the dataset's own statistics.

    Args:
        batch_size: Images per batch.
        num_workers: DataLoader worker processes.
        augment: Apply the training augmentation (``augmentation`` or the dataset's default)
            to the training split.
        normalize: Subtract ``mean`` and divide by ``std`` (per channel).
        mean: Per-channel mean overriding the dataset default.
        std: Per-channel std overriding the dataset default.
        augmentation: Transforms replacing the dataset's default training augmentation; they
            act on the image before scaling to [0, 1] and normalisation.
        val_size: Training images held out for validation: a count, or a fraction in
            ``[0, 1)`` of the training split; ``0`` disables validation.
        seed: Seed of the hold-out split and of the calibration subset.
        augment_on_device: Training batches leave the loader as raw images and are augmented
            (:meth:`batch_augmentation`), scaled and normalised on the training device, after
            the transfer: no per-image Python work (for fast accelerators). Other splits are
            unchanged.
        channels_last: Hand image batches over in channels-last memory format, from every
            loader (so ``convert`` and ``evaluate`` get them too) and again after on-device
            augmentation: convolutions then run NHWC kernels, on GPUs and through oneDNN on
            CPUs (timm ``resnet50`` at 224 px: about 1.4x the images/s on 2 cores).
    """

    num_classes: int
    input_shape: tuple[int, ...]
    default_mean: tuple[float, ...] = ()
    default_std: tuple[float, ...] = ()

    def __init__(
        self,
        *,
        batch_size: int = 128,
        num_workers: int = 0,
        augment: bool = True,
        normalize: bool = True,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        augmentation: Sequence[Callable] | None = None,
        val_size: int | float = 0.1,
        seed: int = 0,
        augment_on_device: bool = False,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["augmentation"])  # every subclass's arguments too
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if val_size < 0 or (isinstance(val_size, float) and val_size >= 1):
            raise ValueError(f"val_size must be a count >= 0 or a fraction in [0, 1): {val_size}")
        self.batch_size, self.num_workers = batch_size, num_workers
        self.augment, self.normalize = augment, normalize
        self._mean = tuple(float(m) for m in mean) if mean is not None else None
        self._std = tuple(float(s) for s in std) if std is not None else None
        if self._std is not None and any(s <= 0 for s in self._std):
            raise ValueError(f"std must be positive, got {self._std}")
        self.augmentation = list(augmentation) if augmentation is not None else None
        self.val_size, self.seed = val_size, seed
        self.augment_on_device, self.channels_last = augment_on_device, channels_last
        self._model_config: dict = {}
        self._adopted = False  # adopt_model_config ran (the caller's choice of model stands)
        self.train_dataset: Dataset | None = None
        self.val_dataset: Dataset | None = None
        self.test_dataset: Dataset | None = None

    # -- what a subclass provides -------------------------------------------------------------
    def check_source(self) -> None:
        """Raise :class:`DataNotFoundError` when the dataset cannot be found, reading and
        downloading nothing (``multispike run --dry_run true`` asks every stage's data)."""

    def _source(self, split: str, transform: Callable) -> Dataset:
        """The whole ``"train"`` or ``"test"`` split, each image passed through ``transform``."""
        raise NotImplementedError

    def default_augmentation(self) -> list[Callable]:
        """The dataset's standard training augmentation (none by default)."""
        return []

    def eval_geometry(self) -> list[Callable]:
        """Resizing/cropping applied outside training (none by default)."""
        return []

    def batch_augmentation(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The training augmentation of a batch ``(B, C, H, W)`` in [0, 1], on its device
        (for ``augment_on_device``); a dataset that supports it overrides this."""
        raise DataSpecError(
            f"augment_on_device: {type(self).__name__} has no batched augmentation; leave "
            "augment_on_device false"
        )

    # -- normalisation and transforms ---------------------------------------------------------
    def adopt_model_config(self, model: nn.Module) -> dict:
        """Normalise like ``model``'s weights were trained: timm's ``resolve_data_config``.

        Its ``mean``/``std`` replace the dataset defaults (explicit ``mean``/``std`` still win)
        when they have one value per input channel; a model without a ``pretrained_cfg``, or
        one whose channels differ (e.g. a 3-channel config on 1-channel digits), keeps them.
        Call before the splits are built. Returns the resolved config.
        """
        from timm.data import resolve_data_config

        config = resolve_data_config(model=model) if hasattr(model, "pretrained_cfg") else {}
        self._adopted = True
        channels = self.input_shape[0]
        if len(config.get("mean", ())) == channels and len(config.get("std", ())) == channels:
            self._model_config = config
        return config

    @property
    def mean(self) -> tuple[float, ...]:
        """Per-channel mean subtracted from every image: given, the model's, or the dataset's."""
        if self._mean is not None:
            return self._mean
        return tuple(self._model_config.get("mean", self.default_mean))

    @property
    def std(self) -> tuple[float, ...]:
        """Per-channel std dividing every image: given, the model's, or the dataset's."""
        if self._std is not None:
            return self._std
        return tuple(self._model_config.get("std", self.default_std))

    def _check_statistics(self) -> None:
        channels = self.input_shape[0]
        if self.normalize and not len(self.mean) == len(self.std) == channels:
            raise DataSpecError(
                f"mean {self.mean} and std {self.std} need {channels} values each, one per "
                f"channel of {type(self).__name__}'s {tuple(self.input_shape)} inputs"
            )

    def transform(self, augment: bool) -> ImageTransform:
        """Image → ``(image / max - mean) / std`` tensor, with training augmentation if asked."""
        self._check_statistics()
        if augment:
            geometry = (
                self.augmentation if self.augmentation is not None else self.default_augmentation()
            )
        else:
            geometry = self.eval_geometry()
        return ImageTransform(
            geometry,
            mean=self.mean if self.normalize else None,
            std=self.std if self.normalize else None,
            random=augment,
        )

    # -- splits -------------------------------------------------------------------------------
    def _holdout(self, n_train: int) -> tuple[list[int], list[int]]:
        """``(training indices, validation indices)`` of the training split, seeded."""
        size = self.val_size
        n_val = round(size * n_train) if isinstance(size, float) else int(size)
        if n_val >= n_train:
            raise DataSpecError(
                f"val_size={size} leaves no training images (the training split has "
                f"{n_train}); choose a smaller val_size"
            )
        order = torch.randperm(n_train, generator=torch.Generator().manual_seed(self.seed))
        return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())

    def setup(self, stage: str | None = None) -> None:
        """Build the splits a stage needs (``fit``: train + val; ``test``/``predict``: test;
        ``validate``: val; ``None``: all); built splits are kept.

        Under a Trainer whose LightningModule has a source ANN (its ``ann``, as multispike's
        modules do), first :meth:`adopt_model_config` of it, unless it was called already.
        """
        self._adopt_trainer_model()
        for split in _STAGE_SPLITS.get(stage, ("train", "val", "test")):
            self._split(split)

    def _adopt_trainer_model(self) -> None:
        module = self.trainer.lightning_module if self.trainer is not None else None
        ann = getattr(module, "ann", None)
        if self._adopted or not isinstance(ann, nn.Module):
            return
        if all(d is None for d in (self.train_dataset, self.val_dataset, self.test_dataset)):
            self.adopt_model_config(ann)
            return
        built = (self.mean, self.std)  # splits normalise with these already: do not change them
        saved = self._model_config
        self.adopt_model_config(ann)
        expected = (self.mean, self.std)
        self._model_config, self._adopted = saved, False
        if self.normalize and expected != built:
            raise DataSpecError(
                f"{type(self).__name__} built its splits (setup() ran) with mean {built[0]} and "
                f"std {built[1]}, but {type(ann).__name__}'s weights expect mean {expected[0]} "
                f"and std {expected[1]}: call adopt_model_config(model) before setup(), or "
                "pass mean= and std= explicitly"
            )

    def _split(self, split: str) -> Dataset:
        """The ``train``/``val``/``test`` dataset, built on first use and kept."""
        attribute = f"{split}_dataset"
        if getattr(self, attribute) is None:
            setattr(self, attribute, self._build(split))
        return getattr(self, attribute)

    def _build(self, split: str) -> Dataset:
        if split == "test":
            return self._source("test", self.transform(False))
        if split == "train" and self.augment_on_device:  # raw images: see on_after_batch_transfer
            full = self._source("train", None)
            if not isinstance(full, TensorImageDataset):
                raise DataSpecError(
                    f"augment_on_device: {type(self).__name__} reads images from files; it "
                    "needs images held in one tensor (e.g. a CIFAR .npz)"
                )
        else:
            full = self._source("train", self.transform(self.augment and split == "train"))
        train_indices, val_indices = self._holdout(len(full))
        return Subset(full, val_indices if split == "val" else train_indices)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """With ``augment_on_device``: augment, scale and normalise training batches where they
        are (the accelerator); with ``channels_last``: hand them over in that format."""
        if self.trainer is None or not self.trainer.training:
            return batch
        x, *rest = batch
        if self.augment_on_device:
            x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
            if self.augment:
                x = self.batch_augmentation(x)
            if self.normalize:
                mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
                std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
                x = (x - mean) / std
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return [x, *rest]

    # -- loaders ------------------------------------------------------------------------------
    def _loader(self, dataset: Dataset, shuffle: bool, batch_size: int | None = None) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size or self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(self.seed) if shuffle else None,
            collate_fn=_collate_channels_last if self.channels_last else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self._split("train"), shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        """The held-out training images; ``[]`` (no validation) when ``val_size`` is 0."""
        if not self.val_size:
            return []
        return self._loader(self._split("val"), shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._split("test"), shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

    def calibration_dataloader(
        self, num_images: int = 1024, batch_size: int | None = None
    ) -> DataLoader:
        """A loader over ``num_images`` training images (seeded choice) without augmentation.

        Meant for threshold calibration: the images are those of the training split (never the
        validation hold-out), normalised like every other split.
        """
        if num_images < 1:
            raise ValueError(f"num_images must be >= 1, got {num_images}")
        train = self._source("train", self.transform(False))
        indices, _ = self._holdout(len(train))
        order = torch.randperm(len(indices), generator=torch.Generator().manual_seed(self.seed))
        chosen = sorted(indices[i] for i in order[:num_images].tolist())
        return self._loader(Subset(train, chosen), shuffle=False, batch_size=batch_size)


def _collate_channels_last(samples: list) -> Any:
    """``default_collate``, with the batch's images (a 4-D first element) in channels-last
    memory format; the values are unchanged."""
    batch = default_collate(samples)
    if isinstance(batch, Tensor):
        return batch.contiguous(memory_format=torch.channels_last) if batch.dim() == 4 else batch
    if isinstance(batch, (list, tuple)) and isinstance(batch[0], Tensor) and batch[0].dim() == 4:
        return [batch[0].contiguous(memory_format=torch.channels_last), *batch[1:]]
    return batch
