"""The N-MNIST CNN of the NIR paper (Pedersen et al., Nature Communications 2024).

The network the paper ran on seven simulators and three chips, as a timm model::

    Conv2d(2, 16, 5, stride 2, pad 1) ReLU  Conv2d(16, 16, 3, pad 1) ReLU  SumPool2d(2)
    Conv2d(16, 8, 3, pad 1) ReLU  SumPool2d(2)  Flatten  Linear(128, 256) ReLU
    Linear(256, 10) ReLU

No biases. Input: a ``(2, 34, 34)`` event-count frame (channel = polarity). ``SumPool2d(2)``
is written as ``4 × avg_pool2d(2)``, which the conversion keeps exactly. Pretrained weights:
``weights/nir-nmnist-cnn/sinabs-cnn-ann.pth`` of the shared data folder (BSD-3-Clause), a
plain ``nn.Sequential`` state dict mapped by :func:`checkpoint_filter_fn`.

>>> model = timm.create_model("ms_nir_nmnist_cnn", pretrained=True)  # local weights
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import Tensor, nn

from .paths import pretrained_path

__all__ = ["NirNmnistCnn", "SumPool2d", "checkpoint_filter_fn"]


class SumPool2d(nn.Module):
    """Sum over ``k × k`` windows: ``k² · avg_pool2d(x, k)``."""

    def __init__(self, kernel_size: int = 2) -> None:
        super().__init__()
        self.kernel_size = int(kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, self.kernel_size) * (self.kernel_size**2)


class NirNmnistCnn(nn.Module):
    """The NIR paper's N-MNIST CNN with timm's model interface.

    Args:
        num_classes: classifier outputs (10 digits).
        in_chans: input channels (2 polarities).
        drop_rate: unused (timm interface).
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 2, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.num_classes, self.in_chans = num_classes, in_chans
        self.num_features = self.head_hidden_size = 256
        self.conv1 = nn.Conv2d(in_chans, 16, 5, stride=2, padding=1, bias=False)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.act2 = nn.ReLU()
        self.pool2 = SumPool2d(2)
        self.conv3 = nn.Conv2d(16, 8, 3, padding=1, bias=False)
        self.act3 = nn.ReLU()
        self.pool3 = SumPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(128, 256, bias=False)
        self.act4 = nn.ReLU()
        self.head = nn.Linear(256, num_classes, bias=False)
        self.head_act = nn.ReLU()
        self.feature_info = [
            dict(num_chs=16, reduction=2, module="act1"),
            dict(num_chs=16, reduction=4, module="pool2"),
            dict(num_chs=8, reduction=8, module="pool3"),
        ]

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.pool2(self.act2(self.conv2(self.act1(self.conv1(x)))))
        x = self.pool3(self.act3(self.conv3(x)))
        return self.act4(self.fc1(self.flatten(x)))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        return x if pre_logits else self.head_act(self.head(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.head = nn.Linear(256, num_classes, bias=False) if num_classes else nn.Identity()


_SEQUENTIAL_KEYS = {"0": "conv1", "2": "conv2", "5": "conv3", "9": "fc1", "11": "head"}


def checkpoint_filter_fn(state_dict: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Map the paper's ``nn.Sequential`` keys (``0.weight`` ... ``11.weight``) to ours."""
    out = {}
    for key, value in state_dict.items():
        index, _, rest = key.partition(".")
        out[f"{_SEQUENTIAL_KEYS.get(index, index)}.{rest}"] = value
    return out


def _create(variant: str, pretrained: bool = False, **kwargs: Any) -> NirNmnistCnn:
    if pretrained and not kwargs.get("pretrained_cfg_overlay"):  # no hub copy: the local file
        kwargs["pretrained_cfg_overlay"] = dict(file=str(pretrained_path(variant)))
    return build_model_with_cfg(
        NirNmnistCnn,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(flatten_sequential=False, out_indices=(0, 1, 2)),
        **kwargs,
    )


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {
        "num_classes": 10,
        "input_size": (2, 34, 34),
        "pool_size": None,
        "mean": (0.0, 0.0),
        "std": (1.0, 1.0),
        "first_conv": "conv1",
        "classifier": "head",
        "license": "bsd-3-clause",
        "paper_ids": "https://doi.org/10.1038/s41467-024-52259-9",
        **kwargs,
    }


default_cfgs = generate_default_cfgs({"ms_nir_nmnist_cnn.nir_paper": _cfg()})


@register_model
def ms_nir_nmnist_cnn(pretrained: bool = False, **kwargs: Any) -> NirNmnistCnn:
    """NIR paper N-MNIST CNN (2×34×34 event frames → 10 digits)."""
    return _create("ms_nir_nmnist_cnn", pretrained, **kwargs)
