"""CIFAR ResNets (3×3 stem, no max-pool): ResNet-20/32/44/56, ResNet-18 and ResNet-19.

ResNet-6n+2 (He et al. 2016, §4.2): conv3×3(3→16)-BN-ReLU, three stages of ``n`` BasicBlocks
with 16/32/64 channels at strides 1/2/2, global average pool, ``Linear(64, classes)``. Where a
block changes shape, its shortcut is option A (every second pixel, channels zero-padded; no
parameters) or option B (1×1 conv + BN). Attribute names follow Idelbayev's
``pytorch_resnet_cifar10`` (``conv1``, ``bn1``, ``layer1.0.conv1``, ``linear``), so its
checkpoints load with no key left over. ResNet-18 is the CIFAR variant of kuangliu's
``pytorch-cifar`` (64-wide stem, four stages, option B); ResNet-19 is the SNN literature's
(Zheng et al. 2021: 128/256/512 channels, 3/3/2 blocks, a 256-unit hidden FC before the classifier).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import SelectAdaptivePool2d
from timm.models import generate_default_cfgs, register_model
from torch import nn

from .checkpoints import build_zoo_model

__all__ = ["BasicBlock", "CifarResNet", "PadShortcut", "akamaster_cfg", "cifar_cfg"]

AKAMASTER_MEAN = (0.485, 0.456, 0.406)
AKAMASTER_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
AKAMASTER_URL = "https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models/"


class PadShortcut(nn.Module):
    """Option-A shortcut: ``F.pad(x[:, :, ::s, ::s], (0, 0, 0, 0, p, p))``, no parameters.

    Args:
        pad: Zero channels added on each side (``planes // 4`` for a doubling of width).
        stride: Spatial subsampling step.
    """

    def __init__(self, pad: int, stride: int = 2) -> None:
        super().__init__()
        self.pad = pad
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stride
        return F.pad(x[:, :, ::s, ::s], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    """conv3×3-BN-ReLU-conv3×3-BN, plus the shortcut, then ReLU after the add.

    Args:
        in_planes: Input channels.
        planes: Output channels.
        stride: Stride of the first conv (and of the shortcut).
        shortcut: ``"A"`` (zero-padding) or ``"B"`` (1×1 conv + BN) where the shape changes.
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: str = "A") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act2 = nn.ReLU(inplace=True)
        if stride == 1 and in_planes == planes:
            self.shortcut: nn.Module = nn.Identity()
        elif shortcut == "A":
            if planes - in_planes != 2 * (planes // 4):
                raise ValueError(
                    f"shortcut='A' pads {in_planes}→{planes} channels by planes//4 on each side, "
                    "which needs planes == 2 * in_planes; use shortcut='B'"
                )
            self.shortcut = PadShortcut(planes // 4, stride)
        elif shortcut == "B":
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )
        else:
            raise ValueError(f"shortcut must be 'A' or 'B', got {shortcut!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet for 32×32 inputs: 3×3 stem without max-pool, BasicBlock stages, pooled linear head.

    Args:
        layers: Blocks per stage, e.g. ``(3, 3, 3)`` for ResNet-20.
        channels: Width of each stage; the first stage has stride 1, the others stride 2.
        stem_width: Output channels of the stem conv.
        shortcut: ``"A"`` (zero-padding) or ``"B"`` (1×1 conv + BN) where a block changes shape.
        head_hidden: Width of a hidden FC-ReLU before the classifier (0 = none).
        num_classes: Classifier outputs (0 = no classifier, ``forward`` returns features).
        in_chans: Input channels.
        global_pool: timm pool type of the head (``"avg"``, ``"max"``, ``"avgmax"``, …).
        drop_rate: Dropout before the classifier.
    """

    def __init__(
        self,
        layers: tuple[int, ...] = (3, 3, 3),
        channels: tuple[int, ...] = (16, 32, 64),
        stem_width: int = 16,
        shortcut: str = "A",
        head_hidden: int = 0,
        num_classes: int = 10,
        in_chans: int = 3,
        global_pool: str = "avg",
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if len(layers) != len(channels):
            raise ValueError(f"layers {layers} and channels {channels} differ in length")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.conv1 = nn.Conv2d(in_chans, stem_width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.act1 = nn.ReLU(inplace=True)
        self.feature_info = [dict(num_chs=stem_width, reduction=1, module="act1")]
        in_planes, reduction = stem_width, 1
        for i, (depth, planes) in enumerate(zip(layers, channels, strict=True)):
            stride = 1 if i == 0 else 2
            reduction *= stride
            blocks = []
            for j in range(depth):
                blocks.append(BasicBlock(in_planes, planes, stride if j == 0 else 1, shortcut))
                in_planes = planes
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            self.feature_info.append(
                dict(num_chs=planes, reduction=reduction, module=f"layer{i + 1}")
            )
        self.stages = len(layers)
        self.num_features = in_planes
        self.head_hidden_size = head_hidden or in_planes
        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=True)
        pooled = in_planes * self.global_pool.feat_mult()
        self.pre_logits: nn.Module = (
            nn.Sequential(OrderedDict(fc=nn.Linear(pooled, head_hidden), act=nn.ReLU(inplace=True)))
            if head_hidden
            else nn.Identity()
        )
        self.linear = self._classifier(num_classes)
        self._init_weights()

    def _classifier(self, num_classes: int) -> nn.Module:
        if not isinstance(self.pre_logits, nn.Sequential):
            self.head_hidden_size = self.num_features * self.global_pool.feat_mult()
        return nn.Linear(self.head_hidden_size, num_classes) if num_classes > 0 else nn.Identity()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def get_classifier(self) -> nn.Module:
        """The final classifier layer."""
        return self.linear

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier (and optionally the pool type) for ``num_classes`` outputs."""
        self.num_classes = num_classes
        if global_pool is not None:
            pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=True)
            hidden = isinstance(self.pre_logits, nn.Sequential)
            if hidden and pool.feat_mult() != self.global_pool.feat_mult():
                raise ValueError(
                    f"global_pool={global_pool!r} changes the width the hidden FC expects; "
                    "keep this model's pool type or build it anew with global_pool=..."
                )
            self.global_pool = pool
        self.linear = self._classifier(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem and residual stages: (B, C, H, W) → (B, num_features, H/r, W/r)."""
        x = self.act1(self.bn1(self.conv1(x)))
        for i in range(self.stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global pool (and hidden FC), then the classifier unless ``pre_logits``."""
        x = self.pre_logits(self.global_pool(x))
        if self.drop_rate:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        return x if pre_logits else self.linear(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _create(variant: str, pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    out_indices = tuple(range(len(kwargs.get("layers", (3, 3, 3))) + 1))
    feature_cfg = dict(out_indices=out_indices)
    return build_zoo_model(CifarResNet, variant, pretrained, feature_cfg=feature_cfg, **kwargs)


def cifar_cfg(url: str = "", **kwargs: Any) -> dict[str, Any]:
    """timm pretrained config of a CIFAR-10 model (32×32 input, CIFAR-10 mean/std)."""
    return {
        "url": url,
        "num_classes": 10,
        "input_size": (3, 32, 32),
        "pool_size": (8, 8),
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": CIFAR10_MEAN,
        "std": CIFAR10_STD,
        "first_conv": "conv1",
        "classifier": "linear",
        **kwargs,
    }


def akamaster_cfg(file: str) -> dict[str, Any]:
    """Pretrained config of one of akamaster's CIFAR-10 ResNet checkpoints (its own mean/std)."""
    return cifar_cfg(
        url=AKAMASTER_URL + file,
        mean=AKAMASTER_MEAN,
        std=AKAMASTER_STD,
        license="bsd-2-clause",
        origin_url="https://github.com/akamaster/pytorch_resnet_cifar10",
        paper_ids="arXiv:1512.03385",
    )


default_cfgs = generate_default_cfgs(
    {
        "ms_resnet20.akamaster_cifar10": akamaster_cfg("resnet20-12fca82f.th"),
        "ms_resnet32.akamaster_cifar10": akamaster_cfg("resnet32-d509ac18.th"),
        "ms_resnet44.akamaster_cifar10": akamaster_cfg("resnet44-014dd654.th"),
        "ms_resnet56.akamaster_cifar10": akamaster_cfg("resnet56-4bfd9763.th"),
        "ms_resnet18_cifar": cifar_cfg(pool_size=(4, 4)),
        "ms_resnet19_cifar": cifar_cfg(pool_size=(8, 8)),
    }
)


@register_model
def ms_resnet20(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-20 for CIFAR (n=3, option-A shortcuts, 0.27 M parameters)."""
    return _create("ms_resnet20", pretrained, **dict(dict(layers=(3, 3, 3)), **kwargs))


@register_model
def ms_resnet32(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-32 for CIFAR (n=5, option-A shortcuts, 0.46 M parameters)."""
    return _create("ms_resnet32", pretrained, **dict(dict(layers=(5, 5, 5)), **kwargs))


@register_model
def ms_resnet44(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-44 for CIFAR (n=7, option-A shortcuts, 0.66 M parameters)."""
    return _create("ms_resnet44", pretrained, **dict(dict(layers=(7, 7, 7)), **kwargs))


@register_model
def ms_resnet56(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-56 for CIFAR (n=9, option-A shortcuts, 0.85 M parameters)."""
    return _create("ms_resnet56", pretrained, **dict(dict(layers=(9, 9, 9)), **kwargs))


@register_model
def ms_resnet18_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-18, CIFAR variant: 3×3 stem (64), no max-pool, option-B shortcuts (11.17 M)."""
    model_args = dict(
        layers=(2, 2, 2, 2), channels=(64, 128, 256, 512), stem_width=64, shortcut="B"
    )
    return _create("ms_resnet18_cifar", pretrained, **dict(model_args, **kwargs))


@register_model
def ms_resnet19_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-19 of the SNN literature: 3×3 stem (128), 3/3/2 blocks, hidden FC 256, option B."""
    model_args = dict(
        layers=(3, 3, 2), channels=(128, 256, 512), stem_width=128, shortcut="B", head_hidden=256
    )
    return _create("ms_resnet19_cifar", pretrained, **dict(model_args, **kwargs))
