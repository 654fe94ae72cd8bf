"""MixUp / CutMix batches: one λ for inputs and labels, the same box in every event frame."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from multispike.distill.mixing import BatchMix


def test_mixup_mixes_inputs_and_labels_with_the_same_weight():
    torch.manual_seed(0)
    x, y = torch.randn(4, 3, 8, 8), torch.arange(4)
    mixed, targets = BatchMix(10, mixup_alpha=1.0)(x, y)
    lam = targets[0, 0].item()  # torchvision pairs each image with the one before it
    assert 0 < lam < 1
    torch.testing.assert_close(mixed, lam * x + (1 - lam) * x.roll(1, 0))
    onehot = F.one_hot(y, 10).float()
    torch.testing.assert_close(targets, lam * onehot + (1 - lam) * onehot.roll(1, 0))


def test_cutmix_pastes_the_same_box_into_every_frame():
    torch.manual_seed(1)
    x, y = torch.randn(4, 5, 2, 16, 16), torch.arange(4)  # (B, F, C, H, W) event frames
    mixed, targets = BatchMix(10, cutmix_alpha=1.0)(x, y)
    assert mixed.shape == x.shape
    pasted = mixed != x
    assert pasted.any() and not pasted.all()
    assert torch.equal(pasted, pasted[:, :1, :1].expand_as(pasted))  # every frame and channel
    torch.testing.assert_close(mixed[pasted], x.roll(1, 0)[pasted])
    kept = 1 - pasted[:, 0, 0].float().mean((1, 2))
    torch.testing.assert_close(targets[torch.arange(4), y], kept)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "mixup_alpha > 0 or cutmix_alpha > 0"),
        ({"mixup_alpha": -1.0}, "must be >= 0"),
    ],
)
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BatchMix(10, **kwargs)


def test_a_batch_without_spatial_dims_is_refused():
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        BatchMix(10, mixup_alpha=1.0)(torch.randn(4, 3, 8), torch.arange(4))
