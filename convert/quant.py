"""Multi-level clip-floor-shift quantizer: the activation of a quantized ANN (QANN).

    a(z) = (λ/L) · clip( floor(z · L/λ + 1/2), 0, L )

``floor`` has a straight-through gradient (d floor(x)/dx = 1) and ``λ`` is a learnable
parameter, so autograd gives dλ as in QCFS (Bu et al., ICLR 2022).

The expression is evaluated as ``clamp(floor(z * (L/λ) + 0.5), 0, L) * (λ/L)``; the
multi-level IF neuron of :mod:`multispike.convert.neuron` evaluates the very same
operations at its first step, which is what makes the SNN bit-identical to the QANN at T=1.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["MultiLevelQuantizer", "floor_ste", "level", "quantize", "threshold_view"]


class _FloorSTE(torch.autograd.Function):
    """``floor`` in the forward pass, identity in the backward pass."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # noqa: D102
        return torch.floor(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # noqa: D102
        return grad


def floor_ste(x: Tensor) -> Tensor:
    """``torch.floor`` with a straight-through gradient."""
    return _FloorSTE.apply(x)


def threshold_view(threshold: Tensor, x: Tensor) -> Tensor:
    """Shape a per-layer (0-d) or per-channel (C,) threshold to broadcast against ``x``.

    Channels are dimension 1 of ``x`` (``(B, C, ...)`` for convs, ``(B, C)`` for linears).
    """
    if threshold.dim() == 0:
        return threshold
    return threshold.view(1, -1, *([1] * (x.dim() - 2)))


def level(u: Tensor, levels: int) -> Tensor:
    """Integer level ``clamp(floor(u), 0, levels)`` as a float tensor (STE through floor).

    Shared by the quantizer (``u = z·L/λ + 1/2``) and the neuron (``u`` = membrane in units
    of the quantum, ``1/2`` at rest), so both compute one floating-point expression.
    """
    return torch.clamp(floor_ste(u), 0, levels)


def quantize(z: Tensor, threshold: Tensor, levels: int) -> Tensor:
    """Clip-floor-shift quantization ``(λ/L)·clip(floor(z·L/λ + 1/2), 0, L)``.

    Args:
        z: pre-activation, channels on dimension 1.
        threshold: ``λ``, a 0-d tensor (per layer) or a ``(C,)`` tensor (per channel).
        levels: ``L``, the number of non-zero output levels.
    """
    lam = threshold_view(threshold, z)
    return level(z * (levels / lam) + 0.5, levels) * (lam / levels)


class MultiLevelQuantizer(nn.Module):
    """Clip-floor-shift activation with ``levels`` non-zero levels and learnable threshold.

    Replaces one ReLU/ReLU6 call site of the source ANN. While ``observing`` is True the
    module behaves like the activation it replaced (``relu`` clipped at ``ceiling``) so that
    calibration statistics are those of the float network.

    Args:
        levels: ``L``, number of non-zero levels (``L = 1`` is a binary step).
        num_channels: ``C`` for a per-channel threshold, ``None`` for a per-layer one.
        threshold: initial ``λ``.
        ceiling: upper clip of the replaced activation (6 for ReLU6, ``inf`` for ReLU).
        source: human-readable description of the replaced call site (for reports).
    """

    def __init__(
        self,
        levels: int,
        num_channels: int | None = None,
        threshold: float = 1.0,
        ceiling: float = float("inf"),
        source: str = "",
    ) -> None:
        super().__init__()
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        self.levels = int(levels)
        self.ceiling = float(ceiling)
        self.source = source
        shape = () if num_channels is None else (int(num_channels),)
        self.threshold = nn.Parameter(torch.full(shape, float(threshold)))
        self.observing = False

    @property
    def per_channel(self) -> bool:
        return self.threshold.dim() == 1

    def forward(self, z: Tensor) -> Tensor:
        if self.observing:
            return torch.clamp(z, 0, self.ceiling)
        return quantize(z, self.threshold, self.levels)

    def extra_repr(self) -> str:
        kind = f"per_channel={self.threshold.numel()}" if self.per_channel else "per_layer"
        return f"levels={self.levels}, {kind}"
