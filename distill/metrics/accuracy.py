"""Accuracy at every step of a spiking network, and agreement with a reference network.

Outputs are ``(T, B, C)``: the cumulative mean logits after each step (what the network
answers if stopped at step ``t``). Pure ``_update``/``_compute`` helpers do the arithmetic;
the Metrics hold summed states, so they work in DDP and in Lightning's ``self.log``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from ...convert import (
    cumulative_mean,
)

__all__ = ["StepAccuracy", "StepAgreement", "step_accuracy"]


def _check_outputs(outputs: Tensor, batch: int) -> None:
    if outputs.dim() != 3 or outputs.shape[1] != batch:
        raise ValueError(
            f"expected SNN outputs of shape (T, B={batch}, classes), got {tuple(outputs.shape)}"
        )


def _step_accuracy_update(outputs: Tensor, target: Tensor, top_k: int = 1) -> tuple[Tensor, int]:
    """Correct predictions after each step ``t`` (prediction = mean of outputs ``0..t``).

    Args:
        outputs: ``(T, B, classes)`` per-step outputs of a :class:`SpikingNetwork`.
        target: ``(B,)`` class indices.
        top_k: a sample is correct when its target is among the ``k`` largest scores. For
            ``k = 1`` a tie goes to the lowest class index (``argmax``, as torchmetrics and
            NeuroBench decide): spiking output layers tie often.

    Returns:
        ``(T,)`` correct counts and ``B``.
    """
    _check_outputs(outputs, target.numel())
    scores = cumulative_mean(outputs.detach())
    top = scores.argmax(-1, keepdim=True) if top_k == 1 else scores.topk(top_k, dim=-1).indices
    correct = (top == target.view(1, -1, 1)).any(-1).sum(1)
    return correct, target.numel()


def _step_accuracy_compute(correct: Tensor, total: Tensor | int) -> Tensor:
    """``correct[t] / total``."""
    return correct.float() / total


def step_accuracy(outputs: Tensor, target: Tensor, top_k: int = 1) -> Tensor:
    """Top-k accuracy of the prediction after each step: ``(T,)``, index ``t-1`` = after ``t``."""
    correct, total = _step_accuracy_update(outputs, target, top_k)
    return _step_accuracy_compute(correct, total)


class StepAccuracy(Metric):
    """Top-k accuracy after every step ``t = 1..T`` of the cumulative-mean prediction.

    ``compute()`` gives a ``(T,)`` tensor (0-d when ``T = 1``: torchmetrics squeezes
    single values).

    Args:
        timesteps: ``T``; updates must bring outputs of shape ``(T, B, classes)``.
        top_k: ``k``.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, timesteps: int, top_k: int = 1, **kwargs) -> None:
        super().__init__(**kwargs)
        if timesteps < 1 or top_k < 1:
            raise ValueError(f"timesteps and top_k must be >= 1, got {timesteps}, {top_k}")
        self.timesteps, self.top_k = int(timesteps), int(top_k)
        self.add_state("correct", default=torch.zeros(timesteps), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, outputs: Tensor, target: Tensor) -> None:
        if outputs.shape[0] != self.timesteps:
            raise ValueError(
                f"StepAccuracy(timesteps={self.timesteps}) got outputs with "
                f"{outputs.shape[0]} steps: build one metric per T"
            )
        correct, total = _step_accuracy_update(outputs, target, self.top_k)
        self.correct += correct
        self.total += total

    def compute(self) -> Tensor:
        return _step_accuracy_compute(self.correct, self.total)


def _step_agreement_update(outputs: Tensor, reference: Tensor) -> tuple[Tensor, Tensor, int]:
    """Agreement of the SNN's prediction after each step with a reference model's logits.

    Returns:
        ``(T,)`` counts of equal top-1 predictions, ``(T,)`` max ``|mean_t − reference|``
        over the batch, and ``B``.
    """
    _check_outputs(outputs, reference.shape[0])
    mean = cumulative_mean(outputs.detach())
    reference = reference.detach()
    agree = (mean.argmax(-1) == reference.argmax(-1).unsqueeze(0)).sum(1)
    diff = (mean - reference.unsqueeze(0)).abs().flatten(1).max(1).values
    return agree, diff, reference.shape[0]


class StepAgreement(Metric):
    """ANN–SNN error at every step: top-1 agreement and max |logit difference| to a reference.

    ``compute()`` returns ``{"agreement": (T,), "max_abs_logit_diff": (T,)}``; at ``T = 1``
    and ``N = L`` against the QANN they are exactly 1 and 0.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, timesteps: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.timesteps = int(timesteps)
        self.add_state("agree", default=torch.zeros(timesteps), dist_reduce_fx="sum")
        self.add_state("max_diff", default=torch.zeros(timesteps), dist_reduce_fx="max")
        self.add_state("total", default=torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, outputs: Tensor, reference: Tensor) -> None:
        if outputs.shape[0] != self.timesteps:
            raise ValueError(
                f"StepAgreement(timesteps={self.timesteps}) got {outputs.shape[0]} steps"
            )
        agree, diff, total = _step_agreement_update(outputs, reference)
        self.agree += agree
        self.max_diff = torch.maximum(self.max_diff, diff.to(self.max_diff))
        self.total += total

    def compute(self) -> dict[str, Tensor]:
        return {"agreement": self.agree / self.total, "max_abs_logit_diff": self.max_diff}


# --------------------------------------------------------------------------- spike activity
