"""VGGs with BatchNorm for small inputs: VGG-11/16 for 32×32 CIFAR, and the event-frame VGG.

CIFAR variants follow kuangliu's ``pytorch-cifar`` (Simonyan & Zisserman 2015 layer plans,
conv3×3-BN-ReLU, 2×2 max-pools, one ``Linear(512, classes)`` on the 1×1 map; keys
``features.<i>.*``, ``classifier.*``, so its checkpoints load as they are). The event-frame VGG
is the 2-channel 48×48 network of the SNN event-vision literature (HSD / TET "VGGSNN"):
64-128-AP-256-256-AP-512-512-AP-512-512-AP, then the 512×3×3 map flattened into one linear layer.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import SelectAdaptivePool2d
from timm.models import generate_default_cfgs, register_model
from torch import nn

from .checkpoints import build_zoo_model
from .cifar_resnet import CIFAR10_MEAN, CIFAR10_STD

__all__ = ["VGGBN", "make_features"]

# Layer plans: an int is conv3×3(width)-BN-ReLU, "M" a 2×2 max-pool, "A" a 2×2 average pool.
PLANS: dict[str, tuple[int | str, ...]] = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (
        64,
        64,
        "M",
        128,
        128,
        "M",
        256,
        256,
        256,
        "M",
        512,
        512,
        512,
        "M",
        512,
        512,
        512,
        "M",
    ),
    "vgg_dvs": (64, 128, "A", 256, 256, "A", 512, 512, "A", 512, 512, "A"),
}


def make_features(
    plan: tuple[int | str, ...], in_chans: int
) -> tuple[nn.Sequential, list[dict[str, Any]]]:
    """The conv stack of ``plan`` and its timm ``feature_info`` (the ReLU before each pool)."""
    layers: list[nn.Module] = []
    info: list[dict[str, Any]] = []
    chans, reduction = in_chans, 1
    for item in plan:
        if item in ("M", "A"):
            info.append(
                dict(num_chs=chans, reduction=reduction, module=f"features.{len(layers) - 1}")
            )
            layers.append(nn.MaxPool2d(2, 2) if item == "M" else nn.AvgPool2d(2, 2))
            reduction *= 2
        elif isinstance(item, int):
            layers += [
                nn.Conv2d(chans, item, 3, padding=1),
                nn.BatchNorm2d(item),
                nn.ReLU(inplace=True),
            ]
            chans = item
        else:
            raise ValueError(f"unknown VGG plan entry {item!r}: use a width, 'M' or 'A'")
    return nn.Sequential(*layers), info


class VGGBN(nn.Module):
    """VGG with BatchNorm: a conv/pool stack, then a pooled (or flattened) linear classifier.

    Args:
        plan: Layer plan (see ``PLANS``): widths, ``"M"`` max-pool, ``"A"`` average pool.
        num_classes: Classifier outputs (0 = no classifier, ``forward`` returns features).
        in_chans: Input channels.
        global_pool: timm pool type before the classifier (``"avg"`` …); ``""`` flattens the
            whole final map instead, so the classifier width depends on ``img_size``.
        img_size: Input side length, used only when ``global_pool=""``.
        drop_rate: Dropout before the classifier.
    """

    def __init__(
        self,
        plan: tuple[int | str, ...] = PLANS["vgg11"],
        num_classes: int = 10,
        in_chans: int = 3,
        global_pool: str = "avg",
        img_size: int | tuple[int, int] = 32,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.features, self.feature_info = make_features(plan, in_chans)
        self.num_features = self.feature_info[-1]["num_chs"]
        h, w = (img_size, img_size) if isinstance(img_size, int) else img_size
        final = self.feature_info[-1]["reduction"] * 2
        self._map_size = (h // final, w // final)
        self.global_pool, self.classifier = self._head(global_pool, num_classes)

    def _head(self, global_pool: str, num_classes: int) -> tuple[nn.Module, nn.Module]:
        if global_pool:
            pool: nn.Module = SelectAdaptivePool2d(pool_type=global_pool, flatten=True)
            width = self.num_features * pool.feat_mult()
        else:
            pool = nn.Flatten(1)
            width = self.num_features * self._map_size[0] * self._map_size[1]
        self.head_hidden_size = width
        return pool, nn.Linear(width, num_classes) if num_classes > 0 else nn.Identity()

    def get_classifier(self) -> nn.Module:
        """The final classifier layer."""
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier (and optionally the pooling) for ``num_classes`` outputs."""
        self.num_classes = num_classes
        if global_pool is None:
            global_pool = getattr(self.global_pool, "pool_type", "")
        self.global_pool, self.classifier = self._head(global_pool, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Conv/pool stack: (B, C, H, W) → (B, 512, H/32, W/32) (H/16 for the event VGG)."""
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool or flatten, then the classifier unless ``pre_logits``."""
        x = self.global_pool(x)
        if self.drop_rate:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _create(variant: str, pretrained: bool = False, **kwargs: Any) -> VGGBN:
    feature_cfg = dict(flatten_sequential=True, out_indices=(0, 1, 2, 3, 4)[: _stages(kwargs)])
    return build_zoo_model(VGGBN, variant, pretrained, feature_cfg=feature_cfg, **kwargs)


def _stages(kwargs: dict[str, Any]) -> int:
    return sum(item in ("M", "A") for item in kwargs["plan"])


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {
        "url": "",
        "num_classes": 10,
        "input_size": (3, 32, 32),
        "pool_size": (1, 1),
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": CIFAR10_MEAN,
        "std": CIFAR10_STD,
        "first_conv": "features.0",
        "classifier": "classifier",
        **kwargs,
    }


default_cfgs = generate_default_cfgs(
    {
        "ms_vgg11_bn_cifar": _cfg(),
        "ms_vgg16_bn_cifar": _cfg(),
        # Event frames: 2 polarity channels of counts, no mean/std normalisation.
        "ms_vgg_dvs": _cfg(
            input_size=(2, 48, 48),
            pool_size=(3, 3),
            fixed_input_size=True,
            mean=(0.0, 0.0),
            std=(1.0, 1.0),
        ),
    }
)


@register_model
def ms_vgg11_bn_cifar(pretrained: bool = False, **kwargs: Any) -> VGGBN:
    """VGG-11 with BatchNorm for 32×32 inputs (9.23 M parameters at 10 classes)."""
    return _create("ms_vgg11_bn_cifar", pretrained, **dict(dict(plan=PLANS["vgg11"]), **kwargs))


@register_model
def ms_vgg16_bn_cifar(pretrained: bool = False, **kwargs: Any) -> VGGBN:
    """VGG-16 with BatchNorm for 32×32 inputs (14.73 M parameters at 10 classes)."""
    return _create("ms_vgg16_bn_cifar", pretrained, **dict(dict(plan=PLANS["vgg16"]), **kwargs))


@register_model
def ms_vgg_dvs(pretrained: bool = False, **kwargs: Any) -> VGGBN:
    """Event-frame VGG: 2×48×48 input, average pools, 512×3×3 map flattened into the classifier."""
    model_args = dict(plan=PLANS["vgg_dvs"], global_pool="")
    return _create("ms_vgg_dvs", pretrained, **dict(model_args, **kwargs))
