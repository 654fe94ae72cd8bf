"""CIFAR-10 and CIFAR-100: a torchvision root (downloaded only when allowed) or a ``.npz``.

The shared ``cifar10/cifar10-full.npz`` (``train_x``/``test_x`` uint8 NHWC, ``train_y``/``test_y``)
holds CIFAR-10 in official order; torchvision's classes cannot read it, so it is loaded here.
"""

from __future__ import annotations

import tokenize
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from .base import ClassificationDataModule, TensorImageDataset
from .batch_augment import random_crop, random_flip
from .errors import DataNotFoundError, DataSpecError
from .paths import local_data, missing_data_dir

__all__ = ["CIFAR10DataModule", "CIFAR100DataModule", "load_npz_split"]


# what zipfile and numpy raise on a damaged archive (zip headers, .npy headers, data)
_DAMAGED = (
    OSError,
    ValueError,
    EOFError,
    zipfile.BadZipFile,
    NotImplementedError,
    RuntimeError,
    SyntaxError,
    tokenize.TokenError,
)


def load_npz_split(
    path: Path, split: str, label_keys: tuple[str, ...], num_classes: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images (N, C, H, W) uint8, labels (N,) int64)`` of ``split`` from an NHWC ``.npz``.

    Images come from ``{split}_x``; labels from the first of ``{split}_{key}`` present (only the
    first N labels are kept, so a file holding all labels but a subset of images works).
    Labels must be integers, in ``0..num_classes-1`` when ``num_classes`` is given.

    Raises:
        DataNotFoundError: the file is not a readable ``.npz`` or lacks the split's arrays.
        DataSpecError: labels that are not integers of the classes.
    """
    _check_zip_magic(path)
    try:
        with np.load(path, allow_pickle=False) as arrays:
            names = [f"{split}_{key}" for key in label_keys]
            label_name = next((n for n in names if n in arrays.files), None)
            if f"{split}_x" not in arrays.files or label_name is None:
                raise DataNotFoundError(
                    f"{path} lacks '{split}_x' or one of {names} (it holds "
                    f"{sorted(arrays.files)}); expected uint8 NHWC images '{split}_x' and "
                    "integer labels"
                )
            images = arrays[f"{split}_x"]
            labels = arrays[label_name][: len(images)]
    except DataNotFoundError:
        raise
    except _DAMAGED as err:
        reason = " ".join(str(err).split())
        raise DataNotFoundError(
            f"{path}: not a readable .npz archive ({type(err).__name__}: {reason}); is the file "
            "truncated? Copy it again, or pass a torchvision root instead"
        ) from err
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise DataNotFoundError(
            f"{path}: '{split}_x' has shape {images.shape}, expected (N, H, W, C)"
        )
    if len(labels) != len(images) or labels.ndim != 1:
        raise DataNotFoundError(
            f"{path}: {len(images)} images in '{split}_x' but {len(labels)} labels in "
            f"'{label_name}'; every image needs one integer label"
        )
    _check_labels(labels, f"{path}: '{label_name}'", num_classes)
    images = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    return images, torch.as_tensor(labels.astype(np.int64))


def _check_zip_magic(path: Path) -> None:
    """Refuse a file that is not a zip archive (every ``.npz`` is one) by its first bytes."""
    try:
        with open(path, "rb") as file:
            head = file.read(6)
    except OSError as err:
        raise DataNotFoundError(f"{path}: cannot be read ({err.strerror or err})") from None
    if not head.startswith(b"PK"):
        if not head:
            found = "it is empty"
        elif head == b"\x93NUMPY":
            found = "it is a single .npy array"
        else:
            found = f"it starts with {head[:4]!r}, not b'PK'"
        raise DataNotFoundError(
            f"{path}: not an .npz archive ({found}); pass an .npz written by numpy.savez "
            "with uint8 NHWC images and integer labels, or a torchvision root"
        )


def _check_labels(labels: np.ndarray, where: str, num_classes: int | None) -> None:
    """Refuse labels that are not integers in ``0..num_classes-1`` (any integer without
    ``num_classes``); ``where`` names the file (and array) in the message.

    Raises:
        DataSpecError: one line naming ``where`` and the bad values.
    """
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise DataSpecError(f"{where} holds {labels.dtype} labels; expected integers")
    if num_classes is None or not labels.size:
        return
    bad = np.unique(labels[(labels < 0) | (labels >= num_classes)])
    if bad.size:
        shown = ", ".join(str(v) for v in bad[:5]) + (", ..." if bad.size > 5 else "")
        raise DataSpecError(
            f"{where} holds labels outside 0..{num_classes - 1} ({num_classes} classes): "
            f"{shown}; fix the labels, or use the DataModule of a dataset with that many classes"
        )


class _CIFARDataModule(ClassificationDataModule):
    """Shared CIFAR logic: locate the data (npz or torchvision root), crop+flip augmentation.

    ``crop_padding`` and ``padding_mode`` set the random crop: the image padded by
    ``crop_padding`` pixels (``"constant"``: zeros; ``"reflect"``: mirrored) and cropped back to
    32×32, i.e. translated by up to that many pixels; ``0``: the flip only.
    """

    torchvision_name: str
    torchvision_folder: str
    npz_names: tuple[str, ...]
    label_keys: tuple[str, ...]
    input_shape = (3, 32, 32)

    def __init__(
        self,
        path: str | Path | None = None,
        download: bool = False,
        crop_padding: int = 4,
        padding_mode: Literal["constant", "reflect"] = "constant",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if crop_padding < 0 or crop_padding >= 32:
            raise ValueError(f"crop_padding must be in 0..31 pixels, got {crop_padding}")
        if padding_mode not in ("constant", "reflect"):
            raise ValueError(f"padding_mode must be 'constant' or 'reflect', got {padding_mode!r}")
        self.path = Path(path).expanduser() if path is not None else None
        self.download = download
        self.crop_padding, self.padding_mode = crop_padding, padding_mode
        self._arrays: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    # -- where the data is --------------------------------------------------------------------
    def _npz_candidates(self) -> list[Path]:
        if self.path is None:
            found = [local_data(name) for name in self.npz_names]
            return [path for path in found if path is not None]
        if self.path.suffix == ".npz":
            return [self.path]
        return [self.path / Path(name).name for name in self.npz_names] + [
            self.path / name for name in self.npz_names
        ]

    def _locate(self) -> tuple[str, Path]:
        """``("npz", file)`` or ``("torchvision", root)``; a clear error when neither is there."""
        for candidate in self._npz_candidates():
            if candidate.is_file():
                return "npz", candidate
        is_root = self.path is not None and self.path.suffix != ".npz"
        if is_root and ((self.path / self.torchvision_folder).is_dir() or self.download):
            return "torchvision", self.path
        tried = [str(p) for p in self._npz_candidates()]
        if self.path is None and not tried:
            tried.append(f"the local data folder: {missing_data_dir()}")
        if is_root:
            tried.append(str(self.path / self.torchvision_folder))
        raise DataNotFoundError(
            f"{self.torchvision_name} not found (tried {', '.join(tried)}). Pass path= "
            f"(--data.path): a torchvision root (a folder holding '{self.torchvision_folder}'; "
            f"download=True, --data.download true, fetches it there), or an '.npz' with uint8 "
            f"NHWC arrays train_x/test_x and their labels."
        )

    def check_source(self) -> None:
        self._locate()

    def prepare_data(self) -> None:
        """Download into the torchvision root, only when ``download=True``."""
        kind, root = self._locate()
        if kind == "torchvision" and self.download:
            import torchvision.datasets

            cls = getattr(torchvision.datasets, self.torchvision_name)
            for train in (True, False):
                cls(str(root), train=train, download=True)

    def _source(self, split: str, transform: Callable) -> Dataset:
        kind, root = self._locate()
        if kind == "npz":
            if split not in self._arrays:
                self._arrays[split] = load_npz_split(root, split, self.label_keys, self.num_classes)
            return TensorImageDataset(*self._arrays[split], transform)
        import torchvision.datasets

        cls = getattr(torchvision.datasets, self.torchvision_name)
        try:
            return cls(str(root), train=split == "train", transform=transform, download=False)
        except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
            raise DataNotFoundError(
                f"{self.torchvision_name} in {root / self.torchvision_folder} is missing or "
                f"corrupt ({err}); call prepare_data() with download=True, or pass a complete root"
            ) from None

    def default_augmentation(self) -> list[Callable]:
        """Random 32×32 crop of the image padded by ``crop_padding`` (4 zeros by default), then
        a horizontal flip (p = 0.5)."""
        crop = [v2.RandomCrop(32, self.crop_padding, padding_mode=self.padding_mode)]
        return [*(crop if self.crop_padding else []), v2.RandomHorizontalFlip()]

    def batch_augmentation(self, x: torch.Tensor, generator=None) -> torch.Tensor:
        """The same crop and flip, drawn per image, for a whole batch on its device."""
        cropped = random_crop(x, self.crop_padding, generator, self.padding_mode)
        return random_flip(cropped, generator)


class CIFAR10DataModule(_CIFARDataModule):
    """CIFAR-10 (10 classes, 3×32×32) from a ``.npz`` or a torchvision root.

    ``path``: an ``.npz`` file; a folder holding ``cifar10-full.npz`` (also under ``cifar10/``);
    a torchvision root (``cifar-10-batches-py`` inside; fetched by :meth:`prepare_data` only
    with ``download=True``); or ``None`` for ``cifar10/cifar10-full.npz`` of the local data
    folder (``MULTISPIKE_DATA``).
    Default normalisation: ImageNet's mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225),
    with which the pretrained akamaster CIFAR ResNets were trained (override ``mean``/``std``).
    Default augmentation: random crop 32 with 4 pixels of zero padding + horizontal flip.
    Validation: ``val_size`` (10 %, 5,000 images) of the training images, held out.
    """

    num_classes = 10
    default_mean = (0.485, 0.456, 0.406)
    default_std = (0.229, 0.224, 0.225)
    torchvision_name = "CIFAR10"
    torchvision_folder = "cifar-10-batches-py"
    npz_names = ("cifar10/cifar10-full.npz",)
    label_keys = ("y", "labels")


class CIFAR100DataModule(_CIFARDataModule):
    """CIFAR-100 (100 fine classes, 3×32×32) from a torchvision root or a ``.npz``.

    ``path``: a torchvision root (``cifar-100-python`` inside; ``download=True`` to fetch it),
    an ``.npz`` (``train_x``/``test_x`` plus ``*_y`` or ``*_fine_labels_all`` as in the shared
    ``cifar100/cifar100-exact-subset.npz``), or ``None`` for that shared subset.
    Default normalisation: CIFAR-100's own mean (0.5071, 0.4865, 0.4409) and std
    (0.2673, 0.2564, 0.2762). Default augmentation: random crop 32 pad 4 + horizontal flip.
    """

    num_classes = 100
    default_mean = (0.5071, 0.4865, 0.4409)
    default_std = (0.2673, 0.2564, 0.2762)
    torchvision_name = "CIFAR100"
    torchvision_folder = "cifar-100-python"
    npz_names = ("cifar100/cifar100-exact-subset.npz",)
    label_keys = ("y", "fine_labels_all", "labels")
