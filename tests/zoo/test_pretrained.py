"""The shared akamaster checkpoints classify real CIFAR-10 test images at their reference top-1."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch

import multispike.zoo  # noqa: F401  (registers the models)
from multispike.zoo import pretrained_path

# Top-1 (%) on all 10,000 test images of cifar10-full.npz (shared data README).
REFERENCE_TOP1 = {20: 91.73, 32: 92.63, 44: 93.11, 56: 93.39}
SUBSET = 1000
# On a 1,000-image subset, 3 binomial standard deviations at p ≈ 0.93 ≈ 2.4 points.
SUBSET_TOLERANCE = 2.5

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]


@pytest.fixture(scope="module")
def cifar10_test(need_data) -> tuple[torch.Tensor, torch.Tensor]:
    with np.load(need_data("cifar10/cifar10-full.npz")) as data:
        images = torch.from_numpy(data["test_x"]).permute(0, 3, 1, 2).contiguous()
        labels = torch.from_numpy(data["test_y"]).long()
    return images, labels


def _top1(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    cfg = model.pretrained_cfg
    mean = torch.tensor(cfg["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(cfg["std"]).view(1, -1, 1, 1)
    correct = 0
    with torch.inference_mode():
        for x, y in zip(images.split(500), labels.split(500), strict=True):
            x = (x.float() / 255 - mean) / std
            correct += (model(x).argmax(1) == y).sum().item()
    return 100.0 * correct / len(labels)


def _pretrained(depth: int) -> torch.nn.Module:
    file = str(pretrained_path(f"ms_resnet{depth}"))
    return timm.create_model(
        f"ms_resnet{depth}", pretrained=True, pretrained_cfg_overlay=dict(file=file)
    ).eval()


def test_resnet20_full_test_set(cifar10_test):
    images, labels = cifar10_test
    assert len(labels) == 10_000
    assert _top1(_pretrained(20), images, labels) == pytest.approx(REFERENCE_TOP1[20], abs=0.3)


@pytest.mark.parametrize("depth", [32, 44, 56])
def test_deeper_resnets_on_a_subset(cifar10_test, depth):
    images, labels = cifar10_test
    top1 = _top1(_pretrained(depth), images[:SUBSET], labels[:SUBSET])
    assert top1 == pytest.approx(REFERENCE_TOP1[depth], abs=SUBSET_TOLERANCE)
