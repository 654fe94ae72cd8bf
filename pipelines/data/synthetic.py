"""Random images of a given shape and class count: shape-only calibration and smoke tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.utils.data import Dataset

from .base import ClassificationDataModule, TensorImageDataset

__all__ = ["RandomDataModule"]


class RandomDataModule(ClassificationDataModule):
    """Standard-normal images with uniform random labels, drawn once from ``seed``.

    The images are already "normalised" (mean 0, std 1), so ``normalize`` is a no-op by default
    and there is no augmentation. Train and test splits hold different draws.

    Args:
        input_shape: Shape of one image, e.g. ``(3, 32, 32)``.
        num_classes: Number of classes of the random labels.
        num_samples: Images in the training split.
        num_test_samples: Images in the test split (also the validation split).
        **kwargs: Options of :class:`ClassificationDataModule`.
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (3, 32, 32),
        num_classes: int = 10,
        num_samples: int = 256,
        num_test_samples: int = 64,
        batch_size: int = 32,
        augment: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(batch_size=batch_size, augment=augment, **kwargs)
        shape = tuple(int(d) for d in input_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"input_shape must be (C, H, W) of positive sizes, got {input_shape}")
        if num_classes < 1 or num_samples < 1 or num_test_samples < 1:
            raise ValueError("num_classes, num_samples and num_test_samples must be >= 1")
        self.input_shape, self.num_classes = shape, num_classes
        self.default_mean, self.default_std = (0.0,) * shape[0], (1.0,) * shape[0]
        self.sizes = {"train": num_samples, "test": num_test_samples}
        self._data: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def _source(self, split: str, transform: Callable) -> Dataset:
        if split not in self._data:
            generator = torch.Generator().manual_seed(self.seed + (split == "test"))
            n = self.sizes[split]
            images = torch.randn((n, *self.input_shape), generator=generator)
            labels = torch.randint(self.num_classes, (n,), generator=generator)
            self._data[split] = (images, labels)
        return TensorImageDataset(*self._data[split], transform)
