"""How an ANN is calibrated into a QANN: one options object for every stage that calibrates.

``multispike convert`` and ``multispike avalanche`` read its fields as flat flags
(``--levels 4 --calibration reconstruct``), a distillation as ``--model.calibration.*``;
:meth:`CalibrationOptions.apply` runs the calibration they describe.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from torch import fx, nn

from .calibrate import calibrate
from .distributed import shard_batches
from .reconstruct import reconstruct
from .residual import rewire_residual

__all__ = ["COUNT_LIMITS", "CalibrationOptions", "check_counts"]

# the most a count option may be; beyond, a value is a typo, not a plan: more levels than a
# 16-bit count, or T steps that multiply every batch (the SNN's layers run T·B inputs at once)
COUNT_LIMITS = {"levels": 65_535, "max_spikes": 65_535, "timesteps": 4096, "binary_timesteps": 4096}
METHODS = ("percentile", "mse", "reconstruct")


def check_counts(**counts: int | None) -> None:
    """Refuse a count option below 1 or above its :data:`COUNT_LIMITS` (``None``: a default).

    Raises:
        ValueError: one line naming the option, e.g. ``--timesteps must be >= 1 and <= 4096``.
    """
    for flag, value in counts.items():
        most = COUNT_LIMITS.get(flag)
        if value is not None and (value < 1 or (most is not None and value > most)):
            bound = ">= 1" if most is None else f">= 1 and <= {most}"
            raise ValueError(f"--{flag} must be {bound}, got {value}")


@dataclass(frozen=True)
class CalibrationOptions:
    """How the thresholds λ of a QANN are set from training images (no labels).

    Args:
        levels: ``L``, quantization levels of every activation (1 to 65535).
        per_channel: one threshold per channel.
        calibration: how thresholds are set: a ``percentile`` of each activation, the
            quantization-``mse`` minimiser, or ``reconstruct``: ``mse``, then block-wise
            reconstruction of the float network's outputs (thresholds, biases and weights;
            :func:`multispike.convert.reconstruct`), no labels.
        percentile: the percentile for ``calibration=percentile``.
        calibration_images: training images the thresholds (and the reconstruction) use.
        reconstruct_iterations: optimiser steps per block for ``calibration=reconstruct``.
    """

    levels: int = 4
    per_channel: bool = False
    calibration: Literal["percentile", "mse", "reconstruct"] = "percentile"
    percentile: float = 99.9
    calibration_images: int = 1024
    reconstruct_iterations: int = 500

    def __post_init__(self) -> None:
        check_counts(levels=self.levels, calibration_images=self.calibration_images,
                     reconstruct_iterations=self.reconstruct_iterations)  # fmt: skip
        if self.calibration not in METHODS:
            raise ValueError(
                f"--calibration must be one of {', '.join(METHODS)}, got {self.calibration!r}"
            )
        if not 0 < self.percentile <= 100:
            raise ValueError(f"--percentile must be in (0, 100], got {self.percentile}")

    @property
    def method(self) -> Literal["percentile", "mse"]:
        """The threshold method of :func:`~multispike.convert.calibrate`: ``mse`` starts a
        reconstruction."""
        return "mse" if self.calibration == "reconstruct" else self.calibration

    def apply(
        self,
        ann: nn.Module,
        batches: Iterable,
        *,
        residual: str | None = None,
        shard: bool = False,
        progress: bool = True,
        **kwargs: Any,
    ) -> fx.GraphModule:
        """The QANN of ``ann`` calibrated on ``batches`` as these options say.

        Thresholds by :attr:`method`; then, with ``residual``, the residual joins rewired
        (:func:`~multispike.convert.rewire_residual`, same method); then, for
        ``calibration=reconstruct``, :func:`~multispike.convert.reconstruct` on the first
        ``calibration_images`` images of ``batches``. Parameters that do not require a gradient
        stay as they are in the reconstruction.

        Args:
            ann: the float network; never modified.
            batches: calibration batches (inputs, or ``(inputs, labels)``), re-iterable.
            residual: ``sparse``, ``sew`` or ``analog`` joins; ``None`` keeps them.
            shard: ``batches`` is a DataLoader whose whole batches are split over the ranks of
                ``torch.distributed`` for the thresholds
                (:func:`~multispike.convert.shard_batches`; every rank gets one process's λ);
                the reconstruction reads all of it on every rank.
            progress: show progress bars.
            **kwargs: further options of :func:`~multispike.convert.calibrate`
                (``num_batches``, ``fold``).
        """
        statistics = shard_batches(batches) if shard else batches
        qann = calibrate(
            ann, statistics, self.levels, per_channel=self.per_channel, method=self.method,
            percentile=self.percentile, progress=progress, **kwargs,
        )  # fmt: skip
        if residual is not None:
            qann = rewire_residual(qann, residual, statistics, method=self.method,
                                   percentile=self.percentile, progress=progress)  # fmt: skip
        if self.calibration == "reconstruct":
            qann = reconstruct(
                qann, batches, images=self.calibration_images,
                iterations=self.reconstruct_iterations, progress=progress,
            )  # fmt: skip
        return qann

    def record(self) -> dict[str, Any]:
        """The ``calibration`` entry of ``multispike convert``'s ``report.json`` (without the
        ``seconds`` it took)."""
        return {
            "images": self.calibration_images,
            "method": self.calibration,
            "percentile": self.percentile,
            "reconstruct_iterations": self.reconstruct_iterations,
        }
