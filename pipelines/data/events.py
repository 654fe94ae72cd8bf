"""Event recordings → frames: binning, count clipping, and the DataModule base of event datasets.

A recording is a structured array of events with fields ``x``, ``y``, ``t``, ``p`` (tonic's
layout). It becomes ``F`` frames of per-pixel, per-polarity event counts, a tensor
``(F, P, H, W)``; a batch is ``(B, F, P, H, W)``. ``F = 1`` gives one multi-level count frame,
the input of a single-timestep SNN.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.dataloader import default_collate
from torchvision.transforms import v2

from .base import ClassificationDataModule
from .errors import DataNotFoundError, DataSpecError

__all__ = ["EventDataModule", "EventFiles", "EventFrames", "events_to_frames"]


def events_to_frames(events: np.ndarray, sensor_size: Sequence[int], frames: int) -> np.ndarray:
    """Count events per time bin, polarity and pixel → ``(frames, P, H, W)`` int64.

    ``sensor_size`` is ``(W, H, P)`` as in tonic. The span ``[t_min, t_max]`` is cut into
    ``frames`` equal bins and event ``e`` falls in bin
    ``floor((t_e - t_min) * frames / (t_max - t_min + 1))``, so every event is counted once.
    (tonic's ``ToFrame(n_time_bins=F)`` uses bins of ``(t_max - t_min) // F`` µs, which drop the
    last event(s) of every recording — 1 on average on N-MNIST — needs time-sorted events, and
    returns an ``(F, P, W, H)`` array for an empty recording.)
    """
    width, height, polarities = (int(s) for s in sensor_size)
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    out = np.zeros(frames * polarities * height * width, dtype=np.int64)
    if len(events):
        t = events["t"].astype(np.int64)
        span = int(t.max() - t.min()) + 1
        bins = (t - t.min()) * frames // span
        p = events["p"].astype(np.int64) if polarities > 1 else np.zeros(len(events), np.int64)
        x, y = events["x"].astype(np.int64), events["y"].astype(np.int64)
        if (
            x.max() >= width
            or y.max() >= height
            or p.max() >= polarities
            or min(x.min(), y.min()) < 0
        ):
            raise ValueError(
                f"events outside the sensor {width}x{height}x{polarities} (W x H x P): x in "
                f"[{x.min()}, {x.max()}], y in [{y.min()}, {y.max()}], p in [{p.min()}, {p.max()}]"
            )
        out += np.bincount(((bins * polarities + p) * height + y) * width + x, minlength=out.size)
    return out.reshape(frames, polarities, height, width)


class EventFrames:
    """Recording → normalised frames ``(F, P, H, W)`` float32.

    Steps: bin into ``frames`` count frames; clip counts to ``clip``; resize each frame to
    ``image_size`` (area interpolation, i.e. the mean count of the pooled pixels); the
    ``augmentation`` (torchvision v2 transforms on the frame tensor, the same draw for every
    frame); ``(frames - mean) / std`` per polarity channel when ``normalize``.
    """

    def __init__(
        self,
        sensor_size: Sequence[int],
        frames: int,
        clip: float | None = None,
        image_size: int | None = None,
        augmentation: Sequence[Callable] = (),
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        self.sensor_size, self.frames, self.clip = tuple(sensor_size), frames, clip
        self.image_size = image_size
        self.augmentation = v2.Compose(list(augmentation)) if augmentation else None
        self.mean = torch.tensor(mean).view(-1, 1, 1) if mean is not None else None
        self.std = torch.tensor(std).view(-1, 1, 1) if std is not None else None

    def __call__(self, events: np.ndarray) -> Tensor:
        x = torch.from_numpy(events_to_frames(events, self.sensor_size, self.frames)).float()
        if self.clip is not None:
            x = x.clamp_(max=self.clip)
        if self.image_size is not None and x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="area")
        if self.augmentation is not None:
            x = self.augmentation(x)
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return x


class EventFiles(Dataset):
    """Recordings stored one per file: ``reader(path)`` → events, then ``transform`` → frames."""

    def __init__(
        self,
        files: Sequence[Path],
        labels: Sequence[int],
        reader: Callable[[str], np.ndarray],
        transform: Callable | None = None,
    ) -> None:
        if len(files) != len(labels):
            raise ValueError(f"{len(files)} files but {len(labels)} labels")
        self.files, self.labels = list(files), list(labels)
        self.reader, self.transform = reader, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[Tensor | np.ndarray, int]:
        path = self.files[index]
        try:
            events = self.reader(str(path))
            frames = self.transform(events) if self.transform else events
        except (DataNotFoundError, DataSpecError):  # the reader's own, naming the file
            raise
        except (OSError, ValueError, IndexError, KeyError, EOFError) as err:
            reason = " ".join(str(err).split()) or type(err).__name__
            raise DataNotFoundError(
                f"recording {path} cannot be used ({type(err).__name__}: {reason}); copy it "
                "again, or remove it from the dataset"
            ) from err
        return frames, int(self.labels[index])


def _frames_as_images(batch: list) -> tuple[Tensor, Tensor]:
    """Collate ``(F, C, H, W)`` samples into ``B * F`` single frames with repeated labels."""
    x, y = default_collate(batch)
    return x.flatten(0, 1), y.repeat_interleave(x.shape[1])


class EventDataModule(ClassificationDataModule):
    """Base of the event DataModules: recordings → ``(B, F, C, H, W)`` count frames.

    ``input_shape`` is one frame ``(C, H, W)`` (C = polarities), what the network sees;
    ``frames`` is F. With ``normalize``, frames are divided by ``clip`` (counts → [0, 1]) unless
    ``mean``/``std`` are given; without ``clip`` the default std is 1 (raw counts).

    Args:
        frames: Frames F per recording (equal time bins; 1 = one count frame).
        clip: Largest count kept per pixel and frame (``None``: no clipping).
        image_size: Resize frames to this square side (``None``: the sensor's size).
        download: Let :meth:`prepare_data` download the dataset through tonic.
        **kwargs: Options of :class:`ClassificationDataModule` (``augment`` defaults to False).
    """

    sensor_size: tuple[int, int, int]  # (W, H, P), tonic's order

    def __init__(
        self,
        frames: int = 1,
        clip: float | None = None,
        image_size: int | None = None,
        download: bool = False,
        augment: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(augment=augment, **kwargs)
        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        if clip is not None and clip <= 0:
            raise ValueError(f"clip must be positive, got {clip}")
        self.frames, self.clip, self.image_size, self.download = frames, clip, image_size, download
        width, height, polarities = self.sensor_size
        side = (image_size, image_size) if image_size else (height, width)
        self.input_shape = (polarities, *side)
        self.default_mean = (0.0,) * polarities
        self.default_std = (float(clip) if clip else 1.0,) * polarities

    def transform(self, augment: bool) -> EventFrames:
        """Events → frames, with the training augmentation when ``augment``."""
        self._check_statistics()
        if augment:
            steps = (
                self.augmentation if self.augmentation is not None else self.default_augmentation()
            )
        else:
            steps = []
        return EventFrames(
            self.sensor_size,
            self.frames,
            clip=self.clip,
            image_size=self.image_size,
            augmentation=steps,
            mean=self.mean if self.normalize else None,
            std=self.std if self.normalize else None,
        )

    def calibration_dataloader(
        self, num_images: int = 1024, batch_size: int | None = None
    ) -> DataLoader:
        """Single frames ``(B, C, H, W)``: the F frames of ``num_images`` training recordings."""
        loader = super().calibration_dataloader(num_images, batch_size)
        return DataLoader(
            loader.dataset,
            batch_size=loader.batch_size,
            num_workers=self.num_workers,
            collate_fn=_frames_as_images,
        )
