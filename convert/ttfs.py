"""Time-to-first-spike (TTFS) code of a quantized ANN: one spike per neuron and input, its
time carries the level.

Every quantizer of the QANN (threshold ``λ``, ``L`` levels) becomes a :class:`TTFSNeuron`.
A neuron layer at depth ``d`` (neuron layers on the longest path from the input, itself
included) owns the window of ``L`` steps ``[(d − 1)·L, d·L)``. It integrates what its
synapses deliver during the previous window and fires **once**, at window step

    t = L − k,   k = clip(floor(z·L/λ + 1/2), 0, L)     (the QANN's level; k = 0: silent)

so a spike at window step ``t`` decodes to ``(λ/L)·(L − t)``: the earlier, the larger.

- **Latency**: the last neuron layer fires within window ``D`` (``D`` = network depth in
  neuron layers), so the readout has its input after ``D·L`` steps
  (:attr:`TTFSNetwork.latency_steps`); layers are not pipelined.
- **Events**: one per non-zero activation, at most one per neuron and input; the payload is
  the time, one event of one bit (rate codes send ``k`` events, multi-level codes one event
  of ``log2(N + 1)`` bits).
- **Residual joins**: the shortcut's spikes arrive windows earlier than the residual
  branch's; a join delays them to the branch's window (a buffer of the decoded values), so
  both inputs of a join share one window. The delay costs latency only through the longest
  path, which :attr:`latency_steps` counts.

**Exactness.** Each layer sums its decoded window once: ``(λ/L)·(L − t)`` with ``L − t = k``
recovered exactly (small integers), the very expression of the QANN's quantizer, so the
logits equal the QANN's bit for bit (tested). A TTFS chip differs in how it sums: its
membrane integrates spikes in arrival order through a time kernel (an input spike at ``t``
adds ``w·(L − t)·λ/L`` by the window's end, a ramp), which rounds differently in fixed
point, and it fires when the membrane crosses a threshold ramp, with the step as the
resolution of ``k``; jitter of one step changes a value by ``λ/L``.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, fx, nn

from .calibrate import quantizers
from .modules import set_module
from .quant import threshold_view

__all__ = ["TTFSNetwork", "TTFSNeuron", "to_ttfs"]


class TTFSNeuron(nn.Module):
    """One TTFS layer: spike times ``t = L − k`` from the pre-activation, decoded once.

    Args:
        levels: ``L``, steps of the layer's window (and levels of the value it codes).
        threshold: ``λ`` (0-d per layer, ``(C,)`` per channel).
        source: the replaced call site (for reports).

    After a forward pass with ``record = True``, :attr:`spike_times` holds the window step of
    every neuron's spike (``uint8``; ``L`` means no spike).
    """

    def __init__(self, levels: int, threshold: Tensor, source: str = "") -> None:
        super().__init__()
        self.levels = int(levels)
        self.register_buffer("threshold", threshold.detach().clone())
        self.source = source
        self.record = False
        self.spike_times: Tensor | None = None

    def forward(self, z: Tensor) -> Tensor:
        lam = threshold_view(self.threshold, z)
        levels = self.levels
        k = z.mul(levels / lam).add_(0.5).floor_().clamp_(0, levels)
        times = levels - k  # window step of the spike; L: silent
        if self.record:
            self.spike_times = times.to(torch.uint8)
        return (levels - times).mul_(lam / levels)  # the receiving layer's decoded window

    def extra_repr(self) -> str:
        kind = "per_channel" if self.threshold.dim() else "per_layer"
        return f"levels={self.levels}, {kind}"


def _depths(gm: fx.GraphModule) -> dict[fx.Node, int]:
    """Neuron layers on the longest path from the input to each node (itself included)."""
    depth: dict[fx.Node, int] = {}
    for node in gm.graph.nodes:
        before = max((depth[a] for a in node.all_input_nodes), default=0)
        is_neuron = node.op == "call_module" and isinstance(
            gm.get_submodule(node.target), TTFSNeuron
        )
        depth[node] = before + int(is_neuron)
    return depth


class TTFSNetwork(nn.Module):
    """A QANN run in the TTFS code: ``forward(x)`` gives the logits ``(B, classes)``.

    Attributes:
        net: the graph with :class:`TTFSNeuron` in place of the quantizers.
        levels: ``L``, steps per window.
        depth: neuron layers on the longest path (``D``).
        latency_steps: ``D·L``, steps until the readout has its input.
    """

    def __init__(self, net: fx.GraphModule, levels: int) -> None:
        super().__init__()
        self.net = net
        self.levels = levels
        self.depth = max(_depths(net).values(), default=0)
        self.latency_steps = self.depth * levels

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def neurons(self) -> dict[str, TTFSNeuron]:
        """Every TTFS neuron layer by qualified name."""
        return {n: m for n, m in self.net.named_modules() if isinstance(m, TTFSNeuron)}

    @torch.no_grad()
    def logits_and_events(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Logits ``(B, classes)`` and spikes per sample ``(B,)`` (one per non-zero
        activation), from one forward pass."""
        layers = self.neurons()
        for layer in layers.values():
            layer.record = True
        try:
            logits = self.net(x)
            events = sum(
                (layer.spike_times < layer.levels).flatten(1).sum(1) for layer in layers.values()
            )
            return logits, events
        finally:
            for layer in layers.values():
                layer.record, layer.spike_times = False, None

    def events(self, x: Tensor) -> Tensor:
        """Spikes per sample of ``x`` (``(B,)``): one per non-zero activation."""
        return self.logits_and_events(x)[1]


def to_ttfs(qann: fx.GraphModule) -> TTFSNetwork:
    """The QANN in the TTFS code (on a copy); its logits equal the QANN's bit for bit.

    Args:
        qann: from :func:`multispike.convert.calibrate` (all quantizers with one ``L``).
    """
    meta = qann.meta.get("multispike")
    if meta is None:
        raise TypeError("to_ttfs expects a quantized ANN from multispike.convert.calibrate")
    net = copy.deepcopy(qann)
    levels = {q.levels for q in quantizers(net).values()}
    if len(levels) != 1:
        raise ValueError(f"to_ttfs needs one L for every quantizer, got {sorted(levels)}")
    for path, quant in quantizers(net).items():
        neuron = TTFSNeuron(quant.levels, quant.threshold.detach(), source=quant.source)
        set_module(net, path, neuron)
    net.meta["multispike"] = dict(meta, code="ttfs")
    net.recompile()
    return TTFSNetwork(net, levels.pop()).eval()
