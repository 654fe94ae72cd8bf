"""Metrics of a spiking network: accuracy at every step, spike activity, synaptic operations.

Pure ``_update``/``_compute`` helpers do the arithmetic; the :class:`torchmetrics.Metric`
classes only hold summed states (so they work in DDP and in Lightning's ``self.log``), and
:class:`ActivityMonitor` feeds the per-layer metrics from forward hooks on ``snn.net``.

Counting rules (names after NeuroBench):

- spike count of a neuron at step ``t``: ``s = round(out / q)`` with quantum ``q = λ/N``;
  a multi-level event is *one* event carrying the payload ``s ∈ 1..N``;
- activation sparsity: ``1 − events / (neurons · T)``;
- membrane updates: one per neuron per step;
- synaptic operations (event-driven accumulates) of a conv/linear layer whose input is a
  spike tensor: ``Σ_p event(p) · fanout(p)``, where ``fanout(p)`` is the number of
  (output channel, output position) pairs whose receptive field holds input position
  ``p`` — exact for stride, padding, dilation and groups (see :func:`.energy.fanout`);
- MACs of a conv/linear layer whose input is analog (the first layer, fed by the image,
  or any layer after average pooling or another non-spiking op): ``Σ_p fanout(p)`` per
  step, i.e. the dense multiply-accumulate count (products with zero padding excluded);
  when that input is the same at every step (a static image presented ``T`` times) the
  layer is computed once, so its MACs count once, not ``T`` times.

A layer's input is a spike tensor when it comes from a neuron through ops that only move
or drop values (flatten/reshape, zero padding, slicing, max-pooling, concatenation of
spike tensors, dropout, identity); see :func:`spike_inputs`. Average pooling makes a
value analog (hardware could fold it into the next layer's weights; we count it as MACs,
the conservative choice). Residual joins add currents into a membrane and are not
counted as synaptic operations.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor, fx, nn
from torch.utils.hooks import RemovableHandle
from torchmetrics import Metric

from multispike.convert import (
    MultiLevelIFNeuron,
    SpikingNetwork,
    cumulative_mean,
    model_device,
    neurons,
)
from multispike.convert.distributed import all_reduce_sum
from multispike.convert.graph import get_module, traces_to_source
from multispike.convert.quant import threshold_view

from .energy import SYNAPTIC_LAYERS, fanout

__all__ = [
    "ActivityMonitor",
    "SpikeActivity",
    "StepAccuracy",
    "StepAgreement",
    "SynapticOperations",
    "spike_counts",
    "spike_inputs",
    "step_accuracy",
]


# --------------------------------------------------------------------------- accuracy at every step


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


def _memory_order(x: Tensor) -> list[int]:
    """``x``'s dimensions from the largest stride to the smallest (its layout in memory)."""
    return sorted(range(x.dim()), key=lambda d: -x.stride(d))


def _flat(x: Tensor) -> Tensor:
    """``x``'s elements in memory order: a view when ``x`` is dense (any layout), else a copy."""
    return x.permute(_memory_order(x)).reshape(-1)


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


def _activity_compute(s: dict[str, Tensor]) -> dict[str, Tensor]:
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
        return _activity_compute({name: getattr(self, name) for name in self._STATES})


# --------------------------------------------------------------------------- synaptic operations


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
        order = _memory_order(x)
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
        activity = _floats(_activity_compute(sums))
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
