"""Accuracy under input noise: Gaussian ``σ``: ``x + σ·ε``, ``ε ~ N(0, 1)``, on the normalised
input; event noise ``p``: one spurious event added to every pixel of every frame with
probability ``p``. The noise generator replays the other ranks' draws under
``torch.distributed``, so the result equals one process's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

from ...convert import SpikingNetwork, model_device
from ...convert.distributed import all_reduce_sum, rank_batches
from ...distill.frames import student_input, teacher_logits
from .runs import progress_batches

__all__ = ["perturb_input", "robustness"]


def _is_event_data(x: Tensor) -> bool:
    return x.dim() == 5


def perturb_input(x: Tensor, level: float, generator: torch.Generator) -> Tensor:
    """``x`` with input noise of ``level`` (Gaussian ``σ``, or event probability on frames)."""
    if level == 0:
        return x
    if _is_event_data(x):
        noise = torch.rand(x.shape, generator=generator) < level
        return x + noise.to(x)
    return x + level * torch.randn(x.shape, generator=generator).to(x)


@torch.no_grad()
def robustness(
    models: dict[str, nn.Module],
    loader: Iterable,
    levels: Sequence[float],
    *,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, dict[float, float]]:
    """Top-1 accuracy of each model under input noise of each level (see module docstring).

    ``models`` maps a name to an ANN/QANN (logits) or a :class:`SpikingNetwork` (accuracy
    of the prediction after ``T`` steps). Every model sees the same noisy inputs.
    """
    correct = torch.zeros(len(models), len(levels), dtype=torch.long)
    total = 0
    generator = torch.Generator().manual_seed(seed)
    device = model_device(next(iter(models.values())))
    shard, expected = rank_batches(loader), 0
    for local, (x, y) in enumerate(progress_batches(loader, "robustness", progress)):
        k = shard.global_index(local) if shard else local
        if k > expected:  # batches of other ranks: replay their draws
            rows = shard.full_batch_rows(k, x.shape[0])
            for _ in range(k - expected):
                for level in levels:
                    perturb_input(torch.zeros(rows, *x.shape[1:]), level, generator)
        expected = k + 1
        total += len(y)
        for j, level in enumerate(levels):
            noisy = perturb_input(x, level, generator).to(device)
            for i, model in enumerate(models.values()):
                if isinstance(model, SpikingNetwork):
                    logits = model(student_input(noisy, None, model.timesteps)).mean(0)
                else:
                    logits = teacher_logits(model, noisy)
                correct[i, j] += int((logits.argmax(-1).cpu() == y).sum())
    correct = all_reduce_sum(correct)
    total = max(int(all_reduce_sum(torch.tensor(total))), 1)
    return {
        name: {level: int(c) / total for level, c in zip(levels, row, strict=True)}
        for name, row in zip(models, correct, strict=True)
    }
