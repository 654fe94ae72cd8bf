"""Exact event counting: spikes per neuron from an output, non-zeros and sums that do not
depend on the order of a float reduction (the counts are integers).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ...convert.quant import threshold_view

__all__ = ["count_nonzero", "exact_sum", "memory_order", "spike_counts"]


def spike_counts(output: Tensor, threshold: Tensor, max_spikes: int, timesteps: int) -> Tensor:
    """Integer spike counts ``round(out / q)``, ``q = λ/N``, as ``(T, B, ...)``.

    Args:
        output: a :class:`MultiLevelIFNeuron`'s time-flattened output ``(T·B, C, ...)``.
        threshold: its ``λ`` (0-d or ``(C,)``).
        max_spikes: its ``N``.
        timesteps: ``T``.
    """
    quantum = threshold_view(threshold.detach(), output) / max_spikes
    counts = (output.detach() / quantum).round_()
    return counts.reshape(timesteps, -1, *output.shape[1:])


def memory_order(x: Tensor) -> list[int]:
    """``x``'s dimensions from the largest stride to the smallest (its layout in memory)."""
    return sorted(range(x.dim()), key=lambda d: -x.stride(d))


def _flat(x: Tensor) -> Tensor:
    """``x``'s elements in memory order: a view when ``x`` is dense (any layout), else a copy."""
    return x.permute(memory_order(x)).reshape(-1)


def count_nonzero(x: Tensor) -> Tensor:
    """``Σ [x ≠ 0]`` as an exact integer (float64 0-d), in one pass over a byte mask."""
    dtype = torch.int32 if x.numel() < 2**31 else torch.int64
    return _flat(x).ne(0).view(torch.uint8).sum(dtype=dtype).to(torch.float64)


def exact_sum(x: Tensor) -> Tensor:
    """``Σ x`` of an integer-valued float tensor, exactly, as float64 0-d.

    On the CPU, where a float64 sum first copies the tensor to float64: float32 sums over
    chunks of ``k`` elements are exact while ``k · max|x| < 2²⁴`` (every partial sum is then a
    representable integer, in any order of addition) and the chunk totals add in float64.
    Elsewhere the float64 sum is one kernel, and needs no ``max|x|`` read back to the host.
    """
    flat = _flat(x.detach())
    if flat.device.type != "cpu" or flat.numel() == 0:
        return flat.sum(dtype=torch.float64)
    bound = max(1, math.ceil(float(torch.stack(torch.aminmax(flat)).abs().max())))
    k = max(1, 2**24 // bound)
    whole = flat.numel() // k * k
    head = flat[:whole].view(-1, k).sum(1, dtype=torch.float32).sum(dtype=torch.float64)
    return head + flat[whole:].sum(dtype=torch.float64)
