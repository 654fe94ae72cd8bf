"""The optimizer of a distillation and its learning rate: linear warm-up, then cosine decay.

Thresholds, biases and other one-dimensional parameters get no weight decay.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import torch
from torch import nn

__all__ = ["build_optimizer", "warmup_cosine", "warmup_cosine_scheduler"]


def build_optimizer(
    student: nn.Module,
    optimizer: Literal["sgd", "adamw"],
    lr: float,
    weight_decay: float,
    momentum: float,
) -> torch.optim.Optimizer:
    """AdamW, or SGD with Nesterov momentum, over ``student``'s trainable parameters: weights
    with ``weight_decay``, thresholds and biases without."""
    decay, no_decay = [], []
    for name, param in student.named_parameters():
        if param.requires_grad:
            plain = name.endswith("threshold") or param.dim() <= 1
            (no_decay if plain else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=lr)


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """The learning-rate factor at ``step``: ``(step + 1) / warmup`` while ``step < warmup``,
    then ``½ (1 + cos(π (step − warmup) / (total − warmup)))`` (1 at the peak, 0 at ``total``).
    """
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / (total - warmup)))


def warmup_cosine_scheduler(
    optimizer: torch.optim.Optimizer, warmup: int, total: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """:func:`warmup_cosine` over ``total`` optimizer steps (stepped every step).

    Raises:
        ValueError: ``warmup`` leaves no step for the decay.
    """
    total = max(1, int(total))
    if warmup >= total:
        raise ValueError(
            f"warmup_steps={warmup} leaves no step of the {total} in this fit for "
            "the cosine decay: lower warmup_steps or train longer"
        )
    factor = functools.partial(warmup_cosine, warmup=warmup, total=total)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
