"""Teachers beyond a single pretrained model: :class:`TeacherEnsemble` makes several
classifiers one teacher by averaging their logits."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["TeacherEnsemble"]


class TeacherEnsemble(nn.Module):
    """Several classifiers as one teacher: their mean logits ``z = (1/M) Σ_m z_m``.

    The distillation target ``softmax(z/τ)`` is then the normalised geometric mean of the
    members' tempered distributions. Members see the same input and must agree on the
    number of classes; give members that share the input normalisation.

    Args:
        members: the classifiers (e.g. ``timm_model("ms_resnet56", pretrained=True)``).
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(members) == 0:
            raise ValueError("TeacherEnsemble needs at least one member model")
        self.members = nn.ModuleList(members)

    def forward(self, x: Tensor) -> Tensor:
        logits = [member(x) for member in self.members]
        shapes = {tuple(z.shape) for z in logits}
        if len(shapes) > 1:
            named = ", ".join(f"members.{i}: {tuple(z.shape)}" for i, z in enumerate(logits))
            raise ValueError(
                f"TeacherEnsemble members disagree on their output shape ({named}): give "
                "members with the same classifier"
            )
        return torch.stack(logits).mean(0)
