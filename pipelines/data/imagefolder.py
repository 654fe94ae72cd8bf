"""Image folders: an ``ImageFolder`` tree, or ImageNet-style ``DIR/train`` + ``DIR/val``."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Subset
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import default_loader, find_classes
from torchvision.transforms import v2

from .base import ClassificationDataModule
from .errors import DataNotFoundError

__all__ = ["ImageFolderDataModule", "load_image"]

_LAYOUT = "DIR/<class>/<image> (split here), or DIR/train/<class>/<image> + DIR/val/<class>/<image>"


def load_image(path: str) -> Any:
    """An image file as RGB (torchvision's loader), or an error naming the file.

    Raises:
        DataNotFoundError: the file cannot be decoded (corrupt, truncated, not an image).
    """
    try:
        return default_loader(path)
    except (OSError, ValueError, SyntaxError) as err:  # PIL: UnidentifiedImageError, truncated
        reason = " ".join(str(err).split()) or type(err).__name__
        raise DataNotFoundError(
            f"image {path} cannot be decoded ({type(err).__name__}: {reason}); replace it, or "
            "remove it from the folder"
        ) from err


class ImageFolderDataModule(ClassificationDataModule):
    """Images in class folders, ImageNet-style preprocessing.

    Layouts: ``DIR/train/<class>/*`` with ``DIR/val/<class>/*`` (or ``DIR/test``) for evaluation;
    or a single ``DIR/<class>/*`` tree split with a fixed seed: ``test_fraction`` of every class
    for test.
    Classes are the sub-folder names in sorted order (torchvision's convention).
    Default normalisation: ImageNet mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225).
    Training augmentation: ``RandomResizedCrop(image_size)`` + horizontal flip; evaluation:
    ``Resize(resize_size)`` (shorter side) + ``CenterCrop(image_size)``.

    Args:
        path: The folder (``DIR``).
        image_size: Side of the square crops fed to the model; default: the model's
            ``pretrained_cfg["input_size"]`` once :meth:`adopt_model_config` saw it, else 224.
        resize_size: Shorter side before the centre crop; default ``⌊image_size / crop_pct⌋``
            with the model's ``crop_pct`` (else 0.875) and its interpolation, as timm's eval
            transform.
        test_fraction: Share of each class of a single tree used as test split.
        split_seed: Seed of that split.
        **kwargs: Options of :class:`ClassificationDataModule`.
    """

    default_mean = (0.485, 0.456, 0.406)
    default_std = (0.229, 0.224, 0.225)

    def __init__(
        self,
        path: str | Path,
        image_size: int | None = None,
        resize_size: int | None = None,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
        self.path = Path(path).expanduser()
        self._image_size, self._resize_size = image_size, resize_size
        self.test_fraction, self.split_seed = test_fraction, split_seed

    @property
    def image_size(self) -> int:
        """Crop side: given, else the model's ``pretrained_cfg["input_size"]``, else 224."""
        return self._image_size or int(self._model_config.get("input_size", (3, 224, 224))[-1])

    @property
    def resize_size(self) -> int:
        """Shorter side before the centre crop: given, else ``⌊image_size / crop_pct⌋`` with
        the model's ``crop_pct`` (timm's eval transform), else 0.875."""
        if self._resize_size:
            return self._resize_size
        return math.floor(self.image_size / self._model_config.get("crop_pct", 0.875))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, self.image_size, self.image_size)

    def _folders(self) -> tuple[Path, Path | None]:
        """``(train folder, evaluation folder)``; the latter is ``None`` for a single tree."""
        if not self.path.is_dir():
            raise DataNotFoundError(f"image folder {self.path} does not exist; expected {_LAYOUT}")
        if (self.path / "train").is_dir():
            for name in ("val", "test"):
                if (self.path / name).is_dir():
                    return self.path / "train", self.path / name
            raise DataNotFoundError(
                f"{self.path / 'train'} exists but neither {self.path / 'val'} nor "
                f"{self.path / 'test'}; expected {_LAYOUT}"
            )
        return self.path, None

    def check_source(self) -> None:
        self._folders()

    @property
    def classes(self) -> list[str]:
        """Class names (sub-folders of the training folder, sorted)."""
        train_root = self._folders()[0]
        try:
            return find_classes(str(train_root))[0]
        except FileNotFoundError as err:
            raise DataNotFoundError(f"{err}; expected {_LAYOUT}") from None

    @property
    def num_classes(self) -> int:  # type: ignore[override]
        return len(self.classes)

    def _folder(self, root: Path, transform: Callable) -> ImageFolder:
        try:
            return ImageFolder(str(root), transform=transform, loader=load_image)
        except FileNotFoundError as err:  # no class folders, or no images in them
            raise DataNotFoundError(f"{root}: {err}; expected {_LAYOUT}") from None

    def _source(self, split: str, transform: Callable) -> Dataset:
        train_root, eval_root = self._folders()
        if eval_root is not None:
            dataset = self._folder(train_root if split == "train" else eval_root, transform)
            if dataset.classes != self.classes:
                raise DataNotFoundError(
                    f"{eval_root} has classes {dataset.classes}, {train_root} has {self.classes}; "
                    "both need the same class folders"
                )
            return dataset
        dataset = self._folder(train_root, transform)
        targets = torch.tensor(dataset.targets)
        generator = torch.Generator().manual_seed(self.split_seed)
        chosen: list[int] = []
        for label in range(len(dataset.classes)):  # stratified: the same share of every class
            members = torch.nonzero(targets == label).flatten()
            members = members[torch.randperm(len(members), generator=generator)]
            n_test = round(self.test_fraction * len(members))
            chosen += (members[:n_test] if split == "test" else members[n_test:]).tolist()
        return Subset(dataset, sorted(chosen))

    def default_augmentation(self) -> list[Callable]:
        """Random resized crop to ``image_size`` (scale 0.08–1), then a horizontal flip."""
        return [v2.RandomResizedCrop(self.image_size, antialias=True), v2.RandomHorizontalFlip()]

    def eval_geometry(self) -> list[Callable]:
        """Shorter side to ``resize_size``, then the central ``image_size`` square."""
        mode = v2.InterpolationMode(self._model_config.get("interpolation", "bilinear"))
        return [
            v2.Resize(self.resize_size, interpolation=mode, antialias=True),
            v2.CenterCrop(self.image_size),
        ]
