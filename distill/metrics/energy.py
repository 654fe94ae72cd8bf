"""Energy per image from operation counts and a cost table (docs/method.md §6).

    E = Σ_layers Σ_kinds count[layer][kind] · cost[kind]

Kinds are split into operations (``macs``, ``synops``, ``membrane_updates``) and memory
accesses (``weight_reads``, ``activation_reads``, ``membrane_reads``, ``membrane_writes``,
``spike_writes``); the report gives the ops-only sum and the sum with memory. Default costs
(Horowitz, ISSCC 2014, 45 nm; accesses counted as in Lemaire et al., 2022) live in
``energy_costs.yaml`` beside this module, with their sources; any of them can be
overridden from a YAML or JSON file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from torch import Tensor, nn

from ...convert import model_device

__all__ = [
    "SYNAPTIC_LAYERS",
    "CostTable",
    "analog_counts",
    "energy",
    "fanout",
    "load_costs",
    "spiking_counts",
]


SYNAPTIC_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
"""Layers whose inputs are synapses: an input event costs one operation per fan-out."""


def fanout(layer: nn.Module, input_shape: tuple[int, ...]) -> Tensor:
    """Number of synapses leaving each input position of a conv/linear layer.

    ``fanout(p) = Σ_o [p ∈ RF(o)]`` over the layer's outputs ``o``: the gradient of
    ``Σ layer_ones(x)`` w.r.t. ``x``, where ``layer_ones`` is the layer with all weights 1
    (a transposed convolution of ones), so stride, padding (any mode), dilation and
    groups are counted exactly.

    Args:
        layer: ``nn.Conv{1,2,3}d`` or ``nn.Linear``.
        input_shape: one sample's input shape, e.g. ``(C, H, W)``.

    Returns:
        A tensor of ``input_shape`` with integer values.
    """
    if not isinstance(layer, SYNAPTIC_LAYERS):
        raise TypeError(f"fanout needs a Conv1d/2d/3d or Linear layer, got {type(layer).__name__}")
    weight = layer.weight.detach()
    x = torch.zeros(1, *input_shape, device=weight.device, requires_grad=True)
    ones = torch.ones_like(weight)
    with torch.enable_grad():
        if isinstance(layer, nn.Linear):
            y = F.linear(x, ones)
        else:
            y = layer._conv_forward(x, ones, None)
        (grad,) = torch.autograd.grad(y.sum(), x)
    return grad[0].round()


@dataclass(frozen=True)
class CostTable:
    """Energy in pJ of one operation (``ops``) or one memory access (``memory``) of each kind."""

    ops: dict[str, float]
    memory: dict[str, float]
    source: str

    def to_dict(self) -> dict:
        return {"ops_pj": dict(self.ops), "memory_pj": dict(self.memory), "source": self.source}


def _read_table(path: Path) -> dict:
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ValueError(f"energy cost table {path} is not valid YAML/JSON: {err}") from err
    if not isinstance(data, dict) or not set(data) <= {"ops", "memory"}:
        raise ValueError(
            f"energy cost table {path} must be a mapping with sections 'ops' and/or 'memory', "
            f"got {sorted(data) if isinstance(data, dict) else type(data).__name__}"
        )
    return data


def load_costs(path: str | Path | None = None) -> CostTable:
    """The default cost table, with the entries of ``path`` (YAML or JSON) replacing defaults.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: unknown section or kind, or a cost that is not a non-negative number.
    """
    default = yaml.safe_load(
        resources.files("multispike.distill.metrics").joinpath("energy_costs.yaml").read_text()
    )
    tables = {"ops": dict(default["ops"]), "memory": dict(default["memory"])}
    source = "multispike default (Horowitz ISSCC 2014, 45 nm; Lemaire et al. 2022)"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"energy cost table not found: {path}")
        for section, values in _read_table(path).items():
            if not isinstance(values, dict):
                raise ValueError(f"energy cost table {path}: '{section}' must map kinds to pJ")
            for kind, cost in values.items():
                if kind not in tables[section]:
                    raise ValueError(
                        f"energy cost table {path}: unknown {section} kind {kind!r}; "
                        f"valid: {sorted(tables[section])}"
                    )
                if not isinstance(cost, (int, float)) or cost < 0:
                    raise ValueError(f"energy cost table {path}: {section}.{kind} = {cost!r} "
                                     "must be a non-negative number of pJ")  # fmt: skip
                tables[section][kind] = float(cost)
        source = f"{source}, overridden by {path}"
    return CostTable(tables["ops"], tables["memory"], source)


def spiking_counts(activity: dict) -> dict[str, dict[str, float]]:
    """Per-layer operation and access counts per image from ``ActivityMonitor.compute()``.

    Synaptic layers: ``synops``, ``macs``, a weight read per synop or MAC, an input read
    per MAC. Neuron layers: ``membrane_updates`` (neurons × T), one membrane read and write
    each, one ``spike_writes`` per emitted event.
    """
    counts: dict[str, dict[str, float]] = {}
    for name, s in activity["synapses"].items():
        counts[name] = {
            "synops": s["synops"],
            "macs": s["macs"],
            "weight_reads": s["synops"] + s["macs"],
            "activation_reads": s["macs"],
        }
    for name, a in activity["neurons"].items():
        updates = a["membrane_updates_per_sample"]
        counts[name] = {
            "membrane_updates": updates,
            "membrane_reads": updates,
            "membrane_writes": updates,
            "spike_writes": a["events_per_sample"],
        }
    return counts


def analog_counts(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, dict[str, float]]:
    """Per-layer counts per image of a non-spiking network (ANN or QANN): every conv/linear
    does its dense MACs (``Σ fanout``), each reading one weight and one input.

    Args:
        model: the network (not modified; one forward pass of zeros under hooks).
        input_shape: one input's shape ``(C, H, W)``.
    """
    counts: dict[str, dict[str, float]] = {}

    def hook(name: str):
        def record(module: nn.Module, args: tuple, output) -> None:
            macs = float(fanout(module, tuple(args[0].shape[1:])).sum())
            counts[name] = {"macs": macs, "weight_reads": macs, "activation_reads": macs}

        return record

    layers = {n: m for n, m in model.named_modules() if isinstance(m, SYNAPTIC_LAYERS)}
    handles = [m.register_forward_hook(hook(n)) for n, m in layers.items()]
    try:
        device = model_device(model)
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        for handle in handles:
            handle.remove()
    return counts


def energy(counts: dict[str, dict[str, float]], costs: CostTable) -> dict:
    """Energy per image in pJ: ``{"layers": {name: {"ops", "memory", "total"}}, "ops",
    "memory", "total"}`` with ``ops = Σ count·cost`` over operation kinds and ``memory`` the
    same over memory kinds.
    """
    layers = {}
    for name, c in counts.items():
        ops = sum(c.get(kind, 0.0) * cost for kind, cost in costs.ops.items())
        memory = sum(c.get(kind, 0.0) * cost for kind, cost in costs.memory.items())
        layers[name] = {"ops": ops, "memory": memory, "total": ops + memory}
    ops = sum(v["ops"] for v in layers.values())
    memory = sum(v["memory"] for v in layers.values())
    return {"layers": layers, "ops": ops, "memory": memory, "total": ops + memory}
