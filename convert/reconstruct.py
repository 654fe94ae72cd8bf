"""Label-free reconstruction calibration: fit a QANN to its float network block by block.

For each block ``b`` of the graph, in order (docs/method.md §2b; BRECQ, Li et al. 2021; QDrop,
Wei et al. 2022)::

    minimise  E ‖ Q_b(mix(x̂_b, x_b)) − F_b(x_b) ‖²      over λ_b, biases_b (, weights_b)
    mix(x̂, x) = x̂ where u < p else x,  u ~ U(0, 1) element-wise   (p = 1: BRECQ)

``x_b`` is the block's input in the float network, ``x̂_b`` its input in the QANN whose earlier
blocks are already reconstructed, ``F_b``/``Q_b`` the block in either network, with the
straight-through floor of :mod:`~multispike.convert.quant`. No labels are used.

The float network is the QANN itself with its quantizers ``observing``: they then compute the
ReLU/ReLU6 they replaced, BatchNorm being folded already, so both networks share one graph
and block boundaries coincide by construction. After residual rewiring this is the float
network the QANN approximates (a Sparse-ResNet barrier is a ReLU there).

Blocks come from the fx graph, not from class names. A *cut* is a node whose value is the
only one computed so far that later nodes still read. A block runs from one cut to the first
cut after its first quantizer: a residual block ends at its post-join quantizer (or at its
join when the join is linear), a plain conv/linear at its quantizer; the last block ends at
the graph output, where the classifier head is fitted to the float logits.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, fx
from torch.func import functional_call
from tqdm.auto import tqdm

from .calibrate import batch_inputs, quantizers
from .graph import node_owner
from .modules import get_module, model_device
from .quant import MultiLevelQuantizer

__all__ = ["Block", "reconstruct", "reconstruction_blocks"]

_Fetch = Callable[[Tensor], tuple[Tensor, Tensor, Tensor]]


@dataclass(frozen=True)
class Block:
    """One reconstruction block: the graph span after ``source`` up to ``sink``.

    Attributes:
        name: the module holding the span (common prefix of its nodes' owners), for display.
        source: the node feeding the block (the graph input for the first block).
        sink: the node whose value the block outputs.
        nodes: the span's nodes in graph order, ``sink`` last.
    """

    name: str
    source: fx.Node
    sink: fx.Node
    nodes: tuple[fx.Node, ...]


def reconstruction_blocks(qann: fx.GraphModule) -> list[Block]:
    """The blocks of a QANN in graph order (see the module docstring).

    Raises:
        ValueError: the graph has several inputs or its output is not one tensor.
    """
    nodes = [n for n in qann.graph.nodes if n.op != "get_attr"]  # constants cut nothing
    inputs = [n for n in nodes if n.op == "placeholder"]
    output = nodes[-1]
    if len(inputs) != 1 or not isinstance(output.args[0], fx.Node):
        raise ValueError("reconstruction needs a graph with one input and one output tensor")
    index = {n: i for i, n in enumerate(nodes)}
    ends: dict[int, list[fx.Node]] = {}
    for n in nodes:
        ends.setdefault(max((index[u] for u in n.users), default=index[n]), []).append(n)
    live: set[fx.Node] = set()
    blocks, start, cut, quantized = [], 0, None, False
    for i, n in enumerate(nodes[:-1]):
        live.add(n)
        live.difference_update(ends.get(i, ()))
        if cut is not None and _is_layer(qann, n):
            blocks.append(_block(qann, nodes, start, cut))
            start, cut = cut, None
            quantized = any(_is_quantizer(qann, m) for m in nodes[start + 1 : i])
        quantized |= _is_quantizer(qann, n)
        if quantized and live == {n} and (cut is None or _is_quantizer(qann, n)):
            cut = i  # a join's cut moves on to the quantizer right after it
    if start < len(nodes) - 2:
        blocks.append(_block(qann, nodes, start, index[output.args[0]], nodes[start + 1 : -1]))
    return blocks


def _is_quantizer(gm: fx.GraphModule, node: fx.Node) -> bool:
    return node.op == "call_module" and isinstance(get_module(gm, node.target), MultiLevelQuantizer)


def _is_layer(gm: fx.GraphModule, node: fx.Node) -> bool:
    """A node with parameters of its own: a conv, linear or affine layer (not a quantizer)."""
    if node.op == "call_module":
        module = get_module(gm, node.target)
        return not isinstance(module, MultiLevelQuantizer) and any(
            True for _ in module.parameters(recurse=False)
        )
    return any(arg.op == "get_attr" for arg in node.all_input_nodes)


def _block(
    gm: fx.GraphModule,
    nodes: list[fx.Node],
    start: int,
    end: int,
    span: list[fx.Node] | None = None,
) -> Block:
    span = nodes[start + 1 : end + 1] if span is None else span
    named = [n for n in span if _is_layer(gm, n) or _is_quantizer(gm, n)] or span
    owners = [n.target if n.op == "call_module" else node_owner(n) or n.name for n in named]
    common = []
    for parts in zip(*(o.split(".") for o in owners), strict=False):
        if len(set(parts)) > 1:
            break
        common.append(parts[0])
    name = ".".join(common) if common else f"{owners[0]}…{owners[-1]}"
    return Block(name, nodes[start], nodes[end], tuple(span))


def _span_module(root: fx.GraphModule, start: fx.Node, nodes: Iterable[fx.Node], end: fx.Node):
    """``x ↦ value of end`` when ``start`` holds ``x``: the span as a module sharing ``root``'s
    submodules (their parameters are trained in place)."""
    graph = fx.Graph()
    env = {start: graph.placeholder("x")}

    def arg(node: fx.Node) -> fx.Node:
        if node not in env:  # only constants may come from before the span (it starts at a cut)
            if node.op != "get_attr":
                raise AssertionError(f"{node.name} crosses the cut at {start.name}")
            env[node] = graph.node_copy(node)
        return env[node]

    for node in nodes:
        if node is not start:
            env[node] = graph.node_copy(node, arg)
    graph.output(env[end])
    module = fx.GraphModule(root, graph)
    module.graph.eliminate_dead_code()
    module.recompile()
    return module.eval()


def _collect(data: Iterable, images: int) -> Tensor:
    chunks, count = [], 0
    for batch in data:
        x = batch_inputs(batch).detach()
        chunks.append(x[: images - count].cpu())
        count += len(chunks[-1])
        if count >= images:
            break
    if count == 0:
        raise ValueError("reconstruction data yielded no image")
    return torch.cat(chunks)


def _from_cache(x_f: Tensor, x_q: Tensor, target: Tensor) -> _Fetch:
    return lambda idx: (x_f[idx], x_q[idx], target[idx])


def _recompute(x: Tensor, f_pre, q_pre, f_block, device: torch.device) -> _Fetch:
    @torch.no_grad()
    def fetch(idx: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        batch = x[idx].to(device)
        x_f = f_pre(batch)
        return x_f, q_pre(batch), f_block(x_f)

    return fetch


@torch.no_grad()
def _apply(module: fx.GraphModule, x: Tensor, chunk: int) -> Tensor:
    return torch.cat([module(part) for part in x.split(chunk)])


def reconstruct(
    qann: fx.GraphModule,
    data: Iterable,
    *,
    images: int = 1024,
    iterations: int = 500,
    batch_size: int = 32,
    lr: float = 1e-3,
    weight_lr: float = 1e-3,
    drop_prob: float = 0.5,
    cache_mib: float = 1024,
    seed: int = 0,
    progress: bool = True,
) -> fx.GraphModule:
    """Reconstruction calibration of a QANN on unlabeled images; returns a tuned copy.

    Block by block (:func:`reconstruction_blocks`), Adam with a cosine-decayed rate minimises
    ``‖Q_b(mix(x̂_b, x_b)) − F_b(x_b)‖²`` (module docstring) over the block's thresholds
    ``λ = exp(s)`` (learned as ``s``, so λ stays positive; per channel where the QANN has it),
    the biases and, with ``weight_lr > 0``, the weights. Parameters with ``requires_grad``
    False, and those an earlier block already fitted (a reused layer), stay as they are. The
    quantizer math is unchanged, so ``to_snn(result)`` at ``T = 1``, ``N = L`` is still
    bit-identical to the result.

    Block inputs and targets of all images are cached while they fit in ``cache_mib``;
    larger ones are recomputed from the images for every batch (slower, flat memory).

    Args:
        qann: from :func:`~multispike.convert.calibrate` (thresholds initialised), possibly
            rewired by :func:`~multispike.convert.rewire_residual`; never modified.
        data: batches of inputs as for :func:`~multispike.convert.calibrate`; labels unused.
        images: how many images of ``data`` to use (fewer if it runs out).
        iterations: optimiser steps per block.
        batch_size: images per step.
        lr: Adam learning rate of ``log λ`` and of the biases.
        weight_lr: Adam learning rate of the weights; 0 keeps them fixed.
        drop_prob: ``p``, probability that an input element is the quantized one.
        cache_mib: memory for cached block inputs and targets, in MiB (images aside).
        seed: seed of the batch sampling and of the QDrop masks.
        progress: show a progress bar per block.

    Returns:
        A QANN with the structure, qualified names and ``meta`` of ``qann``.

    Raises:
        ValueError: a budget or rate out of range (naming the argument), or no data.
    """
    for name, value in (("images", images), ("iterations", iterations), ("batch_size", batch_size)):
        if not (isinstance(value, int) and value >= 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not lr > 0 or not weight_lr >= 0:
        raise ValueError(f"lr must be > 0 and weight_lr >= 0, got lr={lr}, weight_lr={weight_lr}")
    if not 0 <= drop_prob <= 1:
        raise ValueError(f"drop_prob must be in [0, 1], got {drop_prob}")
    if not cache_mib >= 0:
        raise ValueError(f"cache_mib must be >= 0, got {cache_mib}")
    if getattr(qann, "meta", {}).get("multispike") is None:
        raise ValueError("reconstruct expects a quantized ANN from multispike.convert.calibrate")

    work = copy.deepcopy(qann).eval()
    reference = copy.deepcopy(qann).eval().requires_grad_(False)
    for quant in quantizers(reference).values():
        quant.observing = True
    trainable = {n: p.requires_grad for n, p in work.named_parameters()}
    work.requires_grad_(False)
    device = model_device(work)
    x = _collect(data, images)
    sizes = _bytes_per_image(reference, x[:1].to(device))
    generator = torch.Generator().manual_seed(seed)
    chunk = max(batch_size, 256)
    blocks = reconstruction_blocks(work)
    budget = cache_mib * 2**20
    fits = [len(x) * 2 * (sizes[b.source.name] + sizes[b.sink.name]) <= budget for b in blocks]
    kinds = ("threshold", "bias", "weight") if weight_lr > 0 else ("threshold", "bias")
    fitted: set[str] = set()
    cached: tuple[Tensor, Tensor] | None = None  # (float, quantized) inputs of all images
    for b, block in enumerate(blocks):
        f_block = _span_module(reference, block.source, block.nodes, block.sink)
        q_block = _span_module(work, block.source, block.nodes, block.sink)
        prefix = [n for earlier in blocks[:b] for n in earlier.nodes]
        f_pre = _span_module(reference, blocks[0].source, prefix, block.source)
        q_pre = _span_module(work, blocks[0].source, prefix, block.source)
        if fits[b]:
            if cached is None:
                cached = (_apply(f_pre, x.to(device), chunk), _apply(q_pre, x.to(device), chunk))
            target = _apply(f_block, cached[0], chunk)
            fetch = _from_cache(*cached, target)
        else:
            cached = None
            fetch = _recompute(x, f_pre, q_pre, f_block, device)
        params = {
            n: p
            for n, p in q_block.named_parameters()
            if trainable[n] and n not in fitted and n.rpartition(".")[2] in kinds
        }
        fitted.update(params)
        bar = tqdm(
            total=iterations, desc=f"reconstruct {block.name} ({b + 1}/{len(blocks)})",
            disable=not progress or not params,
        )  # fmt: skip
        with bar:
            _fit(q_block, params, fetch, len(x), iterations, batch_size, lr, weight_lr,
                 drop_prob, generator, bar)  # fmt: skip
        if cached is not None and b + 1 < len(blocks) and fits[b + 1]:
            cached = (target, _apply(q_block, cached[1], chunk))
        else:
            cached = None
    for name, param in work.named_parameters():
        param.requires_grad_(trainable[name])
    return work


def _bytes_per_image(reference: fx.GraphModule, one: Tensor) -> dict[str, int]:
    """Bytes of every node's tensor value for one image (fx shape propagation)."""
    from torch.fx.passes.shape_prop import ShapeProp

    probe = copy.deepcopy(reference)
    ShapeProp(probe).propagate(one)
    sizes = {}
    for node in probe.graph.nodes:
        meta = node.meta.get("tensor_meta")
        if hasattr(meta, "shape"):
            sizes[node.name] = math.prod(meta.shape) * meta.dtype.itemsize
    return sizes


def _fit(
    block: fx.GraphModule,
    params: dict[str, Tensor],
    fetch: _Fetch,
    count: int,
    iterations: int,
    batch_size: int,
    lr: float,
    weight_lr: float,
    drop_prob: float,
    generator: torch.Generator,
    bar: tqdm,
) -> None:
    """Adam on one block's ``log λ``, biases and weights; writes the fitted λ back."""
    if not params:
        return
    log_lam = {n: p.detach().log().requires_grad_() for n, p in params.items()
               if n.endswith("threshold")}  # fmt: skip
    others = {n: p.requires_grad_() for n, p in params.items() if n not in log_lam}
    groups = [
        {"params": list(log_lam.values()), "lr": lr},
        {"params": [p for n, p in others.items() if n.endswith("bias")], "lr": lr},
        {"params": [p for n, p in others.items() if n.endswith("weight")], "lr": weight_lr},
    ]
    optimizer = torch.optim.Adam([g for g in groups if g["params"]])
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, iterations)
    for _ in range(iterations):
        idx = torch.randint(count, (batch_size,), generator=generator)
        x_f, x_q, target = fetch(idx)
        if drop_prob < 1:
            keep = torch.rand(x_q.shape, generator=generator).to(x_q.device) < drop_prob
            x_q = torch.where(keep, x_q, x_f)
        out = functional_call(block, {n: s.exp() for n, s in log_lam.items()}, (x_q,))
        loss = F.mse_loss(out, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        bar.update()
        bar.set_postfix(loss=f"{loss.item():.3g}", refresh=False)
    with torch.no_grad():
        for n, s in log_lam.items():
            quant = block.get_submodule(n.rpartition(".")[0])
            quant.threshold.copy_(s.exp().clamp(max=quant.ceiling))
    for p in params.values():
        p.requires_grad_(False)
