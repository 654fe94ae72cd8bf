"""Three spike codes of one QANN side by side: multi-level, binary rate and time-to-first-spike.

- **multi-level**: ``N = L`` spikes per neuron and step, ``T = 1`` (:func:`to_snn`), one
  event per non-zero activation carrying ``k ≤ N`` spikes;
- **rate**: binary (``N = 1``) neurons over ``T`` steps, one event per spike;
- **TTFS**: one spike per non-zero activation, its time in the layer's window of ``L``
  steps carries ``k`` (:func:`~multispike.convert.to_ttfs`).

For each code: top-1, events and synaptic operations per image, payload bits per event
(bits an event carries besides its address and time: ``⌈log2 N⌉`` for multi-level, 0 for
rate and TTFS, whose value is in the count or the time), latency in steps of the code's
own clock (multi-level and rate: ``T``, all layers within a step; TTFS: ``depth × L``, one
window per layer), energy with the cost table, and robustness:

- **input** noise: Gaussian ``σ`` on the normalised image, or spurious events with
  probability ``p`` on event frames (as in
  :func:`multispike.pipelines.evaluation.robustness`);
- spike **deletion** ``p``: every event a neuron layer sends is lost with probability
  ``p`` — a multi-level event takes its ``k`` spikes with it, a rate spike is one event, a
  TTFS spike is the whole value;
- spike-time **jitter** ``j`` (temporal codes only): every event moves one step earlier or
  later with probability ``j`` (either way with equal chance); a rate spike moved out of the
  ``T`` steps is lost, a TTFS spike at window step ``t`` decodes to ``L − (t ± 1)`` kept in
  ``1..L``. The multi-level code at ``T = 1`` has no time axis: no jitter.

Perturbations act on what a neuron layer sends (forward hooks, seeded); the neurons' own
state and the clean path are untouched. TTFS energy: its events are the multi-level code's
events (one per non-zero activation: checked on every batch), so its synaptic operations
are the same; its neurons tick ``L`` times per window, so membrane updates are ``L``× the
multi-level code's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, fx, nn

from ...convert import MultiLevelIFNeuron, SpikingNetwork, to_snn, to_ttfs
from ...convert.quant import threshold_view
from ...convert.ttfs import TTFSNetwork, TTFSNeuron
from ...distill.frames import student_input
from ...distill.metrics.energy import CostTable, energy, load_costs, spiking_counts
from .robustness import perturb_input
from .runs import run_networks

__all__ = ["compare_codes", "spike_perturbation"]

_MEMBRANE = ("membrane_updates", "membrane_reads", "membrane_writes")


def _delete(out: Tensor, p: float, generator: torch.Generator) -> Tensor:
    keep = torch.rand(out.shape, generator=generator) >= p
    return out * keep.to(out.device)


def _jitter_steps(out: Tensor, steps: int, j: float, generator: torch.Generator) -> Tensor:
    """Move each event of a ``(T·B, ...)`` output one step earlier or later w.p. ``j``."""
    seq = out.reshape(steps, -1)
    move = (torch.rand(seq.shape, generator=generator) < j).to(out.device) & (seq != 0)
    earlier = move & (torch.rand(seq.shape, generator=generator) < 0.5).to(out.device)
    later = move & ~earlier
    moved = seq.masked_fill(move, 0)
    moved[:-1] += seq[1:] * earlier[1:]
    moved[1:] += seq[:-1] * later[:-1]
    return moved.reshape(out.shape)


def _jitter_ttfs(out: Tensor, neuron: TTFSNeuron, j: float, generator: torch.Generator):
    """Shift each TTFS spike one window step w.p. ``j``: level ``k → k ∓ 1`` within ``1..L``."""
    lam = threshold_view(neuron.threshold, out)
    levels = neuron.levels
    k = torch.round(out * (levels / lam))
    move = (torch.rand(out.shape, generator=generator) < j).to(out.device) & (k > 0)
    step = torch.where(torch.rand(out.shape, generator=generator) < 0.5, -1.0, 1.0).to(out)
    shifted = torch.where(move, (k - step).clamp(1, levels), k)  # t' = t + step, k' = L − t'
    return shifted.mul_(lam / levels)


@contextmanager
def spike_perturbation(model: nn.Module, kind: str, level: float, seed: int = 0):
    """Perturb every neuron layer's output inside the block: ``kind`` is ``"deletion"`` or
    ``"jitter"`` (see the module docstring); ``level`` 0 changes nothing."""
    if kind not in ("deletion", "jitter"):
        raise ValueError(f"spike perturbation must be 'deletion' or 'jitter', got {kind!r}")
    generator = torch.Generator().manual_seed(seed)

    def hook(module: nn.Module, args: tuple, out: Tensor) -> Tensor:
        if level == 0:
            return out
        if kind == "deletion":
            return _delete(out, level, generator)
        if isinstance(module, TTFSNeuron):
            return _jitter_ttfs(out, module, level, generator)
        return _jitter_steps(out, module.timesteps, level, generator)

    layers = [m for m in model.modules() if isinstance(m, MultiLevelIFNeuron | TTFSNeuron)]
    handles = [m.register_forward_hook(hook) for m in layers]
    try:
        yield model
    finally:
        for handle in handles:
            handle.remove()


def _logits(model: nn.Module, x: Tensor) -> Tensor:
    if isinstance(model, SpikingNetwork):
        return model(student_input(x, None, model.timesteps)).mean(0)
    return model(student_input(x, None, 1))  # TTFS: the one frame the T = 1 SNN sees


@torch.no_grad()
def _accuracy(model: nn.Module, loader: Iterable, kind: str, level: float, seed: int) -> float:
    correct = total = 0
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    for x, y in loader:
        if kind == "input":
            x = perturb_input(x, level, generator)
            logits = _logits(model, x.to(device))
        else:
            with spike_perturbation(model, kind, level, seed + total):
                logits = _logits(model, x.to(device))
        correct += int((logits.argmax(-1).cpu() == y).sum())
        total += len(y)
    return correct / max(total, 1)


def _robustness(
    model,
    loader,
    levels: dict[str, Sequence[float]],
    temporal: bool,
    seed: int,
    clean: float | None,
):
    """Top-1 under each perturbation level; level 0 is the clean path (``clean`` when given,
    not rerun)."""

    def accuracy(kind: str, level: float) -> float:
        if level == 0 and clean is not None:
            return clean
        return _accuracy(model, loader, kind, level, seed)

    return {
        kind: {float(v): accuracy(kind, float(v)) for v in values}
        if temporal or kind != "jitter"
        else None
        for kind, values in levels.items()
    }


def compare_codes(
    qann: fx.GraphModule,
    loader: Iterable,
    *,
    rate_timesteps: Sequence[int] = (),
    noise: Sequence[float] = (0.1,),
    deletion: Sequence[float] = (0.05, 0.1, 0.2),
    jitter: Sequence[float] = (0.1, 0.25, 0.5),
    costs: CostTable | None = None,
    seed: int = 0,
    progress: bool = True,
    noise_loader: Iterable | None = None,
) -> list[dict]:
    """The three codes of ``qann`` on ``loader``: one row per code (see the module docstring).

    Args:
        qann: the quantized ANN (``L`` levels).
        loader: ``(x, y)`` batches, images or event frames, as :func:`evaluate` takes them.
        rate_timesteps: ``T`` of each binary rate row (default ``L``).
        noise, deletion, jitter: perturbation levels (0, the clean row, is always added).
        costs: energy cost table (default :func:`load_costs`).
        seed: seeds every perturbation.
        progress: tqdm bars for the clean pass.
        noise_loader: data of the perturbed passes (default ``loader``); their level-0
            entry is then this data's clean top-1.

    Returns:
        Rows ``{"code", "label", "top1", "events", "synops", "payload_bits",
        "latency_steps", "energy", "robustness": {"input", "deletion", "jitter"}}``.
    """
    costs = costs or load_costs()
    levels = qann.meta["multispike"]["levels"]
    multi = to_snn(qann, levels, 1).eval()
    rates = [to_snn(qann, 1, t).eval() for t in (rate_timesteps or (levels,))]
    ttfs = to_ttfs(qann)
    perturb = {
        "input": sorted({0.0, *map(float, noise)}),
        "deletion": sorted({0.0, *map(float, deletion)}),
        "jitter": sorted({0.0, *map(float, jitter)}),
    }
    _, runs = run_networks(loader, None, qann, [multi, *rates], True, progress, "codes")
    rows = []
    for snn, run in zip([multi, *rates], runs, strict=True):
        counts = spiking_counts(run["activity"])
        n = snn.net.meta["multispike"]["max_spikes"]
        rows.append({
            "code": "multi-level" if n > 1 else "rate",
            "label": f"N={n},T={snn.timesteps}",
            "top1": run["top1"],
            "events": run["activity"]["total"]["events"],
            "synops": run["activity"]["total"]["synops"],
            "payload_bits": math.ceil(math.log2(n)) if n > 1 else 0,
            "latency_steps": snn.timesteps,
            "energy": energy(counts, costs),
            "robustness": _robustness(
                snn, noise_loader or loader, perturb, snn.timesteps > 1, seed,
                None if noise_loader else run["top1"],
            ),
        })  # fmt: skip
    rows.append(_ttfs_row(ttfs, runs[0], loader, costs, perturb, seed, noise_loader))
    return rows


def _ttfs_row(
    ttfs: TTFSNetwork, multi_run: dict, loader, costs, perturb, seed, noise_loader
) -> dict:
    events = correct = total = 0
    with torch.no_grad():
        for x, y in loader:
            x = student_input(x.to(next(ttfs.parameters()).device), None, 1)
            logits, sent = ttfs.logits_and_events(x)
            correct += int((logits.argmax(-1).cpu() == y).sum())
            events += int(sent.sum())
            total += len(y)
    per_image = events / max(total, 1)
    expected = multi_run["activity"]["total"]["events"]
    if not math.isclose(per_image, expected, rel_tol=1e-9):
        raise RuntimeError(f"TTFS sent {per_image} events per image, the N = L code {expected}")
    counts = spiking_counts(multi_run["activity"])
    for layer in counts.values():
        for key in _MEMBRANE:
            if key in layer:
                layer[key] *= ttfs.levels
    top1 = correct / max(total, 1)
    return {
        "code": "ttfs",
        "label": f"L={ttfs.levels}, depth {ttfs.depth}",
        "top1": top1,
        "events": per_image,
        "synops": multi_run["activity"]["total"]["synops"],
        "payload_bits": 0,
        "latency_steps": ttfs.latency_steps,
        "energy": energy(counts, costs),
        "robustness": _robustness(
            ttfs, noise_loader or loader, perturb, True, seed, None if noise_loader else top1
        ),
    }
