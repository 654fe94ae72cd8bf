"""Traceable stand-ins for layers that branch on their input size (timm's VGG ``ConvMlp``):
:func:`register_static_rewrite` registers one, :func:`apply_static_rewrites` swaps them in on
the traced copy once the input size is known.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConversionError
from .modules import set_module

try:
    from timm.models.vgg import ConvMlp
except ImportError:  # pragma: no cover
    ConvMlp = None

__all__ = ["STATIC_REWRITES", "StaticConvMlp", "apply_static_rewrites", "register_static_rewrite"]

STATIC_REWRITES: dict[type, Callable[[nn.Module, torch.Size], nn.Module]] = {}


def register_static_rewrite(cls: type) -> Callable:
    """Register ``fn(module, input_shape) -> traceable module`` for an untraceable layer.

    Some layers branch on their input's shape (timm's VGG ``ConvMlp``); for a known input
    size the branch is fixed, so the layer is swapped, on the traced copy only, for an
    equivalent module without the branch, keeping its children's names.
    """

    def register(fn: Callable[[nn.Module, torch.Size], nn.Module]) -> Callable:
        STATIC_REWRITES[cls] = fn
        return fn

    return register


def apply_static_rewrites(model: nn.Module, input_shape: tuple[int, ...] | None) -> None:
    targets = {n: m for n, m in model.named_modules() if type(m) in STATIC_REWRITES}
    if not targets:
        return
    if input_shape is None:
        raise ConversionError(
            f"{', '.join(targets)} branch on their input size: pass input_shape=(C, H, W)"
        )
    shapes: dict[str, torch.Size] = {}

    def record(name: str) -> Callable:
        def hook(module: nn.Module, args: tuple) -> None:
            shapes.setdefault(name, args[0].shape)

        return hook

    hooks = [m.register_forward_pre_hook(record(n)) for n, m in targets.items()]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for h in hooks:
            h.remove()
    for name, mod in targets.items():
        set_module(model, name, STATIC_REWRITES[type(mod)](mod, shapes[name]))


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
