"""Evaluate an ANN, its QANN and SNNs on data: accuracy at every step, activity, energy,
robustness and latency, in one JSON-ready dict.

One pass over the data runs the ANN, the QANN, the multi-level SNN and its binary
(``N = 1``) counterpart side by side; further passes sweep ``(N, T)`` for the
accuracy–energy trade-off and add input noise for robustness.

The definitions (prediction after ``t`` steps, latency, SNN–QANN agreement) are those of
:mod:`.runs`; the noise is :mod:`.robustness`'s.

Under ``torch.distributed``, loaders from :func:`multispike.convert.shard_batches` give each
rank whole batches; the metrics are torchmetrics states and sums reduced over the ranks, the
noise generator replays the other ranks' draws, so the result equals one process's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from torch import fx, nn

from ...convert import to_snn
from ...convert.distributed import rank_and_world
from ...distill.metrics.energy import (
    CostTable,
    analog_counts,
    energy,
    load_costs,
    spiking_counts,
)
from .robustness import robustness
from .runs import SNNConfig, run_networks

__all__ = ["evaluate", "matched_energy_ratio"]


def matched_energy_ratio(multi: dict, binary: Sequence[dict], tolerance: float = 0.005) -> dict:
    """Energy of the cheapest binary SNN within ``tolerance`` of the multi-level SNN's top-1,
    divided by the multi-level SNN's energy (with memory). ``ratio`` is ``None`` when no
    binary configuration reaches that accuracy."""
    target = multi["top1"] - tolerance
    reaching = [b for b in binary if b["top1"] >= target]
    best = min(reaching, key=lambda b: b["energy"]["total"]) if reaching else None
    result = {"multi_level": multi["label"], "multi_level_top1": multi["top1"],
              "tolerance": tolerance, "binary": None, "ratio": None, "ratio_ops": None}  # fmt: skip
    if best is not None:
        result.update(
            binary=best["label"],
            binary_top1=best["top1"],
            ratio=best["energy"]["total"] / multi["energy"]["total"],
            ratio_ops=best["energy"]["ops"] / multi["energy"]["ops"],
        )
    return result


def _with_energy(run: dict, costs: CostTable, label: str) -> dict:
    run["label"] = label
    run["counts"] = spiking_counts(run["activity"])
    run["energy"] = energy(run["counts"], costs)
    return run


def evaluate(
    ann: nn.Module | None,
    qann: fx.GraphModule,
    loader: Iterable,
    *,
    max_spikes: int | None = None,
    timesteps: int = 1,
    binary_timesteps: int | None = None,
    sweep: Sequence[SNNConfig] = (),
    sweep_loader: Iterable | None = None,
    noise: Sequence[float] = (0.0, 0.1, 0.2, 0.5),
    noise_loader: Iterable | None = None,
    costs: CostTable | None = None,
    neurobench: bool = False,
    codes: bool = False,
    progress: bool = True,
) -> dict:
    """The full evaluation behind ``multispike evaluate``.

    Args:
        ann: the float network (``None`` when only a converted model is at hand).
        qann: its quantized ANN (``L`` levels).
        loader: ``(x, y)`` batches; images ``(B, C, H, W)`` or event frames ``(B, F, C, H, W)``.
        max_spikes: ``N`` of the multi-level SNN (default ``L``).
        timesteps: ``T`` of the multi-level SNN.
        binary_timesteps: ``T`` of the binary (``N = 1``) SNN (default ``L``).
        sweep: extra ``(N, T)`` configurations for accuracy against energy.
        sweep_loader: data of the sweep (default ``loader``).
        noise: Gaussian σ (images) or event probability (event frames); empty to skip.
        noise_loader: data of the robustness tests, this one's and the codes' (default
            ``loader``).
        costs: energy cost table (default :func:`load_costs`).
        neurobench: also run NeuroBench's harness on the multi-level SNN (``loader``'s data;
            see :mod:`multispike.pipelines.evaluation.neurobench`).
        codes: also compare the QANN's three spike codes, multi-level, binary rate (the
            binary ``T`` and the sweep's ``N = 1`` rows) and TTFS, with spike deletion and
            jitter (see :mod:`multispike.pipelines.evaluation.codes`).
        progress: tqdm bars.

    Returns:
        A JSON-ready dict: the :func:`accuracy_summary` keys, ``snn``/``binary`` (per-step
        accuracy, latency, activity per layer, counts, energy), ``ann_energy``, ``sweep``,
        ``matched_energy``, ``robustness``, ``costs`` and, when asked, ``neurobench`` and
        ``codes``.
    """
    if rank_and_world()[1] > 1 and (neurobench or codes):
        raise ValueError(
            "neurobench and codes run on one process: evaluate them with --trainer.devices 1"
        )
    costs = costs or load_costs()
    levels = qann.meta["multispike"]["levels"]
    multi = SNNConfig(max_spikes or levels, timesteps)
    binary = SNNConfig(1, binary_timesteps or levels)
    snn = to_snn(qann, multi.max_spikes, multi.timesteps).eval()
    # a binary SNN evaluated as itself (binary == multi): its one run serves both roles
    bsnn = None if binary == multi else to_snn(qann, 1, binary.timesteps).eval()
    nets = [snn] if bsnn is None else [snn, bsnn]
    summary, runs = run_networks(loader, ann, qann, nets, True, progress, "evaluate")
    main = _with_energy(runs[0], costs, multi.label)
    bin_run = main if bsnn is None else _with_energy(runs[1], costs, binary.label)
    for key in ("top1_at_t", "top5_at_t", "agreement_with_qann", "agreement_with_qann_at_t",
                "max_abs_logit_diff"):  # fmt: skip
        summary[f"snn.{key}"] = main[key]
    input_shape = tuple(qann.meta["multispike"]["input_shape"])
    reference = ann if ann is not None else qann
    result = {
        **summary,
        "levels": levels,
        "snn": main,
        "binary": bin_run,
        "ann_energy": energy(analog_counts(reference, input_shape), costs),
        "costs": costs.to_dict(),
    }
    sweep_runs = [main] if bsnn is None else [main, bin_run]
    for config in sweep:
        if config in (multi, binary):
            continue
        net = to_snn(qann, config.max_spikes, config.timesteps).eval()
        _, (run,) = run_networks(
            sweep_loader or loader, None, qann, [net], True, progress, config.label
        )
        sweep_runs.append(_with_energy(run, costs, config.label))
    result["sweep"] = [
        {
            "label": r["label"],
            "max_spikes": r["max_spikes"],
            "timesteps": r["timesteps"],
            "images": r["images"],
            "top1": r["top1"],
            "energy": {k: r["energy"][k] for k in ("ops", "memory", "total")},
            "synops": r["activity"]["total"]["synops"],
        }
        for r in sweep_runs
    ]
    multis = [r for r in result["sweep"] if r["max_spikes"] > 1]
    binaries = [r for r in result["sweep"] if r["max_spikes"] == 1]
    result["matched_energy"] = [matched_energy_ratio(m, binaries) for m in multis]
    if noise:
        models = {"ann": ann, "qann": qann, "snn": snn, "binary": bsnn}
        models = {k: v for k, v in models.items() if v is not None}
        result["robustness"] = robustness(models, noise_loader or loader, noise, progress=progress)
    if neurobench:
        from .neurobench import neurobench_metrics

        result["neurobench"] = neurobench_metrics(snn, loader)
    if codes:
        from .codes import compare_codes

        rates = [binary.timesteps, *(c.timesteps for c in sweep if c.max_spikes == 1)]
        result["codes"] = compare_codes(
            qann, loader, rate_timesteps=list(dict.fromkeys(rates)),
            noise=[v for v in noise if v > 0] or (0.1,), costs=costs, progress=progress,
            noise_loader=noise_loader,
        )  # fmt: skip
    return result
