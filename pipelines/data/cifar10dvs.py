"""CIFAR10-DVS (Li et al. 2017): 10,000 128×128 event recordings of CIFAR-10 images, 10 classes.

Layout: ``<class>/*.aedat4`` folders (airplane … truck) directly in DIR or in DIR/CIFAR10DVS,
where ``tonic.datasets.CIFAR10DVS`` extracts them; files are read with ``tonic.io.read_aedat4``
(needs the ``aedat`` package).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset
from torchvision.transforms import v2

from .errors import DataNotFoundError
from .events import EventDataModule, EventFiles

__all__ = ["CLASSES", "CIFAR10DVSDataModule", "read_cifar10dvs"]

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def read_cifar10dvs(path: str | Path) -> np.ndarray:
    """Events of one ``.aedat4`` recording with fields ``t, x, y, p`` (tonic's reader)."""
    from tonic.io import read_aedat4

    events = read_aedat4(str(path))
    events.dtype.names = ["t", "x", "y", "p"]
    return events


class CIFAR10DVSDataModule(EventDataModule):
    """CIFAR10-DVS as ``(B, F, 2, S, S)`` count frames (S = ``image_size``, default 128).

    Split: there is no official one; as in most SNN papers (e.g. Wu et al. 2019, Fang et al.
    2021) the first ``train_fraction`` (0.9 → 900) recordings of each class, in file-name
    order, train and the rest (100 per class) test. Validation: ``val_size`` (10 %) of the
    training recordings, held out. Literature models often use
    ``image_size=48`` (VGG) or 64/128.
    Default augmentation (when ``augment=True``): horizontal flip + random crop with
    ``S // 8`` pixels of zero padding.

    Args:
        path: The folder (see the module docstring).
        train_fraction: Share of each class used for training.
        **kwargs: ``frames``, ``clip``, ``image_size``, ``download`` of :class:`EventDataModule`
            and the options of :class:`ClassificationDataModule`.
    """

    num_classes = 10
    sensor_size = (128, 128, 2)

    def __init__(self, path: str | Path, train_fraction: float = 0.9, **kwargs) -> None:
        super().__init__(**kwargs)
        if not 0 < train_fraction < 1:
            raise ValueError(f"train_fraction must lie in (0, 1), got {train_fraction}")
        self.path, self.train_fraction = Path(path).expanduser(), train_fraction

    def _class_root(self) -> Path:
        for base in (self.path / "CIFAR10DVS", self.path):
            if all((base / name).is_dir() for name in CLASSES):
                return base
        raise DataNotFoundError(
            f"CIFAR10-DVS not found in {self.path} or {self.path / 'CIFAR10DVS'}: expected one "
            f"folder per class ({', '.join(CLASSES)}) of .aedat4 files. Download with "
            "download=True (tonic) or from https://figshare.com/articles/dataset/CIFAR10-DVS_New/4724671"
        )

    def prepare_data(self) -> None:
        """Download and extract through tonic when ``download=True`` and the data is absent."""
        if not self.download:
            return
        try:
            self._class_root()
        except DataNotFoundError:
            import tonic

            tonic.datasets.CIFAR10DVS(save_to=str(self.path))

    def _source(self, split: str, transform: Callable) -> Dataset:
        root = self._class_root()
        files, labels = [], []
        for label, name in enumerate(CLASSES):
            recordings = sorted((root / name).glob("*.aedat4"))
            if not recordings:
                raise DataNotFoundError(f"{root / name} holds no .aedat4 recordings")
            cut = round(self.train_fraction * len(recordings))
            chosen = recordings[:cut] if split == "train" else recordings[cut:]
            files += chosen
            labels += [label] * len(chosen)
        return EventFiles(files, labels, read_cifar10dvs, transform)

    def default_augmentation(self) -> list[Callable]:
        """Horizontal flip, then a random crop of the frame size with ``S // 8`` zero padding."""
        side = self.input_shape[1]
        return [v2.RandomHorizontalFlip(), v2.RandomCrop(side, padding=max(1, side // 8))]
