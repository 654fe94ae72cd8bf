"""DVS128 Gesture (Amir et al. 2017): 128×128 event recordings of 11 hand and arm gestures.

Layout: tonic's preprocessed files ``ibmGestureTrain/<user>_<lighting>/<label>.npy`` and
``ibmGestureTest/...`` (rows ``x, y, p, t`` with t in ms), directly in DIR or in DIR/DVSGesture
where ``tonic.datasets.DVSGesture`` puts them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.lib import recfunctions
from torch.utils.data import Dataset
from torchvision.transforms import v2

from .errors import DataNotFoundError, DataSpecError
from .events import EventDataModule, EventFiles

__all__ = ["DVSGestureDataModule", "read_dvsgesture"]

_EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("p", bool), ("t", np.int64)])
_FOLDERS = {"train": "ibmGestureTrain", "test": "ibmGestureTest"}


def read_dvsgesture(path: str | Path) -> np.ndarray:
    """Events of one ``.npy`` recording, t from ms to µs (as ``tonic.datasets.DVSGesture``)."""
    events = np.load(path)
    events[:, 3] *= 1000
    return recfunctions.unstructured_to_structured(events, _EVENT_DTYPE)


def _label(path: Path, num_classes: int) -> int:
    """The class of a recording, its file name ``<label>.npy``."""
    if not path.stem.isdecimal() or int(path.stem) >= num_classes:
        raise DataSpecError(
            f"{path}: the file name must be the recording's label, 0..{num_classes - 1}; "
            "rename or remove the file"
        )
    return int(path.stem)


class DVSGestureDataModule(EventDataModule):
    """DVS128 Gesture as ``(B, F, 2, S, S)`` count frames (S = ``image_size``, default 128).

    Split: the official one (users 1–23 train, 24–29 test: 1,077 / 264 recordings); validation:
    ``val_size`` (10 %) of the training recordings, held out.
    Default augmentation (when ``augment=True``): random crop with ``S // 8`` zero padding; no
    flips (left- and right-hand gestures are different classes).

    Args:
        path: The folder (see the module docstring).
        **kwargs: ``frames``, ``clip``, ``image_size``, ``download`` of :class:`EventDataModule`
            and the options of :class:`ClassificationDataModule`.
    """

    num_classes = 11
    sensor_size = (128, 128, 2)

    def __init__(self, path: str | Path, **kwargs) -> None:
        super().__init__(**kwargs)
        self.path = Path(path).expanduser()

    def _split_root(self, split: str) -> Path:
        folder = _FOLDERS[split]
        for base in (self.path / "DVSGesture", self.path):
            if (base / folder).is_dir():
                return base / folder
        raise DataNotFoundError(
            f"DVS128 Gesture {split} split not found: expected "
            f"{folder}/<user>_<lighting>/<label>.npy in {self.path} or {self.path / 'DVSGesture'}. "
            "Download with download=True (tonic), or get it from "
            "https://research.ibm.com/interactive/dvsgesture/ and preprocess it with tonic"
        )

    def prepare_data(self) -> None:
        """Download through tonic when ``download=True`` and a split is absent."""
        if not self.download:
            return
        import tonic

        for split in _FOLDERS:
            try:
                self._split_root(split)
            except DataNotFoundError:
                tonic.datasets.DVSGesture(save_to=str(self.path), train=split == "train")

    def _source(self, split: str, transform: Callable) -> Dataset:
        root = self._split_root(split)
        files = sorted(root.glob("*/*.npy"))
        if not files:
            raise DataNotFoundError(f"{root} holds no <user>_<lighting>/<label>.npy recordings")
        labels = [_label(f, self.num_classes) for f in files]
        return EventFiles(files, labels, read_dvsgesture, transform)

    def default_augmentation(self) -> list[Callable]:
        """A random crop of the frame size with ``S // 8`` zero padding."""
        side = self.input_shape[1]
        return [v2.RandomCrop(side, padding=max(1, side // 8))]
