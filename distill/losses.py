"""Step-wise distillation loss (HSD, Zhong et al., ACM MM 2024; docs/method.md §5).

    L = CE( mean_t o_t , y ) + α · (1/T) · Σ_t τ² · KL( softmax(z/τ) ‖ softmax(o_t/τ) )

``o_t`` is the student's output at step ``t`` (an SNN's head at every step, or a QANN's
single output with ``T = 1``), ``z`` the frozen teacher's logits. Every step is pulled
toward the teacher, so no bad step hides in the mean.
"""

from __future__ import annotations

from typing import NamedTuple

import torch.nn.functional as F
from torch import Tensor

__all__ = ["StepwiseLoss", "stepwise_distillation_loss", "stepwise_kl"]


class StepwiseLoss(NamedTuple):
    """The loss and its two terms (``total = ce + alpha * kd``)."""

    total: Tensor
    ce: Tensor
    kd: Tensor


def _as_steps(outputs: Tensor) -> Tensor:
    """``(B, K)`` → ``(1, B, K)``; ``(T, B, K)`` unchanged."""
    if outputs.dim() == 2:
        return outputs.unsqueeze(0)
    if outputs.dim() != 3:
        raise ValueError(f"student outputs must be (B, K) or (T, B, K), got {tuple(outputs.shape)}")
    return outputs


def stepwise_kl(outputs: Tensor, teacher_logits: Tensor, tau: float = 4.0) -> Tensor:
    """``(1/T) Σ_t τ² KL(softmax(z/τ) ‖ softmax(o_t/τ))``, averaged over the batch.

    Args:
        outputs: student outputs ``(T, B, K)`` (or ``(B, K)`` for ``T = 1``).
        teacher_logits: ``z``, shape ``(B, K)``; treated as a constant.
        tau: temperature ``τ > 0``.
    """
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    outputs = _as_steps(outputs)
    steps, batch, classes = outputs.shape
    if teacher_logits.shape != (batch, classes):
        raise ValueError(
            f"teacher logits {tuple(teacher_logits.shape)} do not match student outputs "
            f"{tuple(outputs.shape)}: expected ({batch}, {classes})"
        )
    log_teacher = F.log_softmax(teacher_logits.detach().float() / tau, dim=-1)
    log_student = F.log_softmax(outputs.float() / tau, dim=-1)
    kl = F.kl_div(log_student, log_teacher.expand_as(log_student), log_target=True, reduction="sum")
    return kl * tau**2 / (steps * batch)


def stepwise_distillation_loss(
    outputs: Tensor,
    teacher_logits: Tensor,
    targets: Tensor,
    alpha: float = 1.0,
    tau: float = 4.0,
) -> StepwiseLoss:
    """Cross-entropy of the mean output plus ``α`` times the step-wise KL term.

    Args:
        outputs: student outputs ``o_t``, ``(T, B, K)`` (or ``(B, K)`` for ``T = 1``).
        teacher_logits: ``z``, ``(B, K)``; no gradient flows into the teacher.
        targets: class indices ``(B,)``, or class probabilities ``(B, K)`` (mixed labels).
        alpha: weight ``α ≥ 0`` of the distillation term (0: plain cross-entropy).
        tau: temperature ``τ``.
    """
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    outputs = _as_steps(outputs)
    ce = F.cross_entropy(outputs.float().mean(0), targets)
    kd = stepwise_kl(outputs, teacher_logits, tau)
    return StepwiseLoss(ce + alpha * kd, ce, kd)
