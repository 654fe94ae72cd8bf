"""Multi-level clip-floor-shift quantizer: the activation of a quantized ANN (QANN).

    a(z) = (λ/L) · clip( floor(z · L/λ + 1/2), 0, L )

``floor`` has a straight-through gradient (d floor(x)/dx = 1, so da/dz = 1 for 0 ≤ z ≤ λ and
0 outside) and ``λ`` is a learnable parameter, so autograd gives dλ as in QCFS (Bu et al.,
ICLR 2022): da/dλ = s/L − z/λ inside the window, 1 above it.

The expression is evaluated as ``clamp(floor(z * (L/λ) + 0.5), 0, L) * (λ/L)``; the
multi-level IF neuron of :mod:`multispike.convert.neuron` evaluates the very same
operations at its first step, which is what makes the SNN bit-identical to the QANN at T=1.
Without autograd the same operations run in place (same values, less memory traffic).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["MultiLevelQuantizer", "level", "needs_grad", "quantize", "threshold_view"]


class _Level(torch.autograd.Function):
    """``clamp(floor(u), 0, L)`` forward; straight-through backward on ``1/2 ≤ u ≤ L + 1/2``.

    With ``u = z·L/λ + 1/2`` the window is ``0 ≤ z ≤ λ``: inside it the activation passes the
    gradient as the identity would (QCFS), outside it is flat.
    """

    @staticmethod
    def forward(ctx, u: Tensor, levels: int) -> Tensor:  # noqa: D102
        ctx.save_for_backward(u)
        ctx.levels = levels
        return torch.clamp(torch.floor(u), 0, levels)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # noqa: D102
        (u,) = ctx.saved_tensors
        window = (u >= 0.5) & (u <= ctx.levels + 0.5)
        return grad * window, None


def level(u: Tensor, levels: int) -> Tensor:
    """Integer level ``clamp(floor(u), 0, levels)`` as a float tensor, straight-through.

    Shared by the quantizer (``u = z·L/λ + 1/2``) and the neuron (``u`` = membrane in units
    of the quantum, ``1/2`` at rest), so both compute one floating-point expression.
    """
    return _Level.apply(u, levels)


def threshold_view(threshold: Tensor, x: Tensor) -> Tensor:
    """Shape a per-layer (0-d) or per-channel (C,) threshold to broadcast against ``x``.

    Channels are dimension 1 of ``x`` (``(B, C, ...)`` for convs, ``(B, C)`` for linears).
    """
    if threshold.dim() == 0:
        return threshold
    return threshold.view(1, -1, *([1] * (x.dim() - 2)))


def quantize(z: Tensor, threshold: Tensor, levels: int) -> Tensor:
    """Clip-floor-shift quantization ``(λ/L)·clip(floor(z·L/λ + 1/2), 0, L)``.

    Args:
        z: pre-activation, channels on dimension 1.
        threshold: ``λ``, a 0-d tensor (per layer) or a ``(C,)`` tensor (per channel).
        levels: ``L``, the number of non-zero output levels.
    """
    lam = threshold_view(threshold, z)
    if needs_grad(z, lam):
        return level(z * (levels / lam) + 0.5, levels) * (lam / levels)
    return z.mul(levels / lam).add_(0.5).floor_().clamp_(0, levels).mul_(lam / levels)


def needs_grad(*tensors: Tensor) -> bool:
    """True when autograd must see the ops; else the in-place path (same values) is used."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


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
