"""Sparse-ResNet and SEW-ResNet for CIFAR: ResNet-18/19/20 in the two spiking residual forms.

A *Sparse-ResNet* ANN puts an activation (the barrier, a neuron after conversion) right after
every residual join, so every stream between blocks is re-quantized: this is the
post-activation BasicBlock of :mod:`multispike.zoo.cifar_resnet`
(``act2(bn2(conv2(·)) + shortcut(x))``), and its quantized ANN is exactly what
:func:`multispike.convert.residual.rewire_residual` makes in ``"sparse"`` mode (nothing to
change). A *SEW-ResNet* ANN (Fang et al., NeurIPS 2021, ADD connection) ends each branch in an
activation and adds without re-activating: ``act2(bn2(conv2(·))) + shortcut(x)``, where a
projection shortcut is conv-BN-ReLU; its quantized ANN is what ``rewire_residual(qann,
"sew")`` makes of the plain ResNet. Same attribute names as the plain CIFAR ResNets, so
their checkpoints load into both forms, e.g. ``timm.create_model("ms_sparse_resnet20",
pretrained=True, pretrained_cfg_overlay=dict(file=pretrained_path("ms_resnet20")))``.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.models import generate_default_cfgs, register_model
from torch import nn

from .checkpoints import build_zoo_model
from .cifar_resnet import BasicBlock, CifarResNet, PadShortcut, akamaster_cfg, cifar_cfg

__all__ = ["SEWBlock", "SEWResNet", "SparseResNet"]

SparseResNet = CifarResNet  # every join is followed by its barrier activation already


class SEWBlock(BasicBlock):
    """SEW-ResNet ADD block: ``act2(bn2(conv2(act1(bn1(conv1 x))))) + shortcut(x)``.

    A projection shortcut (option B) ends in its own ReLU (``shortcut.2``); an identity or
    zero-padding shortcut passes the incoming sum on. Nothing activates after the add.
    Arguments as :class:`~multispike.zoo.cifar_resnet.BasicBlock`.
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: str = "A") -> None:
        super().__init__(in_planes, planes, stride, shortcut)
        if isinstance(self.shortcut, nn.Sequential):
            self.shortcut.add_module("2", nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        return out + self.shortcut(x)


class SEWResNet(CifarResNet):
    """:class:`~multispike.zoo.cifar_resnet.CifarResNet` built from :class:`SEWBlock` s.

    Arguments as ``CifarResNet``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for i in range(self.stages):
            stage = getattr(self, f"layer{i + 1}")
            for j, block in enumerate(stage):
                stage[j] = SEWBlock(
                    block.conv1.in_channels,
                    block.conv1.out_channels,
                    block.conv1.stride[0],
                    "A" if isinstance(block.shortcut, PadShortcut) else "B",
                )
        self._init_weights()


def _create(cls: type, variant: str, pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    feature_cfg = dict(out_indices=tuple(range(len(kwargs.get("layers", (3, 3, 3))) + 1)))
    return build_zoo_model(cls, variant, pretrained, feature_cfg=feature_cfg, **kwargs)


_RESNET18 = dict(layers=(2, 2, 2, 2), channels=(64, 128, 256, 512), stem_width=64, shortcut="B")
_RESNET19 = dict(
    layers=(3, 3, 2), channels=(128, 256, 512), stem_width=128, shortcut="B", head_hidden=256
)
_RESNET20 = dict(layers=(3, 3, 3))

default_cfgs = generate_default_cfgs(
    {
        "ms_sparse_resnet20.akamaster_cifar10": akamaster_cfg("resnet20-12fca82f.th"),
        "ms_sparse_resnet18": cifar_cfg(pool_size=(4, 4)),
        "ms_sparse_resnet19": cifar_cfg(pool_size=(8, 8)),
        "ms_sew_resnet20": cifar_cfg(),
        "ms_sew_resnet18": cifar_cfg(pool_size=(4, 4)),
        "ms_sew_resnet19": cifar_cfg(pool_size=(8, 8)),
    }
)


@register_model
def ms_sparse_resnet20(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """Sparse-ResNet-20 (CIFAR, option A): a barrier activation after every join."""
    return _create(SparseResNet, "ms_sparse_resnet20", pretrained, **dict(_RESNET20, **kwargs))


@register_model
def ms_sparse_resnet18(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """Sparse-ResNet-18 (CIFAR: 3×3 stem, four stages, option B): barrier after every join."""
    return _create(SparseResNet, "ms_sparse_resnet18", pretrained, **dict(_RESNET18, **kwargs))


@register_model
def ms_sparse_resnet19(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """Sparse-ResNet-19 (128/256/512, 3/3/2 blocks, hidden FC 256): barrier after every join."""
    return _create(SparseResNet, "ms_sparse_resnet19", pretrained, **dict(_RESNET19, **kwargs))


@register_model
def ms_sew_resnet20(pretrained: bool = False, **kwargs: Any) -> SEWResNet:
    """SEW-ResNet-20 (CIFAR, option A): branches end in an activation, plain sum after."""
    return _create(SEWResNet, "ms_sew_resnet20", pretrained, **dict(_RESNET20, **kwargs))


@register_model
def ms_sew_resnet18(pretrained: bool = False, **kwargs: Any) -> SEWResNet:
    """SEW-ResNet-18 (CIFAR, option B shortcuts ending in ReLU), plain sum after each join."""
    return _create(SEWResNet, "ms_sew_resnet18", pretrained, **dict(_RESNET18, **kwargs))


@register_model
def ms_sew_resnet19(pretrained: bool = False, **kwargs: Any) -> SEWResNet:
    """SEW-ResNet-19 (128/256/512, 3/3/2 blocks, hidden FC 256), plain sum after each join."""
    return _create(SEWResNet, "ms_sew_resnet19", pretrained, **dict(_RESNET19, **kwargs))
