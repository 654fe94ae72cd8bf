"""The spike avalanche, measured: activity of every residual stream along depth, per join form.

For each residual join (in depth order) the *stream* leaving it is measured:

- ``neuron`` stream (``sparse`` form, and post-activation joins): the barrier neuron's
  integer spike counts ``s = round(out / q)``, ``q = λ/N``;
- ``spike-sum`` stream (``sew`` form): the join adds spike streams without re-quantizing, so
  its count at every position is the *sum of the spike counts* added there (counts are
  carried through slicing, zero-padding, max-pooling and earlier sums alongside the values);
- ``analog`` stream (``analog`` form): real values; an event is a non-zero value and its
  payload is ``|v| / q_ref``, the magnitude in quanta of the reference barrier neuron at the
  same depth (the ``sparse`` form's barrier when it is measured too), so all three forms
  count in the same unit.

Per stream and image (averaged over images, summed over the ``T`` steps where it says so):
``events_per_neuron_step`` (non-zero counts / (neurons · T)), ``spikes_per_neuron_step``
(Σ counts / (neurons · T)), ``mean_payload`` (Σ counts / events), ``silent_fraction``
(neurons with no event in all ``T`` steps) and ``events_per_sample``. Network totals per
image: ``neuron_events`` (every IF neuron, from
:class:`~multispike.distill.metrics.ActivityMonitor`), ``stream_events`` (join streams that
are not neurons, i.e. the sums sent to the next block) and ``total_events`` (their sum), plus
synaptic operations and MACs; ``accuracy`` is top-1 after ``T`` steps.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, fx, nn
from tqdm.auto import tqdm

from ...convert import MultiLevelIFNeuron, SpikingNetwork, model_device, to_snn
from ...convert.calibrate import batch_inputs
from ...convert.modules import get_module
from ...convert.quant import threshold_view
from ...convert.residual import (
    JOIN_MODES,
    is_spike_stream,
    residual_joins,
    rewire_residual,
)
from ...convert.signals import is_add, preserved_inputs, signal_users
from ...distill.metrics import ActivityMonitor, SpikeActivity, StepAccuracy

__all__ = ["avalanche", "measure_streams", "plot_avalanche", "save_avalanche"]

_STREAM_KEYS = (
    "events_per_neuron_step",
    "spikes_per_neuron_step",
    "mean_payload",
    "silent_fraction",
    "events_per_sample",
)


class _CountingInterpreter(fx.Interpreter):
    """Runs the spiking graph and carries integer spike counts next to spike-stream values."""

    def __init__(self, net: fx.GraphModule, probe: _StreamProbe) -> None:
        super().__init__(net)
        self.probe = probe
        self.counts: dict[fx.Node, Tensor] = {}

    def run_node(self, node: fx.Node) -> Any:
        value = super().run_node(node)
        count = self._count(node, value)
        if count is not None:
            self.counts[node] = count
        stream = self.probe.streams.get(node)
        if stream is not None:
            self.probe.record(stream, node, value, count)
        for dead in self.user_to_last_uses.get(node, []):
            self.counts.pop(dead, None)
        return value

    def _count(self, node: fx.Node, value: Any) -> Tensor | None:
        if not isinstance(value, Tensor):
            return None
        if node.op == "call_module":
            module = get_module(self.module, node.target)
            if isinstance(module, MultiLevelIFNeuron):
                quantum = threshold_view(module.threshold.detach(), value) / module.max_spikes
                return torch.round(value.detach() / quantum)
        # counts follow is_spike_stream: sums and value-preserving ops of counted nodes
        inputs = node.args[:2] if is_add(node) else preserved_inputs(self.module, node)
        if not inputs or not all(isinstance(a, fx.Node) and a in self.counts for a in inputs):
            return None
        if is_add(node):
            return self.counts[inputs[0]] + self.counts[inputs[1]]
        counted = set(inputs)  # the other arguments (shapes, indices) keep their values
        args, kwargs = fx.node.map_arg(
            (node.args, node.kwargs), lambda n: self.counts[n] if n in counted else self.env[n]
        )
        if node.op == "call_module":
            return get_module(self.module, node.target)(*args, **kwargs)
        if node.op == "call_function":
            return node.target(*args, **kwargs)
        return getattr(args[0], node.target)(*args[1:], **kwargs)


class _Stream:
    """One join's stream: where it is read, its kind, its reference quantum, its metric."""

    def __init__(self, index: int, join, node: fx.Node, kind: str) -> None:
        self.index, self.join, self.node, self.kind = index, join, node, kind
        self.quantum: Tensor | None = None
        self.metric = SpikeActivity()


class _StreamProbe(nn.Module):
    """Wraps a spiking graph so that a forward pass also feeds every join stream's metric."""

    def __init__(self, net: fx.GraphModule, streams: list[_Stream]) -> None:
        super().__init__()
        self.net = net
        self.streams = {s.node: s for s in streams}

    def forward(self, x: Tensor) -> Tensor:
        return _CountingInterpreter(self.net, self).run(x)

    def record(self, stream: _Stream, node: fx.Node, value: Tensor, count: Tensor | None) -> None:
        steps = next(m for m in self.net.modules() if isinstance(m, MultiLevelIFNeuron)).timesteps
        if stream.kind == "analog":
            if stream.quantum is None:
                raise ValueError(
                    f"join {stream.join.name} has an analog stream: pass reference quanta "
                    "(measure the 'sparse' form alongside) to express it in spikes"
                )
            count = value.detach().abs() / threshold_view(stream.quantum, value)
        stream.metric.to(value.device).update(count.reshape(steps, -1, *value.shape[1:]))


def _streams(net: fx.GraphModule) -> list[_Stream]:
    streams = []
    for index, join in enumerate(residual_joins(net)):
        if join.barrier is not None:
            (node,) = signal_users(join.node)
            stream = _Stream(index, join, node, "neuron")
            stream.quantum = get_module(net, join.barrier).quantum.detach()
        else:
            kind = "spike-sum" if is_spike_stream(net, join.node) else "analog"
            stream = _Stream(index, join, join.node, kind)
        streams.append(stream)
    return streams


@torch.no_grad()
def measure_streams(
    snn: SpikingNetwork,
    data: Iterable,
    *,
    reference_quanta: Sequence[Tensor | None] | None = None,
    num_batches: int | None = None,
    progress: bool = True,
    desc: str = "avalanche",
) -> dict[str, Any]:
    """Activity of every join stream of ``snn``, network totals and accuracy on ``data``.

    Args:
        snn: a :class:`~multispike.convert.SpikingNetwork` (not modified).
        data: batches of ``(images, labels)`` (labels optional: no accuracy without them).
        reference_quanta: per join (depth order), the quantum that analog streams are
            counted in (default: none; analog streams then raise).
        num_batches: stop after this many batches.
        progress: show a tqdm bar.
        desc: the bar's label.

    Returns:
        ``{"joins": [{index, name, block, kind, quantum, neurons, <activity>}],
        "totals": {...}, "accuracy": float | None, "timesteps": T, "samples": int}``.
    """
    streams = _streams(snn.net)
    if reference_quanta is not None:
        for stream, quantum in zip(streams, reference_quanta, strict=False):
            if stream.kind == "analog" and quantum is not None:
                stream.quantum = quantum
    probe = SpikingNetwork(_StreamProbe(snn.net, streams), snn.timesteps, snn.input_shape)
    accuracy = StepAccuracy(snn.timesteps)
    monitor = ActivityMonitor(snn)
    device = model_device(snn)
    was_training = snn.training
    snn.eval()
    seen, samples, labelled = 0, 0, False
    try:
        with monitor:
            for batch in tqdm(data, desc=desc, disable=not progress, total=num_batches):
                if num_batches is not None and seen >= num_batches:
                    break
                x = batch_inputs(batch).to(device)
                out = probe(x)
                if isinstance(batch, (list, tuple)) and len(batch) > 1:
                    accuracy.update(out.cpu(), batch[1].cpu())
                    labelled = True
                seen, samples = seen + 1, samples + x.shape[0]
    finally:
        snn.train(was_training)
    if not seen:
        raise ValueError("measure_streams: data yielded no batch")
    joins = []
    for stream in streams:
        values = {k: float(v) for k, v in stream.metric.compute().items()}
        neurons = stream.metric.neurons / stream.metric.samples
        joins.append(
            dict(
                index=stream.index,
                name=stream.join.name,
                block=stream.join.block,
                kind=stream.kind,
                quantum=None if stream.quantum is None else float(stream.quantum.mean()),
                neurons=int(neurons),
                **{k: values[k] for k in _STREAM_KEYS},
            )
        )
    total = monitor.compute()["total"]
    extra = sum(j["events_per_sample"] for j in joins if j["kind"] != "neuron")
    totals = dict(
        neuron_events=total["events"],
        stream_events=extra,
        total_events=total["events"] + extra,
        neuron_events_per_neuron_step=total["events_per_neuron_step"],
        mean_payload=total["mean_payload"],
        silent_fraction=total["silent_fraction"],
        synops=total["synops"],
        macs=total["macs"],
    )
    acc = float(accuracy.compute().reshape(-1)[-1]) if labelled else None
    return dict(joins=joins, totals=totals, accuracy=acc, timesteps=snn.timesteps, samples=samples)


def _barrier_quanta(snn: SpikingNetwork) -> list[Tensor | None]:
    return [s.quantum if s.kind == "neuron" else None for s in _streams(snn.net)]


def avalanche(
    qann: fx.GraphModule | dict[str, fx.GraphModule],
    data: Iterable,
    *,
    modes: Sequence[str] = JOIN_MODES,
    calibration: Iterable | None = None,
    timesteps: int = 1,
    max_spikes: int | None = None,
    num_batches: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Measure the spike avalanche of the ``sparse``/``sew``/``analog`` forms of one network.

    Args:
        qann: a calibrated QANN (each form is :func:`rewire_residual` of it, new quantizers
            calibrated on ``calibration``), or ``{mode: rewired QANN}`` already prepared
            (e.g. fine-tuned).
        data: evaluation batches ``(images, labels)``.
        modes: the forms to measure (ignored when ``qann`` is a dict).
        calibration: batches for the thresholds the rewiring adds (default: ``data``).
        timesteps: ``T``.
        max_spikes: ``N`` (default ``L``).
        num_batches: evaluation batches per form.
        progress: show progress bars.

    Returns:
        ``{"timesteps", "max_spikes", "forms": {mode: measure_streams(...)}}``; analog
        streams are counted in the quanta of the ``sparse`` form's barriers.
    """
    if isinstance(qann, dict):
        forms = dict(qann)
    else:
        unknown = [m for m in modes if m not in JOIN_MODES]
        if unknown:
            raise ValueError(f"unknown mode(s) {unknown}; choose from {', '.join(JOIN_MODES)}")
        calib = calibration if calibration is not None else data
        forms = {
            m: rewire_residual(qann, m, calib, num_batches=num_batches, progress=progress)
            for m in modes
        }
    snns = {m: to_snn(q, max_spikes=max_spikes, timesteps=timesteps) for m, q in forms.items()}
    reference = _barrier_quanta(snns["sparse"]) if "sparse" in snns else None
    order = sorted(snns, key=lambda m: m != "sparse")
    results = {
        m: measure_streams(
            snns[m],
            data,
            reference_quanta=reference,
            num_batches=num_batches,
            progress=progress,
            desc=f"avalanche {m}",
        )  # fmt: skip
        for m in order
    }
    first = next(iter(snns.values()))
    return dict(
        timesteps=timesteps,
        max_spikes=first.net.meta["multispike"]["max_spikes"],
        forms={m: results[m] for m in forms},
    )


def plot_avalanche(result: dict[str, Any], path: str | Path) -> Path:
    """Write a PNG: spikes per neuron per step and events per neuron per step along depth.

    Args:
        result: the output of :func:`avalanche`.
        path: the PNG file to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    panels = (
        ("spikes_per_neuron_step", "spikes / neuron / step"),
        ("events_per_neuron_step", "events / neuron / step"),
        ("mean_payload", "mean payload (spikes / event)"),
    )
    for ax, (key, label) in zip(axes, panels, strict=True):
        for mode, form in result["forms"].items():
            depth = [j["index"] + 1 for j in form["joins"]]
            acc = form["accuracy"]
            tag = f"{mode} ({acc:.1%})" if acc is not None else mode
            ax.plot(depth, [j[key] for j in form["joins"]], marker="o", label=tag)
        ax.set_xlabel("residual join (depth)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"Residual stream activity, T={result['timesteps']}, N={result['max_spikes']}")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def save_avalanche(result: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``avalanche.json`` and ``avalanche.png`` into ``out_dir``; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "avalanche.json"
    json_path.write_text(json.dumps(result, indent=2))
    return json_path, plot_avalanche(result, out / "avalanche.png")
