"""Synaptic operations of a conv/linear layer (names after NeuroBench).

- input is a spike tensor: ``Σ_p event(p) · fanout(p)`` accumulates, where ``fanout(p)`` is
  the number of (output channel, output position) pairs whose receptive field holds input
  position ``p`` (exact for stride, padding, dilation and groups, :func:`.energy.fanout`);
- input is analog (the image, or after average pooling): ``Σ_p fanout(p)`` MACs per step;
  an input that is the same at every step (a static image shown ``T`` times) is computed
  once, so its MACs count once.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from .counts import memory_order

__all__ = ["SynapticOperations"]


def _synops_update(inputs: Tensor, fan: Tensor, spiking: bool, timesteps: int) -> dict[str, Tensor]:
    """Operations of one layer on a time-flattened batch ``(T·B, *input_shape)``.

    Spiking input: ``synops = Σ [input ≠ 0] · fanout``, as ``n · fanout`` with ``n(p)`` the
    number of samples and steps with an event at ``p`` (integer counts, float64 dot: exact);
    analog input: ``macs = Σ fanout`` per sample and step, counted once when the input is
    the same at every step (a static image: the layer's output is computed once and reused).
    """
    batch = inputs.shape[0] // timesteps
    if spiking:
        x = inputs.detach()
        order = memory_order(x)
        if order[0] != 0:  # the batch is not outermost in memory: take the standard layout
            x, order = x.contiguous(), list(range(x.dim()))
        rows = x.permute(order).reshape(x.shape[0], -1)
        events = rows.ne(0).view(torch.uint8).sum(0, dtype=torch.int32)
        fan_flat = fan.permute([d - 1 for d in order[1:]]).reshape(-1)
        ops = torch.dot(events.to(torch.float64), fan_flat.to(events.device, torch.float64))
        return {"synops": ops, "macs": torch.zeros((), dtype=torch.float64),
                "samples": torch.tensor(float(batch), dtype=torch.float64)}  # fmt: skip
    steps = inputs.detach().reshape(timesteps, batch, -1)
    static = timesteps > 1 and bool((steps == steps[:1]).all())
    dense = fan.sum().to(torch.float64) * (batch if static else inputs.shape[0])
    return {"synops": torch.zeros((), dtype=torch.float64), "macs": dense,
            "samples": torch.tensor(float(batch), dtype=torch.float64)}  # fmt: skip


class SynapticOperations(Metric):
    """Synaptic operations (event-driven accumulates) and MACs of one layer, per sample.

    ``update(inputs, fanout, spiking, timesteps)`` takes the layer's time-flattened input
    ``(T·B, ...)`` and its :func:`.energy.fanout`; ``compute()`` returns ``{"synops", "macs"}``,
    each averaged over samples and summed over the ``T`` steps.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        for name in ("synops", "macs", "samples"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64),
                           dist_reduce_fx="sum")  # fmt: skip

    def update(self, inputs: Tensor, fanout: Tensor, spiking: bool, timesteps: int = 1) -> None:
        for name, value in _synops_update(inputs, fanout, spiking, timesteps).items():
            setattr(self, name, getattr(self, name) + value.to(self.samples.device))

    def compute(self) -> dict[str, Tensor]:
        samples = self.samples.clamp_min(1)
        return {"synops": self.synops / samples, "macs": self.macs / samples}


# --------------------------------------------------------------------------- graph: who feeds whom
