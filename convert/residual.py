"""Residual joins of a quantized ANN, and their rewiring to Sparse-, SEW- or analog form.

A *join* is an addition of two signal tensors in the traced graph (``a + b``,
``torch.add``, ``.add``/``.add_``, ``+=``), found by structure, not by class names. The
*stream* of a join is what leaves it towards the next block. Three forms
(docs/method.md §4), each a QANN graph that :func:`~multispike.convert.to_snn` turns into an SNN
(its quantizers become multi-level IF neurons):

``sparse`` (Sparse-ResNet)
    A barrier quantizer right after every join: every consumer of the join reads
    ``Q(a + b)``, so the stream between blocks is spikes again and its activity is bounded
    by ``N`` per neuron and step. Where the join's only consumer already is a quantizer
    (post-activation ResNets: timm ``resnet*``, the zoo CIFAR ResNets), that quantizer *is*
    the barrier and nothing changes, so conversion stays exact. Pre-activation ResNets
    (timm ``resnetv2_18/34/50/101/152`` and their ``d``/``t`` variants use BatchNorm;
    ``*_bit`` and ``*_gn`` use GroupNorm, which cannot be converted) and inverted residuals
    with linear joins (``mobilenetv2_*``) get a new barrier named ``<block>.barrier``.
    Its ReLU-like clip removes negative stream values: fine-tune afterwards.

``sew`` (SEW-ResNet ADD, Fang et al. 2021)
    Each branch ends in a neuron and the join is a plain sum of spikes that nothing
    re-quantizes. Every join input that is not already a spike stream (a quantizer's
    output, or a sum, max-pool, slice or zero-pad of spike streams) gets a quantizer
    ``<block>.join_in<i>`` on its producer, and a quantizer that was the join's only
    consumer (post-activation ReLU) is removed. The stream carries the sum of every
    earlier block's spikes: the spike avalanche.

``analog`` (membrane shortcut, MS-ResNet)
    The stream between blocks is the real-valued sum; branches and the head read it
    through their own neurons. Pre-activation and inverted-residual nets already have this
    form (nothing changes); in a post-activation net the shortcut consumers of the
    post-join quantizer (identity shortcuts, possibly through slicing/zero-padding as in
    the CIFAR "option A" shortcut) read the bare sum instead.

Rewiring is deterministic given the graph, works on a copy, and is recorded in
``qann.meta["multispike"]["transforms"]`` as ``{"name": "residual", "mode": mode}`` so a
saved model can be rebuilt by replaying :func:`rewire_residual` on :func:`build_qann`'s
output. New quantizers start at ``λ = 1``; pass ``data`` to calibrate them (existing
thresholds are kept).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import fx

from .calibrate import calibrate_thresholds, quantizers
from .errors import ConversionError
from .graph import node_owner
from .modules import get_module, model_device
from .neuron import MultiLevelIFNeuron
from .quant import MultiLevelQuantizer
from .signals import is_add, preserved_inputs, signal_nodes, signal_users, traces_to_source

__all__ = ["JOIN_MODES", "Join", "is_spike_stream", "residual_joins", "rewire_residual"]

Mode = Literal["sparse", "sew", "analog"]
JOIN_MODES: tuple[str, ...] = ("sparse", "sew", "analog")

_SPIKING = (MultiLevelQuantizer, MultiLevelIFNeuron)


@dataclass(frozen=True)
class Join:
    """One residual join of a traced graph.

    Attributes:
        node: the fx add node.
        block: qualified name of the module whose forward adds (``""`` for the root).
        inputs: the two summed signal nodes.
        barrier: path of the quantizer/neuron that is the join's only consumer, or ``None``.
    """

    node: fx.Node
    block: str
    inputs: tuple[fx.Node, fx.Node]
    barrier: str | None

    @property
    def name(self) -> str:
        """``"<block>:<node>"``, how reports name the join."""
        return f"{self.block or 'forward'}:{self.node.name}"


def _spiking_path(gm: fx.GraphModule, node: fx.Node) -> str | None:
    if node.op == "call_module" and isinstance(get_module(gm, node.target), _SPIKING):
        return node.target
    return None


def residual_joins(gm: fx.GraphModule) -> list[Join]:
    """Every residual join of ``gm`` in graph (depth) order.

    Raises:
        ConversionError: a scaled join (``torch.add(a, b, alpha=…)``), naming its node.
    """
    signal = signal_nodes(gm)
    joins = []
    for node in gm.graph.nodes:
        if not is_add(node):
            continue
        args = [a for a in node.args[:2] if isinstance(a, fx.Node) and a in signal]
        if len(args) < 2:
            continue  # bias or constant added to one signal: not a join
        alpha = node.kwargs.get("alpha", node.args[2] if len(node.args) > 2 else 1)
        if alpha != 1:
            raise ConversionError(
                f"join {node.name} in {node_owner(node) or 'forward'} scales a branch "
                f"(alpha={alpha}); fold the scale into the branch's last layer first"
            )
        users = signal_users(node)
        barrier = _spiking_path(gm, users[0]) if len(users) == 1 else None
        joins.append(Join(node, node_owner(node), (args[0], args[1]), barrier))
    return joins


def is_spike_stream(gm: fx.GraphModule, node: fx.Node, _memo: dict | None = None) -> bool:
    """Whether ``node`` carries spikes: a quantizer/neuron output, a value-preserving op of
    spike streams (slice, reshape, max-pool, zero-pad, ...: :func:`preserved_inputs`) or a
    sum of two spike streams (SEW joins add spikes without re-quantizing)."""
    return traces_to_source(
        gm, node, lambda n: _spiking_path(gm, n) is not None, through_adds=True, memo=_memo
    )


# --------------------------------------------------------------------------- rewiring


def rewire_residual(
    qann: fx.GraphModule,
    mode: Mode = "sparse",
    data: Iterable | None = None,
    *,
    method: Literal["percentile", "mse"] = "percentile",
    percentile: float = 99.9,
    num_batches: int | None = None,
    progress: bool = True,
) -> fx.GraphModule:
    """Give every residual join of a quantized ANN the ``mode`` form (on a copy).

    Args:
        qann: from :func:`~multispike.convert.build_qann` or
            :func:`~multispike.convert.calibrate`; never modified.
        mode: ``"sparse"`` (barrier after each join), ``"sew"`` (sum of spikes) or
            ``"analog"`` (real-valued shortcut stream); see the module docstring.
        data: calibration batches for the quantizers the rewiring adds (else ``λ = 1``).
        method: ``"percentile"`` or ``"mse"`` initial thresholds of the new quantizers.
        percentile: percentile for ``method="percentile"``.
        num_batches: limit on calibration batches.
        progress: show a progress bar while calibrating.

    Returns:
        The rewired QANN; ``meta["multispike"]["transforms"]`` ends with
        ``{"name": "residual", "mode": mode}``.

    Raises:
        ValueError: unknown ``mode`` or ``qann`` is not a multispike QANN.
        ConversionError: a join that cannot take the form, naming its fx node.
    """
    if mode not in JOIN_MODES:
        raise ValueError(f"mode must be one of {', '.join(JOIN_MODES)}, got {mode!r}")
    meta = getattr(qann, "meta", {}).get("multispike")
    if meta is None:
        raise ValueError("rewire_residual expects a quantized ANN from multispike.convert")
    gm = copy.deepcopy(qann)
    joins = residual_joins(gm)
    if not joins:
        raise ConversionError(
            f"{meta.get('source_class', type(qann).__name__)} has no residual join "
            "(no addition of two signal tensors) to rewire"
        )
    before = set(quantizers(gm))
    rewire = {"sparse": _to_sparse, "sew": _to_sew, "analog": _to_analog}[mode]
    rewire(gm, joins, _Builder(gm, meta))
    gm.graph.eliminate_dead_code()
    gm.graph.lint()
    out = fx.GraphModule(gm, gm.graph, class_name=type(qann).__name__)
    out.meta["multispike"] = copy.deepcopy(meta)
    transforms = out.meta["multispike"].setdefault("transforms", [])
    transforms.append({"name": "residual", "mode": mode})
    added = [p for p in quantizers(out) if p not in before]
    if data is not None and added:
        _calibrate_new(out, added, data, method, percentile, num_batches, progress)
    return out


class _Builder:
    """Adds quantizers to a graph with unique paths and the QANN's levels/granularity."""

    def __init__(self, gm: fx.GraphModule, meta: dict) -> None:
        self.gm, self.meta = gm, meta
        self.taken = {name for name, _ in gm.named_modules()}
        self._shapes: dict[str, torch.Size] | None = None

    def channels(self, node: fx.Node) -> int | None:
        if not self.meta["per_channel"]:
            return None
        if self._shapes is None:
            from torch.fx.passes.shape_prop import ShapeProp

            probe = copy.deepcopy(self.gm)
            ShapeProp(probe).propagate(torch.zeros(2, *self.meta["input_shape"]))
            self._shapes = {n.name: n.meta["tensor_meta"].shape for n in probe.graph.nodes
                            if "tensor_meta" in n.meta}  # fmt: skip
        return int(self._shapes[node.name][1])

    def insert_after(self, node: fx.Node, base: str, source: str) -> fx.Node:
        """A new quantizer reading ``node``; every other consumer of ``node`` reads it."""
        path, k = base, 1
        while path in self.taken:
            path, k = f"{base}_{k}", k + 1
        self.taken.add(path)
        quant = MultiLevelQuantizer(self.meta["levels"], self.channels(node), source=source)
        self.gm.add_submodule(path, quant.to(model_device(self.gm)))
        with self.gm.graph.inserting_after(node):
            new = self.gm.graph.call_module(path, (node,))
        new.meta = {k: v for k, v in node.meta.items() if k == "nn_module_stack"}
        node.replace_all_uses_with(new, delete_user_cb=lambda user: user is not new)
        return new

    def remove(self, node: fx.Node, replacement: fx.Node) -> None:
        """Drop the quantizer ``node``; its consumers read ``replacement``."""
        node.replace_all_uses_with(replacement)
        self.gm.graph.erase_node(node)


def _to_sparse(gm: fx.GraphModule, joins: list[Join], build: _Builder) -> None:
    output = next(n for n in gm.graph.nodes if n.op == "output")
    for join in joins:
        if join.barrier is not None:
            continue
        if _reaches_output_linearly(gm, join.node, output):
            raise ConversionError(
                f"join {join.node.name} in {join.block or 'forward'} feeds the network output "
                "without a weighted layer in between; a barrier there would clip the "
                "logits. Use mode='analog' or end the model with a classifier layer"
            )
        base = f"{join.block}.barrier" if join.block else "barrier"
        build.insert_after(join.node, base, f"barrier after join {join.name}")


def _to_sew(gm: fx.GraphModule, joins: list[Join], build: _Builder) -> None:
    memo: dict = {}
    for join in joins:
        for i, arg in enumerate(join.node.args[:2]):  # fresh: earlier joins rewired them
            if not is_spike_stream(gm, arg, memo):
                base = f"{join.block}.join_in{i}" if join.block else f"join_in{i}"
                new = build.insert_after(arg, base, f"input {i} of join {join.name} (SEW)")
                memo[new] = True
        memo.pop(join.node, None)
        if join.barrier is not None:
            (user,) = signal_users(join.node)
            build.remove(user, join.node)
        memo[join.node] = True


def _to_analog(gm: fx.GraphModule, joins: list[Join], build: _Builder) -> None:
    join_nodes = {j.node for j in joins}
    for join in joins:
        if join.barrier is None:
            continue
        (barrier,) = signal_users(join.node)
        for user in list(barrier.users):
            if _shortcut_into_join(gm, user, join_nodes):
                user.replace_input_with(barrier, join.node)


def _shortcut_into_join(gm: fx.GraphModule, node: fx.Node, join_nodes: set[fx.Node]) -> bool:
    """Whether ``node`` is a join, or a chain of copying ops whose end is one."""
    while node not in join_nodes:
        users = signal_users(node)
        if preserved_inputs(gm, node) is None or len(users) != 1:
            return False
        node = users[0]
    return True


def _reaches_output_linearly(gm: fx.GraphModule, node: fx.Node, output: fx.Node) -> bool:
    """Whether ``node`` reaches the graph output through copying ops and joins only."""
    frontier = [node]
    while frontier:
        current = frontier.pop()
        for user in signal_users(current):
            if user is output:
                return True
            if is_add(user) or preserved_inputs(gm, user) is not None:
                frontier.append(user)
    return False


def _calibrate_new(
    qann: fx.GraphModule,
    paths: list[str],
    data: Iterable,
    method: str,
    percentile: float,
    num_batches: int | None,
    progress: bool,
) -> None:
    """Calibrate the quantizers at ``paths`` from data; keep every other threshold."""
    keep = {p: q.threshold.detach().clone() for p, q in quantizers(qann).items() if p not in paths}
    calibrate_thresholds(
        qann, data, method=method, percentile=percentile, num_batches=num_batches,
        progress=progress,
    )  # fmt: skip
    with torch.no_grad():
        for path, lam in keep.items():
            get_module(qann, path).threshold.copy_(lam)
