"""Wide, fast-training CIFAR networks in the layout of airbench (Jordan 2024), with ReLU.

airbench94 reaches 94 % on CIFAR-10 in about 0.36 PFLOP: a frozen 2×2 convolution that
whitens image patches, then three groups ``conv3×3 → 2×2 max-pool → BN → act → conv3×3 → BN →
act`` at widths 64 / 256 / 256, a 3×3 max-pool and a bias-free linear head scaled by 1/9.
Here the activation is ReLU (convertible to multi-level IF neurons; the original uses GELU)
and every layer is one the converter keeps exact: convolutions, BatchNorm, max-pooling, a
linear head and a constant scale.

The whitening weights come from the data: call :meth:`AirbenchNet.init_from_data` with a few
thousand normalised training images before training (``multispike train`` does).
"""

from __future__ import annotations

from typing import Any

import torch
from timm.models import generate_default_cfgs, register_model
from torch import Tensor, nn

from .checkpoints import build_zoo_model
from .cifar_resnet import CIFAR10_MEAN, CIFAR10_STD

__all__ = ["AirbenchNet", "ConvGroup", "patch_whitening"]


def _conv(in_chs: int, out_chs: int) -> nn.Conv2d:
    """3×3 'same' convolution without bias, its first ``in_chs`` filters the identity (an
    implicit residual at initialisation, as airbench does)."""
    conv = nn.Conv2d(in_chs, out_chs, 3, padding=1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[: min(in_chs, out_chs)])
    return conv


def _batchnorm(chs: int) -> nn.BatchNorm2d:
    """BatchNorm with a frozen unit scale (only the shift learns), momentum 0.4 as in airbench."""
    bn = nn.BatchNorm2d(chs, eps=1e-12, momentum=0.4)
    bn.weight.requires_grad_(False)
    return bn


class ConvGroup(nn.Module):
    """``conv3×3 → max-pool 2 → BN → ReLU → conv3×3 → BN → ReLU`` (halves the map)."""

    def __init__(self, in_chs: int, out_chs: int) -> None:
        super().__init__()
        self.conv1 = _conv(in_chs, out_chs)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = _batchnorm(out_chs)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = _conv(out_chs, out_chs)
        self.norm2 = _batchnorm(out_chs)
        self.act2 = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        x = self.act1(self.norm1(self.pool(self.conv1(x))))
        return self.act2(self.norm2(self.conv2(x)))


def patch_whitening(images: Tensor, kernel_size: int, eps: float = 5e-4) -> Tensor:
    """Filters that whiten the ``kernel_size²`` patches of ``images`` ``(N, C, H, W)``.

    With ``Σ = E[p pᵀ]`` the patch second-moment matrix and ``Σ = V diag(e) Vᵀ``, the filters are
    ``±vᵢ/√(eᵢ + ε)`` (largest eigenvalue first): ``2·C·k²`` filters ``(2Ck², C, k, k)``; after a
    ReLU the pair ``(+v, −v)`` keeps both signs of each whitened coordinate.
    """
    chans = images.shape[1]
    patches = images.float().unfold(2, kernel_size, 1).unfold(3, kernel_size, 1)
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, chans * kernel_size**2)
    covariance = patches.T @ patches / len(patches)
    values, vectors = torch.linalg.eigh(covariance.double())
    values, vectors = values.flip(0), vectors.T.flip(0)
    filters = (vectors / torch.sqrt(values + eps)[:, None]).float()
    filters = filters.reshape(-1, chans, kernel_size, kernel_size)
    return torch.cat([filters, -filters])


class AirbenchNet(nn.Module):
    """airbench's CIFAR layout with ReLU: whitening conv, three conv groups, pooled linear head.

    Args:
        widths: output channels of the three conv groups.
        num_classes: classifier outputs (0 = no classifier, ``forward`` returns features).
        in_chans: input channels.
        whiten_kernel: side of the patch-whitening convolution (``2·in_chans·k²`` filters).
        logit_scale: constant multiplying the logits (airbench: 1/9).
    """

    def __init__(
        self,
        widths: tuple[int, int, int] = (64, 256, 256),
        num_classes: int = 10,
        in_chans: int = 3,
        whiten_kernel: int = 2,
        logit_scale: float = 1 / 9,
    ) -> None:
        super().__init__()
        self.num_classes, self.in_chans, self.logit_scale = num_classes, in_chans, logit_scale
        whiten_width = 2 * in_chans * whiten_kernel**2
        self.whiten = nn.Conv2d(in_chans, whiten_width, whiten_kernel, bias=True)
        self.whiten.weight.requires_grad_(False)  # set from data, then frozen
        with torch.no_grad():
            self.whiten.bias.zero_()
        self.act = nn.ReLU(inplace=True)
        chans = (whiten_width, *widths)
        self.layers = nn.Sequential(
            *(ConvGroup(a, b) for a, b in zip(chans, chans[1:], strict=False))
        )
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.num_features = self.head_hidden_size = widths[-1]
        # a 32×32 input gives maps of 15, 7 and 3 (the 2×2 whitening conv trims one pixel)
        self.feature_info = [
            dict(num_chs=c, reduction=r, module=f"layers.{i}")
            for i, (c, r) in enumerate(zip(widths, (2, 4, 10), strict=True))
        ]
        self.head = self._classifier(num_classes)

    def _classifier(self, num_classes: int) -> nn.Module:
        if not num_classes:
            return nn.Identity()
        return nn.Linear(self.num_features, num_classes, bias=False)

    @torch.no_grad()
    def init_from_data(self, images: Tensor) -> None:
        """Set the whitening filters from normalised training images ``(N, C, H, W)``."""
        kernel = self.whiten.kernel_size[0]
        self.whiten.weight.copy_(patch_whitening(images.to(self.whiten.weight.device), kernel))

    def get_classifier(self) -> nn.Module:
        """The final classifier layer."""
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier for ``num_classes`` outputs (the pooling stays max)."""
        self.num_classes = num_classes
        self.head = self._classifier(num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, C, 32, 32) → (B, widths[-1], 3, 3)."""
        return self.layers(self.act(self.whiten(x)))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Global max-pool, then the scaled linear classifier unless ``pre_logits``."""
        x = self.pool(x).flatten(1)
        return x if pre_logits else self.head(x) * self.logit_scale

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def _create(variant: str, pretrained: bool = False, **kwargs: Any) -> AirbenchNet:
    feature_cfg = dict(flatten_sequential=True, out_indices=(0, 1, 2))
    return build_zoo_model(AirbenchNet, variant, pretrained, feature_cfg=feature_cfg, **kwargs)


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {
        "url": "",
        "num_classes": 10,
        "input_size": (3, 32, 32),
        "pool_size": (3, 3),
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": CIFAR10_MEAN,
        "std": CIFAR10_STD,
        "first_conv": "whiten",
        "classifier": "head",
        **kwargs,
    }


default_cfgs = generate_default_cfgs({"ms_airbench_relu": _cfg(), "ms_airbench_relu_wide": _cfg()})


@register_model
def ms_airbench_relu(pretrained: bool = False, **kwargs: Any) -> AirbenchNet:
    """airbench94's layout with ReLU: widths 64/256/256, 1.97 M parameters, 118 M MACs."""
    return _create("ms_airbench_relu", pretrained, **dict(dict(widths=(64, 256, 256)), **kwargs))


@register_model
def ms_airbench_relu_wide(pretrained: bool = False, **kwargs: Any) -> AirbenchNet:
    """airbench95's widths 128/384/384 with ReLU: 4.6 M parameters, ~3.4x the MACs."""
    model_args = dict(widths=(128, 384, 384))
    return _create("ms_airbench_relu_wide", pretrained, **dict(model_args, **kwargs))
