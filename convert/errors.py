"""Errors raised by conversion, each naming what to change."""

from __future__ import annotations

__all__ = ["ConversionError", "SUPPORTED_FAMILIES"]

SUPPORTED_FAMILIES = (
    "CNNs whose only non-linearities on the signal path are ReLU/ReLU6 (modules, in-place, "
    "reused or functional) followed or preceded by conv/linear, BatchNorm, pooling, padding, "
    "slicing, flatten, concat and add: timm resnet*/resnetv2 (BatchNorm), vgg*, regnetx*, "
    "mobilenetv2*, and the multispike zoo (cifar resnets, vgg, sparse resnets)"
)


class ConversionError(ValueError):
    """A model cannot be converted exactly; the message lists every culprit.

    Attributes:
        culprits: ``(location, reason)`` pairs, one per offending module or graph node.
    """

    def __init__(self, message: str, culprits: list[tuple[str, str]] | None = None) -> None:
        self.culprits = list(culprits or [])
        lines = [message]
        lines += [f"  - {where}: {why}" for where, why in self.culprits]
        if self.culprits:
            lines.append(f"Supported: {SUPPORTED_FAMILIES}.")
        super().__init__("\n".join(lines))
