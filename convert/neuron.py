"""Multi-level integrate-and-fire neuron: the activation of the converted SNN.

With quantum ``q = λ/N`` the neuron follows docs/method.md §3:

    v(0) = q/2
    v(t) = v(t-1) + x(t)
    s(t) = clip( floor(v(t)/q), 0, N )      # integer spike count, 0..N
    v(t) = v(t) - q·s(t)                    # reset by subtraction
    out(t) = q·s(t)

The membrane is kept in units of the quantum, ``u = v/q``: ``u(0) = 1/2``,
``u += x·N/λ``, ``s = clip(floor(u), 0, N)``, ``u -= s``. At the first step this is the
floating-point expression of :func:`multispike.convert.quant.quantize`, so at ``T = 1`` and
``N = L`` the neuron returns exactly the QANN activation. ``N = 1`` is the binary IF neuron.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .quant import level, needs_grad, threshold_view

__all__ = ["MultiLevelIFNeuron", "if_neuron"]


def if_neuron(x_seq: Tensor, threshold: Tensor, max_spikes: int, inplace: bool = False) -> Tensor:
    """Run the multi-level IF neuron over a sequence.

    Args:
        x_seq: input current, shape ``(T, B, C, ...)``; every step starts from rest.
        threshold: ``λ``, 0-d (per layer) or ``(C,)`` (per channel).
        max_spikes: ``N``, the most spikes a neuron emits in one step.
        inplace: without autograd, overwrite ``x_seq`` instead of allocating the membrane
            (same values; for inputs nothing else reads).

    Returns:
        ``q·s(t)`` for every step, shape ``(T, B, C, ...)``. Gradients pass straight
        through ``floor`` (BPTT over T).
    """
    lam = threshold_view(threshold, x_seq[0])
    scale = max_spikes / lam
    quantum = lam / max_spikes
    steps = x_seq.shape[0]
    grad = needs_grad(x_seq, lam)
    inplace = inplace and x_seq.dtype == torch.result_type(x_seq, scale)
    u: Tensor | float = 0.5
    outputs = []
    for t in range(steps):
        last = t + 1 == steps
        if grad:
            membrane = x_seq[t] * scale + u
            spikes = level(membrane, max_spikes)
            if not last:
                u = membrane - spikes
            outputs.append(spikes * quantum)
            continue
        membrane = (x_seq[t].mul_ if inplace else x_seq[t].mul)(scale).add_(u)
        if last:  # the membrane is not needed any more: reuse its memory
            outputs.append(membrane.floor_().clamp_(0, max_spikes).mul_(quantum))
        else:
            spikes = membrane.floor().clamp_(0, max_spikes)
            u = membrane.sub_(spikes)
            outputs.append(spikes.mul_(quantum))
    if steps == 1:
        return outputs[0].unsqueeze(0)
    return torch.stack(outputs)


class MultiLevelIFNeuron(nn.Module):
    """Multi-level IF neuron layer working on a time-flattened batch.

    Input and output have shape ``(T·B, C, ...)`` (time-major), the layout in which every
    stateless layer of the SNN processes all steps at once; ``timesteps`` (``T``) is set by
    :class:`~multispike.convert.snn.SpikingNetwork` before each forward. The membrane lives
    only inside one forward call, so the state is reset between inputs.

    Args:
        max_spikes: ``N``, spikes per neuron per step.
        threshold: initial ``λ`` (a float, or a 0-d / ``(C,)`` tensor for per channel).
        source: description of the QANN quantizer (or join) this neuron replaces.

    Attributes:
        inplace: without autograd, integrate into the input tensor instead of a new one, as
            ``nn.ReLU(inplace=True)`` does; :func:`~multispike.convert.to_snn` sets it where the
            graph shows the input is a fresh tensor no other node reads.
    """

    def __init__(self, max_spikes: int, threshold: float | Tensor = 1.0, source: str = "") -> None:
        super().__init__()
        if max_spikes < 1:
            raise ValueError(f"max_spikes must be >= 1, got {max_spikes}")
        self.max_spikes = int(max_spikes)
        self.threshold = nn.Parameter(torch.as_tensor(threshold, dtype=torch.float32).clone())
        self.source = source
        self.timesteps = 1
        self.inplace = False

    @property
    def quantum(self) -> Tensor:
        """``q = λ/N``, the value carried by one spike."""
        return self.threshold / self.max_spikes

    def forward(self, x: Tensor) -> Tensor:
        steps = self.timesteps
        if x.shape[0] % steps:
            raise RuntimeError(
                f"neuron input batch {x.shape[0]} is not a multiple of timesteps={steps}"
            )
        x_seq = x.reshape(steps, x.shape[0] // steps, *x.shape[1:])
        return if_neuron(x_seq, self.threshold, self.max_spikes, self.inplace).reshape(x.shape)

    def extra_repr(self) -> str:
        kind = "per_channel" if self.threshold.dim() else "per_layer"
        return f"max_spikes={self.max_spikes}, {kind}" + (", inplace" if self.inplace else "")
