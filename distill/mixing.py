"""MixUp / CutMix of a training batch, for images and event frames (torchvision v2).

The teacher and the student see the same mixed inputs, so the distillation term matches
them on images between the training images ("function matching", Beyer et al., CVPR 2022),
and the cross-entropy takes the mixed labels ``λ·y_i + (1-λ)·y_j``.
"""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.transforms import v2

__all__ = ["BatchMix"]


class BatchMix(nn.Module):
    """Mix each batch with MixUp (``x = λ x_i + (1-λ) x_j``) or CutMix (a box of ``x_j``
    pasted into ``x_i``, ``λ`` = the area kept), chosen at random per batch, ``λ ~ Beta(α, α)``.

    Args:
        num_classes: classes of the one-hot targets.
        mixup_alpha: ``α`` of MixUp (0: off).
        cutmix_alpha: ``α`` of CutMix (0: off).
    """

    def __init__(self, num_classes: int, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0):
        super().__init__()
        if mixup_alpha < 0 or cutmix_alpha < 0:
            raise ValueError(
                f"mixup_alpha and cutmix_alpha must be >= 0, got {mixup_alpha} and {cutmix_alpha}"
            )
        if not mixup_alpha and not cutmix_alpha:
            raise ValueError("BatchMix needs mixup_alpha > 0 or cutmix_alpha > 0")
        choices = [v2.MixUp(alpha=mixup_alpha, num_classes=num_classes)] if mixup_alpha else []
        if cutmix_alpha:
            choices.append(v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes))
        self.mix = choices[0] if len(choices) == 1 else v2.RandomChoice(choices)

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Mixed inputs (same shape: ``(B, C, H, W)`` or frames ``(B, F, C, H, W)``) and
        soft targets ``(B, num_classes)``."""
        if x.dim() < 4:
            raise ValueError(
                f"BatchMix mixes (B, C, H, W) or (B, F, C, H, W) batches, got {tuple(x.shape)}"
            )
        flat, targets = self.mix(x.flatten(1, -3), y)  # frames → channels, same box in all
        return flat.reshape(x.shape), targets
