"""ANN → quantized ANN: trace, fold BatchNorm, quantize every ReLU call site, set λ from data.

Thresholds start from calibration data, collected from the float network (quantizers in
``observing`` mode pass the ReLU output through):

- ``percentile``: λ = the p-th percentile (default 99.9) of the activation's outputs;
- ``mse``: λ minimising E[(relu(z) − a(z))²] over 100 candidates in (0, max].

Statistics are taken on a bounded random sample of each activation (per channel for
per-channel thresholds), so memory stays flat however much data is given.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, fx, nn
from tqdm.auto import tqdm

from .distributed import all_reduce_sum, gather_in_order, rank_batches
from .errors import ConversionError
from .fold import fold_batchnorm
from .graph import activation_sites, replace_sites, trace
from .modules import model_device
from .quant import MultiLevelQuantizer, quantize
from .signals import check_supported

__all__ = [
    "batch_inputs",
    "build_qann",
    "calibrate",
    "calibrate_thresholds",
    "fold_qann",
    "quantizers",
]

Method = Literal["percentile", "mse"]
_SAMPLES_PER_BATCH = 1 << 16  # values kept per activation and batch (per channel: / C)


def build_qann(
    model: nn.Module,
    levels: int = 4,
    *,
    per_channel: bool = False,
    input_shape: Sequence[int] | None = None,
    fold: bool = True,
) -> fx.GraphModule:
    """The quantized structure of ``model`` with every threshold at 1 (no data needed).

    Traces an eval-mode copy, checks that every op on the signal path is supported, folds
    BatchNorm and replaces each ReLU/ReLU6 call site with a :class:`MultiLevelQuantizer`
    at the same qualified name. Use :func:`calibrate` to also set thresholds from data.

    Args:
        model: the source ANN; never modified.
        levels: ``L``, quantization levels of every activation.
        per_channel: one threshold per channel instead of one per layer.
        input_shape: shape of one input sample, e.g. ``(3, 32, 32)``; default: the timm
            ``pretrained_cfg["input_size"]`` of ``model``.
        fold: fold BatchNorm into the layers before it. ``False`` keeps every BatchNorm as a
            module, for quantization-aware training from scratch (batch statistics in train
            mode); :func:`fold_qann` folds them afterwards.

    Raises:
        ConversionError: unsupported operations, listed by module path.
    """
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    name = type(model).__name__
    cfg = getattr(model, "pretrained_cfg", None) or {}
    input_shape = tuple(input_shape or cfg.get("input_size") or ())
    if not input_shape:
        raise ValueError(f"{name} has no pretrained_cfg['input_size']: pass input_shape=(C, H, W)")
    gm = trace(model, input_shape)
    check_supported(gm, cfg.get("architecture", name))
    folded = fold_batchnorm(gm) if fold else []
    sites = activation_sites(gm)
    if not sites:
        raise ConversionError(
            f"{name} has no ReLU/ReLU6 on its signal path: nothing to convert to spiking neurons"
        )
    channels = _site_channels(gm, sites, input_shape) if per_channel else {}

    def make(site):
        return MultiLevelQuantizer(
            levels, channels.get(site.path), ceiling=site.ceiling, source=site.source
        )

    replace_sites(gm, sites, make)
    # Rebuilding keeps only what the graph uses: folded BatchNorms and dead buffers go.
    qann = fx.GraphModule(gm, gm.graph, class_name=f"Quantized{name}")
    qann.meta["multispike"] = {
        "levels": int(levels),
        "per_channel": bool(per_channel),
        "input_shape": [int(d) for d in input_shape],
        "folded_batchnorm": [list(pair) for pair in folded],
        "source_class": name,
    }
    return qann


def fold_qann(qann: fx.GraphModule) -> fx.GraphModule:
    """A copy of ``qann`` with its foldable BatchNorms folded (eval statistics): the form
    :func:`build_qann` gives, which ``to_snn`` and model folders take. ``qann`` is untouched.

    Folding is exact in real arithmetic; in float32 a value on a quantization step may round
    to the neighbouring level, so the folded QANN can differ from the unfolded one there.
    """
    gm = copy.deepcopy(qann).eval()
    folded = fold_batchnorm(gm)
    out = fx.GraphModule(gm, gm.graph, class_name=type(qann).__name__)
    out.meta = copy.deepcopy(qann.meta)
    meta = out.meta["multispike"]
    meta["folded_batchnorm"] = meta.get("folded_batchnorm", []) + [list(p) for p in folded]
    return out


def _site_channels(gm: fx.GraphModule, sites, input_shape: Sequence[int]) -> dict[str, int]:
    """Channel count (dim 1) at each site, from fx shape propagation on a zero input."""
    from torch.fx.passes.shape_prop import ShapeProp

    ShapeProp(gm).propagate(torch.zeros(2, *input_shape))
    return {site.path: site.node.meta["tensor_meta"].shape[1] for site in sites}


def quantizers(model: nn.Module) -> dict[str, MultiLevelQuantizer]:
    """Every quantizer of a QANN by qualified name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, MultiLevelQuantizer)}


def batch_inputs(batch: Any) -> Tensor:
    """The input tensor of a batch: a tensor, ``(x, y, ...)`` or ``{"image"|"input": x}``."""
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], Tensor):
        return batch[0]
    if isinstance(batch, dict):
        for key in ("image", "input", "x", "frames"):
            if key in batch:
                return batch[key]
    raise TypeError(
        "calibration data must yield tensors, (inputs, targets) tuples or dicts with an "
        f"'image'/'input' key, got {type(batch).__name__}"
    )


class _Sampler:
    """Bounded random sample of one activation's outputs (per channel if asked), kept per
    global batch so that ranks can merge their samples in one-process order.

    A batch's output ``(B, C, *S)`` is seen as a ``rows × cols`` table: per channel, row c
    holds channel c at every (sample, position), column ``b·|S| + s``; per layer, one row
    of everything. Only the drawn columns are copied out of the activation.
    """

    def __init__(self, per_channel: bool, generator: torch.Generator) -> None:
        self.per_channel, self.generator, self.chunks = per_channel, generator, []
        self.batch = 0  # global index of the batch being observed

    def shape(self, output: Tensor) -> tuple[int, int]:
        """``(rows, cols)`` of the table ``output`` is seen as."""
        if self.per_channel:
            return output.shape[1], output.numel() // output.shape[1]
        return 1, output.numel()

    def _draw(self, rows: int, cols: int) -> Tensor | None:
        keep = max(1, _SAMPLES_PER_BATCH // rows)
        return torch.randint(cols, (keep,), generator=self.generator) if cols > keep else None

    def _take(self, output: Tensor, idx: Tensor | None) -> Tensor:
        y = output.detach()
        if idx is None:  # the whole (small) table
            return y.transpose(0, 1).flatten(1) if self.per_channel else y.reshape(1, -1)
        idx = idx.to(y.device)
        if not self.per_channel:  # element idx in (B, C, *S) order, whatever the memory layout
            return y[torch.unravel_index(idx, y.shape)].unsqueeze(0)
        positions = math.prod(y.shape[2:])
        where = torch.unravel_index(idx % positions, y.shape[2:])
        return y[(idx // positions, slice(None), *where)].t()  # column b·|S| + s of the table

    def __call__(self, module: nn.Module, args: tuple, output: Tensor) -> None:
        idx = self._draw(*self.shape(output))
        self.chunks.append((self.batch, self._take(output, idx).float().cpu()))

    def values(self, gather: bool) -> Tensor:
        """The sample; with ``gather``, every rank's, in global batch order."""
        chunks = gather_in_order(self.chunks) if gather else [c for _, c in self.chunks]
        return torch.cat(chunks, dim=1)


class _Skipper:
    """Replays the draws of batches another rank observes, so the shared generator reaches
    each of this rank's batches in the state one process would have."""

    def __init__(self, samplers: dict[str, _Sampler], quants: dict[str, nn.Module]) -> None:
        self.samplers, self.quants = samplers, quants
        self.shapes: list[tuple[_Sampler, int, int]] | None = None  # per input row, fire order

    def _probe(self, qann: nn.Module, row: Tensor) -> None:
        shapes, handles = [], []
        for name, q in self.quants.items():
            sampler = self.samplers[name]

            def hook(module, args, output, sampler=sampler):
                shapes.append((sampler, *sampler.shape(output)))

            handles.append(q.register_forward_hook(hook))
        observing = {q: q.observing for q in self.quants.values()}
        for q in self.quants.values():
            q.observing = True
        try:
            qann(row)
        finally:
            for q, was in observing.items():
                q.observing = was
            for h in handles:
                h.remove()
        self.shapes = shapes

    def skip(self, qann: nn.Module, x: Tensor, rows_per_batch: int, batches: int) -> None:
        """Draw (and drop) what ``batches`` full batches of ``rows_per_batch`` rows draw."""
        if batches <= 0:
            return
        if self.shapes is None:
            self._probe(qann, x[:1])
        for _ in range(batches):
            for sampler, rows, cols in self.shapes:
                sampler._draw(rows, cols * rows_per_batch)


def _percentile(values: Tensor, percentile: float) -> Tensor:
    k = max(1, min(values.shape[1], math.ceil(percentile / 100.0 * values.shape[1])))
    return values.kthvalue(k, dim=1).values


def _mse_threshold(values: Tensor, levels: int, candidates: int = 100) -> Tensor:
    top = values.max(dim=1).values.clamp_min(1e-8)
    best_err = torch.full_like(top, float("inf"))
    best = top.clone()
    for i in range(1, candidates + 1):
        lam = top * (i / candidates)
        # values is (C, n): channels on dim 0, so quantize its transpose (channels on dim 1)
        err = (values - quantize(values.t(), lam, levels).t()).pow(2).mean(1)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best = torch.where(better, lam, best)
    return best


@torch.no_grad()
def calibrate_thresholds(
    qann: nn.Module,
    data: Iterable,
    *,
    method: Method = "percentile",
    percentile: float = 99.9,
    num_batches: int | None = None,
    progress: bool = True,
    seed: int = 0,
) -> dict[str, Tensor]:
    """Set every quantizer's λ from the float activations seen on ``data``; returns them.

    Args:
        qann: a model built by :func:`build_qann` (modified in place).
        data: batches of inputs (see :func:`batch_inputs`), e.g. a DataLoader. Under
            ``torch.distributed``, a loader from
            :func:`~multispike.convert.distributed.shard_batches` splits the batches over the
            ranks and the statistics are gathered before λ is chosen: every rank gets the λ
            of one process reading the whole loader (``torch.equal``).
        method: ``"percentile"`` or ``"mse"``.
        percentile: the percentile for ``method="percentile"``.
        num_batches: stop after this many (global) batches (default: all).
        progress: show a tqdm bar.
        seed: seed of the sub-sampling.
    """
    if method not in ("percentile", "mse"):
        raise ValueError(f"method must be 'percentile' or 'mse', got {method!r}")
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    quants = quantizers(qann)
    generator = torch.Generator().manual_seed(seed)
    samplers = {n: _Sampler(q.per_channel, generator) for n, q in quants.items()}
    skipper = _Skipper(samplers, quants)
    shard = rank_batches(data)  # a loader from shard_batches: this rank's global batches
    was_training = qann.training
    qann.eval()
    device = model_device(qann)
    seen = expected = 0
    handles = [q.register_forward_hook(samplers[n]) for n, q in quants.items()]
    try:
        for q in quants.values():
            q.observing = True
        total = num_batches if num_batches is not None else _maybe_len(data)
        for local, batch in enumerate(
            tqdm(data, total=total, desc="calibrating", disable=not progress)
        ):
            k = shard.global_index(local) if shard else local
            if num_batches is not None and k >= num_batches:
                break
            x = batch_inputs(batch).to(device)
            if k > expected:  # batches of other ranks: replay their draws
                rows = shard.full_batch_rows(k, x.shape[0])
                for h in handles:
                    h.remove()
                skipper.skip(qann, x, rows, k - expected)
                handles = [q.register_forward_hook(samplers[n]) for n, q in quants.items()]
            for sampler in samplers.values():
                sampler.batch = k
            qann(x)
            seen, expected = seen + 1, k + 1
    finally:
        for q in quants.values():
            q.observing = False
        for h in handles:
            h.remove()
        qann.train(was_training)
    if shard is not None:
        seen = int(all_reduce_sum(torch.tensor(seen)))
    if seen == 0:
        raise ValueError("calibration data yielded no batch")
    thresholds = {}
    for name, q in quants.items():
        values = samplers[name].values(gather=shard is not None)
        if method == "percentile":
            lam = _percentile(values, percentile)
        else:
            lam = _mse_threshold(values, q.levels)
        fallback = values.max(dim=1).values
        lam = torch.where(lam > 0, lam, fallback)  # ≥99.9% zeros: use the max
        lam = torch.where(lam > 0, lam, torch.ones_like(lam))  # dead channel: any λ works
        lam = lam.clamp(max=q.ceiling)
        q.threshold.copy_(lam.reshape(q.threshold.shape).to(q.threshold))
        thresholds[name] = q.threshold.detach().clone()
    return thresholds


def _maybe_len(data: Iterable) -> int | None:
    try:
        return len(data)  # type: ignore[arg-type]
    except TypeError:
        return None


def calibrate(
    model: nn.Module,
    data: Iterable,
    levels: int = 4,
    *,
    per_channel: bool = False,
    method: Method = "percentile",
    percentile: float = 99.9,
    num_batches: int | None = None,
    progress: bool = True,
    fold: bool = True,
) -> fx.GraphModule:
    """Calibrate an ANN into a quantized ANN with ``levels``-level activations.

    The returned ``torch.fx.GraphModule`` computes the source model with BatchNorm folded
    and every ReLU/ReLU6 replaced by ``a(z) = (λ/L)·clip(floor(z·L/λ + 1/2), 0, L)``;
    ``model`` itself is not modified.

    Args:
        model: a ReLU CNN (timm, torchvision, zoo or your own ``nn.Module``).
        data: calibration batches (a DataLoader of ``(x, y)`` or of ``x``).
        levels: ``L``.
        per_channel: one λ per channel instead of one per layer.
        method: ``"percentile"`` or ``"mse"`` initial thresholds.
        percentile: percentile of the activations used as λ.
        num_batches: limit on calibration batches.
        progress: show a progress bar.
        fold: fold BatchNorm (``False``: keep it, see :func:`build_qann`).
    """
    iterator = iter(data)
    try:
        first_batch = next(iterator)
    except StopIteration:
        raise ValueError("calibration data yielded no batch") from None
    if iterator is data:  # a one-shot iterator (generator): put the first batch back
        data = itertools.chain([first_batch], iterator)
    first = batch_inputs(first_batch)
    device = model_device(model)
    qann = build_qann(
        model, levels, per_channel=per_channel, input_shape=first.shape[1:], fold=fold
    ).to(device)
    calibrate_thresholds(
        qann, data, method=method, percentile=percentile, num_batches=num_batches,
        progress=progress,
    )  # fmt: skip
    return qann
