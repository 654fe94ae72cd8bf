"""The converted SNN in sinabs (SynSense's simulator, the toolchain to Speck / DynapCNN).

:func:`to_sinabs` keeps the SNN's graph and replaces every :class:`MultiLevelIFNeuron`
(threshold ``λ``, ``N`` spikes per step) by the same arithmetic in sinabs terms::

    x · (N/λ)  →  IAFSqueeze(spike_threshold=1, spike_fn=MaxSpike(N), reset_fn=MembraneSubtract())
               →  s · (λ/N)

sinabs's IAF integrates ``v ← 1·v + x'``, fires ``s = [v > 0]·trunc(v / 1)`` capped at
``N`` (``MaxSpike``) and subtracts ``s``: with the membrane starting at ``v(0) = 1/2``, in
units of the quantum ``q = λ/N``, that is multispike's ``u += x·N/λ; s = clip(floor(u), 0,
N); u -= s`` operation for operation, so the outputs are **bit-identical** at every step
(tested on zoo models, binary and multi-level, ``T = 1`` and ``T = 4``). The scalings are
buffers multiplied in the graph (``torch.mul``), exactly as the neuron computes them, not
folded into weights (folding rounds differently).

Layout and state, in sinabs's conventions:

- input ``(B·T, ...)`` **batch-major** (``IAFSqueeze(num_timesteps=T)``), output
  ``(B·T, classes)``; multispike's own runs are time-major ``(T, B, ...)``;
- sinabs starts a membrane at 0 and resets to 0: call :func:`reset_sinabs` (or, per layer,
  ``layer.init_state_with_shape((B, *layer.neuron_shape))`` then fill ``v_mem`` with
  ``layer.v_init``) before each batch for ``v(0) = 1/2``.

:func:`save_sinabs` writes the module with ``torch.save``: it holds only torch and sinabs
classes (an ``fx.GraphModule``), so a sinabs user loads it with
``torch.load(path, weights_only=False)`` — a pickle: load only files you trust.
"""

from __future__ import annotations

from pathlib import Path

import nir
import torch
from torch import Tensor, fx

from ...convert import MultiLevelIFNeuron, SpikingNetwork
from ...convert.modules import get_module
from ...convert.quant import threshold_view
from ..folder.schema import MAX_TIMESTEPS
from .nir import graph_with_shapes
from .nir_read import read_nir
from .snntorch import ElementwiseScale

__all__ = ["reset_sinabs", "run_sinabs", "save_sinabs", "sinabs_from_nir", "to_sinabs"]


def _sinabs():
    try:
        import sinabs.activation
        import sinabs.layers
    except ImportError as err:
        raise ImportError(
            "to_sinabs needs sinabs: pip install sinabs (its nir<=1.0.4 pin conflicts with "
            "multispike's NIR export; pip install --no-deps sinabs pbr keeps both)"
        ) from err
    return sinabs


def to_sinabs(model: SpikingNetwork) -> fx.GraphModule:
    """The spiking network with sinabs IAF neurons, bit-identical to ``model`` at every step.

    Args:
        model: a :class:`SpikingNetwork` (not modified).

    Returns:
        An ``fx.GraphModule`` of torch and sinabs modules taking ``(B·T, *input_shape)``
        batch-major and returning ``(B·T, classes)``, ``T = model.timesteps``. Call
        :func:`reset_sinabs` before each batch.
    """
    sinabs = _sinabs()
    if not isinstance(model, SpikingNetwork):
        raise TypeError(f"to_sinabs expects a SpikingNetwork, got {type(model).__name__}")
    gm = graph_with_shapes(model)
    graph = gm.graph
    for node in list(graph.nodes):
        if node.op != "call_module":
            continue
        neuron = get_module(gm, node.target)
        if not isinstance(neuron, MultiLevelIFNeuron):
            continue
        shape = tuple(node.meta["tensor_meta"].shape)
        lam = threshold_view(neuron.threshold.detach().cpu(), torch.empty(shape))
        prefix = node.target.replace(".", "_")
        gm.register_buffer(f"{prefix}_scale", neuron.max_spikes / lam)
        gm.register_buffer(f"{prefix}_quantum", lam / neuron.max_spikes)
        iaf = sinabs.layers.IAFSqueeze(
            num_timesteps=model.timesteps,
            spike_threshold=torch.tensor(1.0),
            spike_fn=sinabs.activation.MaxSpike(neuron.max_spikes),
            reset_fn=sinabs.activation.MembraneSubtract(),
        )
        iaf.neuron_shape, iaf.v_init = shape[1:], 0.5
        gm.add_submodule(node.target, iaf)
        with graph.inserting_before(node):
            scale = graph.get_attr(f"{prefix}_scale")
            current = graph.call_function(torch.mul, (node.args[0], scale))
        node.args = (current,)
        with graph.inserting_after(node):
            quantum = graph.get_attr(f"{prefix}_quantum")
        with graph.inserting_after(quantum):
            value = graph.call_function(torch.mul, (node, quantum))
        for user in [u for u in node.users if u is not value]:
            user.replace_input_with(node, value)
    graph.lint()
    gm.recompile()
    return gm


def sinabs_from_nir(graph: nir.NIRGraph | str | Path, timesteps: int) -> torch.nn.Module:
    """Read a NIR graph of :func:`~multispike.pipelines.export.export_nir` into sinabs with the
    payload NIR cannot say restored: each ``nir.IF`` becomes an ``IAFSqueeze`` with
    ``MaxSpike(metadata["max_spikes"])``, subtractive reset and its membrane starting at
    ``metadata["v_init"]`` (after :func:`reset_sinabs`).

    The graph folds each quantum into the next layer's weights (``W·q``) and fires at
    ``v ≥ q``, so outputs equal multispike's up to float rounding of the folded weights
    (bit for bit where nothing is folded, e.g. a per-layer quantum of a power of two).
    Input and output as :func:`to_sinabs` (batch-major ``(B·T, ...)``, ``T = timesteps``).

    Raises:
        FileNotFoundError: no file at ``graph``.
        ExportError: a corrupt file or a malformed graph, naming the file and node
            (:func:`~multispike.pipelines.export.nir_read.validate_nir_graph`).
    """
    sinabs = _sinabs()
    import nirtorch

    is_int = isinstance(timesteps, int) and not isinstance(timesteps, bool)
    if not (is_int and 1 <= timesteps <= MAX_TIMESTEPS):
        raise ValueError(f"timesteps: an integer from 1 to {MAX_TIMESTEPS}, got {timesteps!r}")
    graph = read_nir(graph)

    def if_neuron(node: nir.IF) -> torch.nn.Module:
        layer = sinabs.layers.IAFSqueeze(
            num_timesteps=timesteps,
            spike_threshold=torch.as_tensor(node.v_threshold, dtype=torch.float32),
            spike_fn=sinabs.activation.MaxSpike(int(node.metadata.get("max_spikes", 1))),
            reset_fn=sinabs.activation.MembraneSubtract(),
        )
        layer.neuron_shape = tuple(node.v_threshold.shape)
        layer.v_init = torch.as_tensor(node.metadata.get("v_init", 0.0), dtype=torch.float32)
        return layer

    def conv(node: nir.Conv2d) -> torch.nn.Module:
        weight = torch.as_tensor(node.weight, dtype=torch.float32)
        layer = torch.nn.Conv2d(
            weight.shape[1] * node.groups, weight.shape[0], tuple(weight.shape[2:]),
            stride=tuple(node.stride), padding=tuple(node.padding),
            dilation=tuple(node.dilation), groups=node.groups,
        )  # fmt: skip
        layer.weight.data, layer.bias.data = weight, torch.as_tensor(node.bias).float()
        return layer

    def affine(node: nir.Affine) -> torch.nn.Module:
        weight = torch.as_tensor(node.weight, dtype=torch.float32)
        layer = torch.nn.Linear(weight.shape[1], weight.shape[0])
        layer.weight.data, layer.bias.data = weight, torch.as_tensor(node.bias).float()
        return layer

    node_map = {
        nir.IF: if_neuron,
        nir.Conv2d: conv,
        nir.Affine: affine,
        nir.AvgPool2d: lambda n: torch.nn.AvgPool2d(
            tuple(n.kernel_size), tuple(n.stride), tuple(n.padding)
        ),
        nir.Flatten: lambda n: torch.nn.Flatten(1),  # NIR's is unbatched (start_dim 0)
        nir.Scale: lambda n: ElementwiseScale(n.scale),
    }
    return nirtorch.nir_to_torch(graph, node_map)


def reset_sinabs(net: torch.nn.Module, batch_size: int) -> None:
    """Start every IAF of a :func:`to_sinabs` / :func:`sinabs_from_nir` network at its
    ``v(0)`` (``1/2`` of a quantum) for ``batch_size`` samples (sinabs starts at 0)."""
    for layer in net.modules():
        if hasattr(layer, "v_init") and hasattr(layer, "init_state_with_shape"):
            layer.init_state_with_shape((batch_size, *layer.neuron_shape))
            layer.v_mem.copy_(torch.as_tensor(layer.v_init).expand_as(layer.v_mem))


def save_sinabs(model: SpikingNetwork, path: str | Path) -> Path:
    """Write :func:`to_sinabs` of ``model`` with ``torch.save``; returns ``path``."""
    path = Path(path)
    torch.save(to_sinabs(model), path)
    return path


def run_sinabs(net: torch.nn.Module, frames: Tensor) -> Tensor:
    """``(T, B, classes)`` of a :func:`to_sinabs` / :func:`sinabs_from_nir` network on
    time-major ``(T, B, ...)``
    input (multispike's layout; repeat an image ``T`` times for a static input)."""
    steps, batch = frames.shape[:2]
    reset_sinabs(net, batch)
    out = net(frames.transpose(0, 1).reshape(batch * steps, *frames.shape[2:]))
    out = out[0] if isinstance(out, tuple) else out  # nirtorch's executor adds its state
    return out.reshape(batch, steps, *out.shape[1:]).transpose(0, 1)
