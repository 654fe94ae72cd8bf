"""Spike activity of a layer of neurons (names after NeuroBench).

- spike count of a neuron at step ``t``: ``s = round(out / q)`` with quantum ``q = λ/N``;
  a multi-level event is *one* event carrying the payload ``s ∈ 1..N``;
- activation sparsity: ``1 − events / (neurons · T)``;
- membrane updates: one per neuron per step.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from .counts import count_nonzero, exact_sum

__all__ = ["SpikeActivity", "activity_compute"]


def _activity_update(counts: Tensor) -> dict[str, Tensor]:
    """Sums over a batch of spike counts ``(T, B, ...)``.

    Returns:
        ``events`` (non-zero counts), ``payload`` (Σ counts), ``silent`` (neurons with no
        event in all ``T`` steps), ``neurons`` (``B`` × neurons per sample), ``neuron_steps``
        (``neurons × T``) and ``samples`` (``B``).
    """
    steps, batch = counts.shape[:2]
    neurons = counts[0].numel()
    events = count_nonzero(counts)
    active = events if steps == 1 else count_nonzero(counts.sum(0))
    return {
        "events": events,
        "payload": exact_sum(counts),
        "silent": neurons - active,
        "neurons": torch.tensor(float(neurons)),
        "neuron_steps": torch.tensor(float(neurons * steps)),
        "samples": torch.tensor(float(batch)),
    }


def activity_compute(s: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rates from the sums of :func:`_activity_update`."""
    events = s["events"]
    return {
        "events_per_neuron_step": events / s["neuron_steps"],
        "spikes_per_neuron_step": s["payload"] / s["neuron_steps"],
        "mean_payload": torch.where(events > 0, s["payload"] / events.clamp_min(1), 0.0),
        "silent_fraction": s["silent"] / s["neurons"],
        "activation_sparsity": 1 - events / s["neuron_steps"],
        "events_per_sample": events / s["samples"],
        "membrane_updates_per_sample": s["neuron_steps"] / s["samples"],
    }


class SpikeActivity(Metric):
    """Activity of one neuron layer: events per neuron per step, mean payload, silence.

    ``update(counts)`` takes integer spike counts ``(T, B, ...)`` (see :func:`spike_counts`).
    ``compute()`` returns ``events_per_neuron_step``, ``spikes_per_neuron_step`` (payload
    units), ``mean_payload`` (spikes per event, in ``1..N``), ``silent_fraction`` (neurons
    silent for all ``T`` steps of an input), ``activation_sparsity``, ``events_per_sample``
    and ``membrane_updates_per_sample`` (neurons × T).
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False
    _STATES = ("events", "payload", "silent", "neurons", "neuron_steps", "samples")

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        for name in self._STATES:
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64),
                           dist_reduce_fx="sum")  # fmt: skip

    def update(self, counts: Tensor) -> None:
        for name, value in _activity_update(counts).items():
            setattr(self, name, getattr(self, name) + value.to(torch.float64))

    def compute(self) -> dict[str, Tensor]:
        return activity_compute({name: getattr(self, name) for name in self._STATES})


# --------------------------------------------------------------------------- synaptic operations
