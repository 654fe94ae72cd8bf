"""Forward hooks on ``snn.net`` that feed the per-layer activity and synaptic-operation
Metrics of a spiking network.

A layer's input is a spike tensor when it comes from a neuron through ops that only move or
drop values (flatten/reshape, zero padding, slicing, max-pooling, concatenation of spike
tensors, dropout, identity); see :func:`spike_inputs`. Average pooling makes a value analog
(hardware could fold it into the next layer's weights; it is counted as MACs, the
conservative choice). Residual joins add currents into a membrane and are not counted as
synaptic operations.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, fx, nn
from torch.utils.hooks import RemovableHandle
from torchmetrics import Metric

from ...convert import (
    MultiLevelIFNeuron,
    SpikingNetwork,
    model_device,
    neurons,
)
from ...convert.distributed import all_reduce_sum
from ...convert.modules import get_module
from ...convert.signals import traces_to_source
from .activity import SpikeActivity, activity_compute
from .counts import spike_counts
from .energy import SYNAPTIC_LAYERS, fanout
from .synops import SynapticOperations

__all__ = ["ActivityMonitor", "spike_inputs"]


def spike_inputs(gm: fx.GraphModule) -> dict[str, bool]:
    """For every conv/linear call site of ``gm``: is its input a spike tensor?

    A spike tensor is a :class:`MultiLevelIFNeuron`'s output passed on by value-preserving
    ops (:func:`~multispike.convert.graph.preserved_inputs`). A sum of spike tensors is not
    one: synaptic operations count a non-zero input as one neuron's event, and a sum's
    values are not.

    Raises:
        ValueError: a conv/linear module is called more than once (its counts would mix).
    """

    def is_neuron(node: fx.Node) -> bool:
        return node.op == "call_module" and isinstance(
            get_module(gm, node.target), MultiLevelIFNeuron
        )

    memo: dict[fx.Node, bool] = {}
    result: dict[str, bool] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module" and isinstance(get_module(gm, node.target), SYNAPTIC_LAYERS):
            if node.target in result:
                raise ValueError(
                    f"layer {node.target} is called twice in the graph: synaptic operations "
                    "are counted per module, so reused conv/linear layers are not supported"
                )
            result[node.target] = traces_to_source(
                gm, node.args[0], is_neuron, through_adds=False, memo=memo
            )
    return result


# --------------------------------------------------------------------------- hooks


class ActivityMonitor:
    """Per-layer spike activity and synaptic operations of a SNN, from forward hooks.

    >>> monitor = ActivityMonitor(snn)
    >>> with monitor:                 # hooks live inside the block only
    ...     snn(images)
    >>> monitor.compute()["total"]["synops"]

    Works on a :class:`SpikingNetwork` (or its ``net``); use ``attach()``/``remove()``
    instead of ``with`` to keep the hooks across a Lightning epoch, and ``reset()``
    between epochs. Every neuron gets a :class:`SpikeActivity`, every conv/linear module a
    :class:`SynapticOperations` (spiking or analog input, see :func:`spike_inputs`).

    Args:
        snn: the spiking network to watch (not modified; hooks are removable).
    """

    def __init__(self, snn: SpikingNetwork | fx.GraphModule) -> None:
        self.net = snn.net if isinstance(snn, SpikingNetwork) else snn
        if not isinstance(self.net, fx.GraphModule):
            raise TypeError(
                f"ActivityMonitor needs a SpikingNetwork from multispike.convert.to_snn, got "
                f"{type(snn).__name__}"
            )
        self.neurons = neurons(self.net)
        if not self.neurons:
            raise ValueError("ActivityMonitor: the network has no MultiLevelIFNeuron to watch")
        self.spiking = spike_inputs(self.net)
        self.activity = {name: SpikeActivity() for name in self.neurons}
        self.synapses = {name: SynapticOperations() for name in self.spiking}
        self._fanouts: dict[tuple[str, tuple[int, ...]], Tensor] = {}
        self.handles: list[RemovableHandle] = []

    # -- hooks
    def _timesteps(self) -> int:
        return next(iter(self.neurons.values())).timesteps

    def _neuron_hook(self, name: str):
        metric = self.activity[name]

        def hook(module: MultiLevelIFNeuron, args: tuple, output: Tensor) -> None:
            counts = spike_counts(output, module.threshold, module.max_spikes, module.timesteps)
            metric.update(counts)

        return hook

    def _synapse_hook(self, name: str):
        metric, spiking = self.synapses[name], self.spiking[name]

        def hook(module: nn.Module, args: tuple, output: Tensor) -> None:
            x = args[0]
            key = (name, tuple(x.shape[1:]))
            if key not in self._fanouts:
                self._fanouts[key] = fanout(module, key[1])
            metric.update(x, self._fanouts[key], spiking, self._timesteps())

        return hook

    def attach(self) -> ActivityMonitor:
        """Register the forward hooks (idempotent); returns ``self``."""
        if self.handles:
            return self
        device = model_device(self.net)
        for name, module in self.neurons.items():
            self.activity[name].to(device)
            self.handles.append(module.register_forward_hook(self._neuron_hook(name)))
        for name in self.synapses:
            self.synapses[name].to(device)
            module = get_module(self.net, name)
            self.handles.append(module.register_forward_hook(self._synapse_hook(name)))
        return self

    def remove(self) -> None:
        """Remove every hook this monitor registered."""
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    def reset(self) -> None:
        """Zero every counter."""
        for metric in self.metrics():
            metric.reset()

    def metrics(self) -> Iterator[Metric]:
        yield from self.activity.values()
        yield from self.synapses.values()

    def __enter__(self) -> ActivityMonitor:
        return self.attach()

    def __exit__(self, *exc) -> None:
        self.remove()

    # -- results
    def compute(self) -> dict[str, dict]:
        """Per-layer values and network totals, as Python floats (per sample, all steps).

        Returns:
            ``{"neurons": {path: SpikeActivity values}, "synapses": {path: {"synops",
            "macs", "spiking"}}, "total": {...}}``; totals hold ``synops``, ``macs``,
            ``events``, ``membrane_updates`` (per sample) and the network-wide
            ``events_per_neuron_step``, ``mean_payload``, ``silent_fraction`` and
            ``activation_sparsity``.
        """
        neurons = {n: _floats(m.compute()) for n, m in self.activity.items() if m.update_count}
        synapses = {
            n: dict(_floats(m.compute()), spiking=self.spiking[n])
            for n, m in self.synapses.items()
            if m.update_count
        }
        if not neurons:
            raise RuntimeError("ActivityMonitor saw no forward pass: run the SNN inside `with`")
        seen = [m for m in self.activity.values() if m.update_count]
        keys = SpikeActivity._STATES
        local = torch.stack([sum(getattr(m, key) for m in seen) for key in keys[:-1]])
        local = torch.cat([local, seen[0].samples.reshape(1)])  # every layer sees the samples
        sums = dict(zip(keys, all_reduce_sum(local.cpu()), strict=True))  # over ranks
        activity = _floats(activity_compute(sums))
        total = {
            "synops": sum(s["synops"] for s in synapses.values()),
            "macs": sum(s["macs"] for s in synapses.values()),
            "events": activity.pop("events_per_sample"),
            "membrane_updates": activity.pop("membrane_updates_per_sample"),
            **activity,
        }
        return {"neurons": neurons, "synapses": synapses, "total": total}


def _floats(values: dict[str, Tensor]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items()}
