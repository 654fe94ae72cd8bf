"""Training augmentation of a whole batch at once, on whatever device the batch is on.

Random crops of a padded image and horizontal flips, drawn independently per image, as
torchvision's ``RandomCrop(size, padding, padding_mode=...)`` and ``RandomHorizontalFlip()`` do
one image at a time: with the batch already on an accelerator, no per-image Python work is left.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["random_crop", "random_flip"]


def random_crop(
    x: Tensor,
    padding: int,
    generator: torch.Generator | None = None,
    padding_mode: str = "constant",
) -> Tensor:
    """Each image of ``x`` ``(B, C, H, W)`` padded by ``padding`` (zeros for ``"constant"``,
    mirrored without repeating the edge for ``"reflect"``) and cropped back to ``H × W`` at an
    offset drawn uniformly from ``[0, 2·padding]²``: a random translation by up to ``padding``
    pixels each way."""
    if padding <= 0:
        return x
    batch, _, height, width = x.shape
    padded = F.pad(x, (padding, padding, padding, padding), mode=padding_mode)
    span = 2 * padding + 1
    dy = torch.randint(span, (batch, 1), generator=generator).to(x.device)
    dx = torch.randint(span, (batch, 1), generator=generator).to(x.device)
    rows = (dy + torch.arange(height, device=x.device))[:, None, :, None]  # (B, 1, H, 1)
    cols = (dx + torch.arange(width, device=x.device))[:, None, None, :]  # (B, 1, 1, W)
    index = torch.arange(batch, device=x.device)[:, None, None, None]
    channel = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[index, channel, rows, cols]


def random_flip(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Each image of ``x`` ``(B, C, H, W)`` mirrored left–right with probability 1/2."""
    flip = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)
