"""DataModules for every dataset the pipeline runs on; the commands' ``--data`` names one by class.

Every DataModule exposes ``num_classes``, ``input_shape`` (one image, ``(C, H, W)``),
``mean``/``std`` and loaders of ``(x, y)`` batches, plus ``calibration_dataloader(num_images)``
for threshold calibration (training images, never the validation hold-out) and
``adopt_model_config(model)`` to normalise like the model's weights were trained. Event
DataModules yield ``x`` of shape ``(B, F, C, H, W)`` (F frames per recording; transpose to
time-major ``(F, B, C, H, W)`` for an SNN).
"""

from .base import ClassificationDataModule, ImageTransform, TensorImageDataset
from .cifar import CIFAR10DataModule, CIFAR100DataModule
from .cifar10dvs import CIFAR10DVSDataModule
from .digits import DigitsDataModule
from .dvsgesture import DVSGestureDataModule
from .errors import DataNotFoundError, DataSpecError
from .events import EventDataModule, EventFiles, EventFrames, events_to_frames
from .imagefolder import ImageFolderDataModule
from .nmnist import NMNISTDataModule, read_nmnist
from .synthetic import RandomDataModule

__all__ = [
    "CIFAR10DVSDataModule",
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "ClassificationDataModule",
    "DVSGestureDataModule",
    "DataNotFoundError",
    "DataSpecError",
    "DigitsDataModule",
    "EventDataModule",
    "EventFiles",
    "EventFrames",
    "ImageFolderDataModule",
    "ImageTransform",
    "NMNISTDataModule",
    "RandomDataModule",
    "TensorImageDataset",
    "events_to_frames",
    "read_nmnist",
]
