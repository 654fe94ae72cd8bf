"""scikit-learn's bundled handwritten digits (no download): the embedded default dataset."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision.transforms import v2

from .base import ClassificationDataModule, TensorImageDataset
from .batch_augment import random_crop

__all__ = ["DigitsDataModule"]


class DigitsDataModule(ClassificationDataModule):
    """The 1,797 8×8 digits of ``sklearn.datasets.load_digits`` (10 classes), as a DataModule.

    Pixels (0..16) are scaled to [0, 1], optionally resized (bilinear) to ``image_size`` and
    repeated to ``channels`` channels. Fixed seeded split (``split_seed``): ``test_fraction`` of
    the images for test; ``val_size`` of the rest held out for validation.
    Default normalisation: mean 0.3053, std 0.3760 (the whole set, pixels in [0, 1]).
    Default augmentation: a random crop of ``image_size`` with ``image_size // 8`` zero padding
    (shifts of up to one eighth of the side; no flips — digits are not mirror-symmetric).

    Args:
        image_size: Side of the (square) images; 8 keeps the originals.
        channels: Channels of each image (the grey level repeated), e.g. 3 for RGB models.
        test_fraction: Fraction of the images in the test split.
        split_seed: Seed of the train/test split (fixed, so every run sees the same split).
        val_size: Training images held out for validation (0: no validation).
        **kwargs: ``batch_size``, ``num_workers``, ``augment``, ``normalize``, ``mean``, ``std``,
            ``augmentation``, ``seed`` of :class:`ClassificationDataModule`.
    """

    num_classes = 10
    default_mean = (0.3053,)
    default_std = (0.3760,)

    def __init__(
        self,
        image_size: int = 8,
        channels: int = 1,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        val_size: int = 144,
        batch_size: int = 64,
        **kwargs,
    ) -> None:
        super().__init__(batch_size=batch_size, val_size=val_size, **kwargs)
        if image_size < 1 or channels < 1:
            raise ValueError(f"image_size and channels must be >= 1, got {image_size}, {channels}")
        if not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
        self.image_size, self.channels = image_size, channels
        self.test_fraction, self.split_seed = test_fraction, split_seed
        self.input_shape = (channels, image_size, image_size)
        self.default_mean = self.default_mean * channels
        self.default_std = self.default_std * channels
        self._arrays: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None

    def _load(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        if self._arrays is None:
            from sklearn.datasets import load_digits

            digits = load_digits()
            images = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
            labels = torch.as_tensor(digits.target, dtype=torch.long)
            if self.image_size != 8:
                size = (self.image_size, self.image_size)
                images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
                images = images.clamp_(0.0, 1.0)
            images = images.expand(-1, self.channels, -1, -1).contiguous()
            order = torch.randperm(
                len(images), generator=torch.Generator().manual_seed(self.split_seed)
            )
            n_test = round(self.test_fraction * len(images))
            test, train = order[:n_test].sort().values, order[n_test:].sort().values
            self._arrays = {
                "train": (images[train], labels[train]),
                "test": (images[test], labels[test]),
            }
        return self._arrays

    def _source(self, split: str, transform: Callable) -> Dataset:
        images, labels = self._load()[split]
        return TensorImageDataset(images, labels, transform)

    def default_augmentation(self) -> list[Callable]:
        return [v2.RandomCrop(self.image_size, padding=max(1, self.image_size // 8))]

    def batch_augmentation(self, x: torch.Tensor, generator=None) -> torch.Tensor:
        """The same crop, drawn per image, for a whole batch on its device."""
        return random_crop(x, max(1, self.image_size // 8), generator)
