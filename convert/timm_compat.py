"""Traceable stand-ins for timm layers that branch on their input size."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .graph import register_static_rewrite

try:
    from timm.models.vgg import ConvMlp
except ImportError:  # pragma: no cover
    ConvMlp = None


class StaticConvMlp(nn.Module):
    """timm VGG ``ConvMlp`` with its small-input pooling decided for one input size.

    Keeps the children ``fc1``, ``act1``, ``drop``, ``fc2``, ``act2``.
    """

    def __init__(self, mlp: nn.Module, pool_to: tuple[int, int] | None) -> None:
        super().__init__()
        self.pool_to = pool_to
        self.fc1, self.act1, self.drop, self.fc2, self.act2 = (
            mlp.fc1, mlp.act1, mlp.drop, mlp.fc2, mlp.act2
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool_to is not None:
            x = F.adaptive_avg_pool2d(x, self.pool_to)
        return self.act2(self.fc2(self.drop(self.act1(self.fc1(x)))))


if ConvMlp is not None:

    @register_static_rewrite(ConvMlp)
    def _static_conv_mlp(mlp: nn.Module, shape: torch.Size) -> nn.Module:
        k = mlp.input_kernel_size
        small = shape[-2] < k or shape[-1] < k
        return StaticConvMlp(mlp, (max(k, shape[-2]), max(k, shape[-1])) if small else None)
