"""DataModules for every dataset the pipeline runs on, and ``from_spec`` for the CLI ``--data``.

Every DataModule exposes ``num_classes``, ``input_shape`` (one image, ``(C, H, W)``),
``mean``/``std`` and loaders of ``(x, y)`` batches, plus ``calibration_dataloader(num_images)``
for threshold calibration. Event DataModules yield ``x`` of shape ``(B, F, C, H, W)`` (F frames
per recording; transpose to time-major ``(F, B, C, H, W)`` for an SNN).
"""

from .base import ClassificationDataModule, TensorImageDataset
from .cifar import CIFAR10DataModule, CIFAR100DataModule
from .digits import DigitsDataModule
from .errors import DataNotFoundError, DataSpecError
from .spec import SPECS, from_spec
from .synthetic import RandomDataModule

__all__ = [
    "SPECS",
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "ClassificationDataModule",
    "DataNotFoundError",
    "DataSpecError",
    "DigitsDataModule",
    "RandomDataModule",
    "TensorImageDataset",
    "from_spec",
]
