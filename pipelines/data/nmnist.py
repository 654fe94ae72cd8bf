"""N-MNIST (Orchard et al. 2015): 34×34 two-polarity event recordings of MNIST digits, 10 classes.

Two layouts are read: the sample files of ``../shared/data/nmnist`` (``<id>.bs2`` plus id–label
lists ``train*.txt`` / ``test*.txt``), and a full dataset (``Train/<digit>/*.bin`` and
``Test/<digit>/*.bin``, directly in DIR or in DIR/NMNIST where tonic extracts it).
Both use N-MNIST's 5-byte event format, read by ``tonic.io.read_mnist_file``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset
from torchvision.transforms import v2

from .errors import DataNotFoundError, DataSpecError
from .events import EventDataModule, EventFiles
from .paths import DATA_VAR, local_data, missing_data_dir

__all__ = ["NMNISTDataModule", "read_id_list", "read_nmnist"]

_EVENT_DTYPE = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])  # tonic.datasets.NMNIST
_EVENT_BYTES = 5  # x, y, polarity + 23 bits of time: N-MNIST's event format


def read_nmnist(path: str | Path) -> np.ndarray:
    """Events of one N-MNIST file (x, y in 0..33, t in µs, p in {0, 1}); tonic's reader.

    Raises:
        DataNotFoundError: the file is empty or not a whole number of 5-byte events.
    """
    from tonic.io import read_mnist_file

    size = Path(path).stat().st_size
    if size == 0 or size % _EVENT_BYTES:
        raise DataNotFoundError(
            f"{path}: {size} bytes, not a whole number of {_EVENT_BYTES}-byte N-MNIST events "
            "(or none); the recording is truncated or not N-MNIST: copy it again"
        )
    return read_mnist_file(str(path), dtype=_EVENT_DTYPE)


def read_id_list(path: Path, num_classes: int | None = None) -> list[tuple[str, int]]:
    """``(id, label)`` pairs of a ``<id> <label>`` list (lines starting with ``#`` skipped);
    labels must lie in ``0..num_classes-1`` when ``num_classes`` is given."""
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 2 or not fields[1].isdecimal():
            raise DataNotFoundError(f"{path}:{number}: expected '<id> <label>', got {line!r}")
        if num_classes is not None and int(fields[1]) >= num_classes:
            raise DataSpecError(
                f"{path}:{number}: label {fields[1]} is outside 0..{num_classes - 1} "
                f"({num_classes} classes); fix the list"
            )
        pairs.append((fields[0], int(fields[1])))
    return pairs


class NMNISTDataModule(EventDataModule):
    """N-MNIST event recordings as ``(B, F, 2, 34, 34)`` count frames (channel = polarity).

    Splits: the official 60,000 train / 10,000 test recordings (or the lists of a sample folder);
    validation: ``val_size`` (10 %) of the training recordings, held out.
    Default augmentation (when ``augment=True``): random shifts of up to 2 pixels (zero-padded
    crop); no flips.

    Args:
        path: The folder (see the module docstring); ``None`` for the shared samples
            (``nmnist/`` of the shared data folder).
        **kwargs: ``frames``, ``clip``, ``image_size``, ``download`` of :class:`EventDataModule`
            and the options of :class:`ClassificationDataModule`.
    """

    num_classes = 10
    sensor_size = (34, 34, 2)

    def __init__(self, path: str | Path | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.path = Path(path).expanduser() if path is not None else None

    def _root(self) -> Path:
        if self.path is not None:
            return self.path
        shared = local_data("nmnist")
        if shared is None:
            raise DataNotFoundError(
                f"N-MNIST: no path given and no local data folder ({missing_data_dir()}); set "
                f"{DATA_VAR} or pass path=DIR"
            )
        return shared

    def check_source(self) -> None:
        root = self._root()
        if not root.is_dir() and not self.download:
            raise DataNotFoundError(f"N-MNIST: {root} does not exist; pass path=DIR (--data.path)")

    def _listing(self, split: str) -> tuple[list[Path], list[int]]:
        """Files and labels of ``"train"`` or ``"test"``, from whichever layout is present."""
        root = self._root()
        lists = sorted(root.glob(f"{split}*.txt")) if root.is_dir() else []
        if len(lists) == 1:
            pairs = read_id_list(lists[0], self.num_classes)
            files = [root / f"{ident}.bs2" for ident, _ in pairs]
            files = [f if f.exists() else f.with_suffix(".bin") for f in files]
            missing = [str(f) for f in files if not f.exists()]
            if missing:
                raise DataNotFoundError(
                    f"{lists[0]} lists {len(missing)} recordings absent from {root} "
                    f"(e.g. {missing[0]}); put the <id>.bs2 files beside the list"
                )
            return files, [label for _, label in pairs]
        if len(lists) > 1:
            raise DataNotFoundError(
                f"{root}: several {split} lists {[p.name for p in lists]}; keep one"
            )
        folder = "Train" if split == "train" else "Test"
        for base in (root / "NMNIST", root):
            if (base / folder).is_dir():
                files = sorted((base / folder).glob("[0-9]/*.bin"))
                if files:
                    return files, [int(f.parent.name) for f in files]
        raise DataNotFoundError(
            f"N-MNIST {split} split not found in {root}: expected {split}*.txt listing "
            f"'<id> <label>' with <id>.bs2 files beside it, or {folder}/<digit>/*.bin (in "
            f"{root} or {root / 'NMNIST'}). Download with download=True (tonic, into "
            f"{root / 'NMNIST'}) or from https://www.garrickorchard.com/datasets/n-mnist"
        )

    def prepare_data(self) -> None:
        """Download the full dataset through tonic when ``download=True`` and it is absent."""
        if not self.download:
            return
        import tonic

        for train in (True, False):
            try:
                self._listing("train" if train else "test")
            except DataNotFoundError:
                tonic.datasets.NMNIST(save_to=str(self._root()), train=train)

    def _source(self, split: str, transform: Callable) -> Dataset:
        files, labels = self._listing(split)
        return EventFiles(files, labels, read_nmnist, transform)

    def default_augmentation(self) -> list[Callable]:
        """Shifts of up to 2 pixels: a zero-padded random crop of the frame size."""
        return [v2.RandomCrop(self.input_shape[1:], padding=2)]
