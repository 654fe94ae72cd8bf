"""Evaluate an ANN, its QANN and SNNs on data: accuracy at every step, activity, energy,
robustness and latency, in one JSON-ready dict.

One pass over the data runs the ANN, the QANN, the multi-level SNN and its binary
(``N = 1``) counterpart side by side; further passes sweep ``(N, T)`` for the
accuracy–energy trade-off and add input noise for robustness.

Definitions:

- prediction after ``t`` steps: argmax of the mean of the SNN's first ``t`` outputs;
- latency of an image: the first ``t`` from which the prediction no longer changes up to
  ``T`` (1 when it never changes);
- SNN–QANN agreement: the QANN on exactly the SNN's input (for event data: the frames the SNN
  sees, re-binned to its steps, logits averaged), so ``T = 1, N = L`` agrees bit for bit;
  the QANN's own accuracy is on all ``F`` frames, like the ANN's;
- Gaussian noise ``σ``: ``x + σ·ε``, ``ε ~ N(0, 1)``, on the normalised input; event noise
  ``p``: one spurious event added to every pixel of every frame with probability ``p``.

Under ``torch.distributed``, loaders from :func:`multispike.convert.shard_batches` give each
rank whole batches; the metrics are torchmetrics states and sums reduced over the ranks, the
noise generator replays the other ranks' draws, so the result equals one process's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, fx, nn
from tqdm.auto import tqdm

from ...convert import SpikingNetwork, model_device, to_snn
from ...convert.calibrate import batch_inputs
from ...convert.distributed import all_reduce_sum, rank_and_world, rank_batches
from ...distill.frames import student_input, teacher_logits
from ...distill.metrics import ActivityMonitor, StepAccuracy, StepAgreement
from ...distill.metrics.energy import (
    CostTable,
    analog_counts,
    energy,
    load_costs,
    spiking_counts,
)

__all__ = [
    "SNNConfig",
    "accuracy_summary",
    "evaluate",
    "latency",
    "matched_energy_ratio",
    "perturb_input",
    "render_markdown",
    "robustness",
    "write_report",
]


@dataclass(frozen=True)
class SNNConfig:
    """``N`` spikes per neuron per step and ``T`` steps."""

    max_spikes: int
    timesteps: int

    @property
    def label(self) -> str:
        return f"N={self.max_spikes},T={self.timesteps}"

    @classmethod
    def parse(cls, text: str) -> SNNConfig:
        """``"4x1"`` → ``N=4, T=1``."""
        try:
            n, t = (int(v) for v in text.lower().split("x"))
        except ValueError:
            n = t = 0
        if n < 1 or t < 1:
            raise ValueError(f"SNN configuration {text!r} must read NxT with N, T >= 1, e.g. 4x1")
        return cls(n, t)


def _batches(loader: Iterable, desc: str, progress: bool) -> Iterable[tuple[Tensor, Tensor]]:
    total = len(loader) if hasattr(loader, "__len__") else None
    for batch in tqdm(loader, desc=desc, total=total, disable=not progress, leave=False):
        if not isinstance(batch, (list, tuple)) or len(batch) < 2:
            raise TypeError("evaluation data must yield (inputs, targets) batches")
        yield batch_inputs(batch), batch[1]


def latency(outputs: Tensor) -> Tensor:
    """Per image, the first step ``t`` (1-based) from which the cumulative-mean prediction
    equals the final one at every later step: ``(B,)`` integers in ``1..T``."""
    from ...convert import cumulative_mean

    pred = cumulative_mean(outputs).argmax(-1)  # (T, B)
    changed = pred[1:] != pred[:-1]  # (T-1, B): prediction changed at step t+2
    steps = torch.arange(2, pred.shape[0] + 1, device=pred.device).unsqueeze(1)
    return (changed * steps).amax(0).clamp_min(1) if changed.numel() else torch.ones_like(pred[0])


class _SNNRun:
    """Accumulates one SNN's per-step accuracy, agreement, latency and activity."""

    def __init__(self, snn: SpikingNetwork, monitor: bool = True) -> None:
        self.snn, self.steps = snn, snn.timesteps
        self.top1 = StepAccuracy(self.steps)
        self.top5: StepAccuracy | None = None
        self.agreement = StepAgreement(self.steps)
        self.latency = torch.zeros(self.steps, dtype=torch.long)
        self.monitor = ActivityMonitor(snn) if monitor else None

    @torch.no_grad()
    def update(self, x: Tensor, y: Tensor, reference: Tensor | None, qann: nn.Module) -> None:
        """One batch; ``reference`` (the QANN's logits on ``x``) is recomputed on the SNN's
        own frames for event data."""
        x_snn = student_input(x, None, self.steps)
        out = self.snn(x_snn).cpu()
        if reference is not None and x.dim() == 5:
            frames = x_snn if x_snn.dim() == 4 else x_snn.transpose(0, 1)
            reference = teacher_logits(qann, frames).cpu()
        if self.top5 is None:
            self.top5 = StepAccuracy(self.steps, top_k=min(5, out.shape[-1]))
        self.top1.update(out, y)
        self.top5.update(out, y)
        if reference is not None:
            self.agreement.update(out, reference)
        self.latency += torch.bincount(latency(out) - 1, minlength=self.steps)

    def result(self) -> dict:
        def per_step(values: Tensor) -> dict[int, float]:
            return {t + 1: float(v) for t, v in enumerate(values.reshape(-1))}

        top1 = per_step(self.top1.compute())
        histogram = all_reduce_sum(self.latency)
        result = {
            "max_spikes": self.snn.net.meta["multispike"]["max_spikes"],
            "timesteps": self.steps,
            "images": int(histogram.sum()),
            "top1": top1[self.steps],
            "top1_at_t": top1,
            "top5_at_t": per_step(self.top5.compute()),
            "latency": {
                "mean": float((histogram * torch.arange(1, self.steps + 1)).sum())
                / max(int(histogram.sum()), 1),
                "histogram": {t + 1: int(c) for t, c in enumerate(histogram)},
            },
        }
        if self.agreement.update_count:
            agree = self.agreement.compute()
            result["agreement_with_qann_at_t"] = per_step(agree["agreement"])
            result["agreement_with_qann"] = float(agree["agreement"].reshape(-1)[-1])
            result["max_abs_logit_diff"] = float(agree["max_abs_logit_diff"].reshape(-1)[-1])
        if self.monitor is not None:
            result["activity"] = self.monitor.compute()
        return result


def _classifier_run(model: nn.Module, x: Tensor, y: Tensor, metrics: list[StepAccuracy]) -> Tensor:
    logits = teacher_logits(model, x).cpu()
    if len(metrics) == 1:
        metrics.append(StepAccuracy(1, top_k=min(5, logits.shape[-1])))
    for metric in metrics:
        metric.update(logits.unsqueeze(0), y)
    return logits


def _run(
    loader: Iterable,
    ann: nn.Module | None,
    qann: nn.Module,
    snns: Sequence[SpikingNetwork],
    monitor: bool,
    progress: bool,
    desc: str,
) -> tuple[dict, list[dict]]:
    """One pass: ANN, QANN and every SNN on each batch."""
    device = model_device(qann)
    ann_m, qann_m = [StepAccuracy(1)], [StepAccuracy(1)]
    runs = [_SNNRun(snn, monitor) for snn in snns]
    for run in runs:
        if run.monitor is not None:
            run.monitor.attach()
    try:
        with torch.no_grad():
            for x, y in _batches(loader, desc, progress):
                x = x.to(device)
                if ann is not None:
                    _classifier_run(ann, x, y, ann_m)
                reference = _classifier_run(qann, x, y, qann_m)
                for run in runs:
                    run.update(x, y, reference, qann)
    finally:
        for run in runs:
            if run.monitor is not None:
                run.monitor.remove()
    if not qann_m[0].update_count:
        raise ValueError("evaluation data yielded no batch")
    summary = {}
    for name, metrics in (("ann", ann_m), ("qann", qann_m)):
        if metrics[0].update_count:
            summary[f"{name}.top1"] = float(metrics[0].compute())
            summary[f"{name}.top5"] = float(metrics[1].compute())
    return summary, [run.result() for run in runs]


def accuracy_summary(
    ann: nn.Module | None,
    qann: nn.Module,
    snn: SpikingNetwork,
    loader: Iterable,
    *,
    progress: bool = True,
) -> dict:
    """Accuracy of ANN, QANN and SNN from one pass, under the keys of ``report.json``.

    Returns:
        ``ann.top1``/``ann.top5`` (when ``ann`` is given), ``qann.top1``/``qann.top5``,
        ``snn.top1_at_t``/``snn.top5_at_t`` (``{t: accuracy}``), ``snn.agreement_with_qann``
        (top-1 agreement after ``T`` steps), ``snn.agreement_with_qann_at_t`` and
        ``snn.max_abs_logit_diff`` (max over images of ``|mean_T(snn) − qann|``).
    """
    summary, (run,) = _run(loader, ann, qann, [snn], False, progress, "accuracy")
    for key in ("top1_at_t", "top5_at_t", "agreement_with_qann", "agreement_with_qann_at_t",
                "max_abs_logit_diff"):  # fmt: skip
        summary[f"snn.{key}"] = run[key]
    return summary


def _is_event_data(x: Tensor) -> bool:
    return x.dim() == 5


def perturb_input(x: Tensor, level: float, generator: torch.Generator) -> Tensor:
    """``x`` with input noise of ``level`` (Gaussian ``σ``, or event probability on frames)."""
    if level == 0:
        return x
    if _is_event_data(x):
        noise = torch.rand(x.shape, generator=generator) < level
        return x + noise.to(x)
    return x + level * torch.randn(x.shape, generator=generator).to(x)


@torch.no_grad()
def robustness(
    models: dict[str, nn.Module],
    loader: Iterable,
    levels: Sequence[float],
    *,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, dict[float, float]]:
    """Top-1 accuracy of each model under input noise of each level (see module docstring).

    ``models`` maps a name to an ANN/QANN (logits) or a :class:`SpikingNetwork` (accuracy
    of the prediction after ``T`` steps). Every model sees the same noisy inputs.
    """
    correct = torch.zeros(len(models), len(levels), dtype=torch.long)
    total = 0
    generator = torch.Generator().manual_seed(seed)
    device = model_device(next(iter(models.values())))
    shard, expected = rank_batches(loader), 0
    for local, (x, y) in enumerate(_batches(loader, "robustness", progress)):
        k = shard.global_index(local) if shard else local
        if k > expected:  # batches of other ranks: replay their draws
            rows = shard.full_batch_rows(k, x.shape[0])
            for _ in range(k - expected):
                for level in levels:
                    perturb_input(torch.zeros(rows, *x.shape[1:]), level, generator)
        expected = k + 1
        total += len(y)
        for j, level in enumerate(levels):
            noisy = perturb_input(x, level, generator).to(device)
            for i, model in enumerate(models.values()):
                if isinstance(model, SpikingNetwork):
                    logits = model(student_input(noisy, None, model.timesteps)).mean(0)
                else:
                    logits = teacher_logits(model, noisy)
                correct[i, j] += int((logits.argmax(-1).cpu() == y).sum())
    correct = all_reduce_sum(correct)
    total = max(int(all_reduce_sum(torch.tensor(total))), 1)
    return {
        name: {level: int(c) / total for level, c in zip(levels, row, strict=True)}
        for name, row in zip(models, correct, strict=True)
    }


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
    summary, runs = _run(loader, ann, qann, nets, True, progress, "evaluate")
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
        _, (run,) = _run(sweep_loader or loader, None, qann, [net], True, progress, config.label)
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


# --------------------------------------------------------------------------- report files


def spiking_runs(metrics: dict) -> list[dict]:
    """The multi-level SNN's run and the binary one's, once when they are the same SNN."""
    main, binary = metrics["snn"], metrics["binary"]
    return [main] if binary["label"] == main["label"] else [main, binary]


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows] + [""]


def _accuracy_section(metrics: dict) -> list[str]:
    main = metrics["snn"]
    ann = _pct(metrics.get("ann.top1"))
    if metrics.get("ann.top1") is None:
        ann += " (no float network given: --checkpoint FILE or --pretrained true adds its row)"
    head = (
        f"ANN {ann} · QANN {_pct(metrics.get('qann.top1'))} · "
        f"SNN–QANN agreement {_pct(main.get('agreement_with_qann'))} · "
        f"max |logit difference| {main.get('max_abs_logit_diff', float('nan')):.3g}"
    )
    lines = ["## Accuracy (top-1 %, prediction = mean of the outputs of steps 1..t)", "", head, ""]
    for run in spiking_runs(metrics):
        steps = run["top1_at_t"]
        lines += _table(
            ["SNN", *(f"t={t}" for t in steps)], [[run["label"], *map(_pct, steps.values())]]
        )
    return lines


def _energy_section(metrics: dict) -> list[str]:
    costs = {**metrics["costs"]["ops_pj"], **metrics["costs"]["memory_pj"]}
    runs = [("ANN (dense MACs)", metrics["ann_energy"])]
    runs += [(f"SNN {r['label']}", r["energy"]) for r in spiking_runs(metrics)]
    lines = ["## Energy per image (µJ)", "", "Costs (pJ): "]
    lines[-1] += ", ".join(f"{k} {v:g}" for k, v in costs.items()) + "."
    lines += [""] + _table(
        ["model", "ops", "memory", "total"],
        [[name, *(f"{e[k] / 1e6:.3f}" for k in ("ops", "memory", "total"))] for name, e in runs],
    )
    for m in metrics.get("matched_energy", []):
        if m["ratio"] is None:
            lines.append(
                f"- {m['multi_level']} ({_pct(m['multi_level_top1'])} %): none of the binary "
                f"(N = 1) SNNs evaluated comes within {_pct(m['tolerance'])} points of its "
                "accuracy, so there is no binary SNN of the same accuracy to compare energy with "
                "(add longer ones with --sweep, e.g. 1x32)."
            )
        else:
            lines.append(
                f"- {m['multi_level']} ({_pct(m['multi_level_top1'])} %) against the cheapest "
                f"binary SNN at matched accuracy, {m['binary']} ({_pct(m['binary_top1'])} %): "
                f"binary / multi-level energy = {m['ratio']:.2f}× with memory, "
                f"{m['ratio_ops']:.2f}× ops only."
            )
    return lines + [""]


def _layer_section(run: dict) -> list[str]:
    total = run["activity"]["total"]
    summary = (
        f"Per image: synaptic operations {total['synops']:.4g}, MACs {total['macs']:.4g}, "
        f"membrane updates {total['membrane_updates']:.4g}, events {total['events']:.4g}. "
        f"Events per neuron per step {total['events_per_neuron_step']:.4f}, mean payload "
        f"{total['mean_payload']:.3f}, silent neurons {_pct(total['silent_fraction'])} %, "
        f"mean latency {run['latency']['mean']:.2f} steps."
    )
    lines = [f"### SNN {run['label']}", "", summary, ""]
    lines += _table(
        ["neuron layer", "events/neuron/step", "mean payload", "silent %"],
        [
            [
                n,
                f"{a['events_per_neuron_step']:.4f}",
                f"{a['mean_payload']:.3f}",
                _pct(a["silent_fraction"]),
            ]  # fmt: skip
            for n, a in run["activity"]["neurons"].items()
        ],
    )
    lines += _table(
        ["synaptic layer", "input", "synops", "MACs", "energy µJ"],
        [
            [
                n,
                "spikes" if s["spiking"] else "analog",
                f"{s['synops']:.4g}",
                f"{s['macs']:.4g}",
                f"{run['energy']['layers'][n]['total'] / 1e6:.4f}",
            ]  # fmt: skip
            for n, s in run["activity"]["synapses"].items()
        ],
    )
    return lines


def render_markdown(metrics: dict) -> str:
    """``report.md``: the evaluation as tables a person can read."""
    main = metrics["snn"]
    lines = ["# Evaluation report", ""]
    context = metrics.get("context") or {}
    if context:
        lines += [
            f"- Model folder: {context['model_dir']}",
            f"- ANN: {context['ann_source'] or 'not given (--checkpoint FILE, --pretrained true)'}",
            f"- Data: {context['dataset']}, {context['split']} split, {main['images']} images",
            f"- Machine: {context['machine']}",
            "",
        ]
    lines += [f"QANN levels L = {metrics['levels']}. Energies in µJ per image (the energy model:"]
    source = metrics["costs"]["source"]
    lines[-1] += f" multispike docs/method.md §6, {source})."
    lines += ["", *_accuracy_section(metrics), *_energy_section(metrics), "## Per layer", ""]
    lines += [line for run in spiking_runs(metrics) for line in _layer_section(run)]
    if metrics.get("sweep"):
        lines += ["## Accuracy against energy", ""]
        lines += _table(
            ["N, T", "images", "top-1 %", "synops", "energy µJ"],
            [
                [
                    r["label"],
                    str(r["images"]),
                    _pct(r["top1"]),
                    f"{r['synops']:.4g}",
                    f"{r['energy']['total'] / 1e6:.3f}",
                ]  # fmt: skip
                for r in metrics["sweep"]
            ],
        )
    if metrics.get("robustness"):
        levels = list(next(iter(metrics["robustness"].values())))
        lines += ["## Robustness (top-1 % under input noise)", ""]
        lines += _table(
            ["model", *(f"{float(v):g}" for v in levels)],
            [[name, *map(_pct, by.values())] for name, by in metrics["robustness"].items()],
        )
    if metrics.get("neurobench"):
        lines += _neurobench_section(metrics)
    if metrics.get("codes"):
        lines += _codes_section(metrics["codes"])
    lines += [f"![{p}]({p})" for p in metrics.get("plots", [])]
    return "\n".join(lines) + "\n"


def _codes_section(rows: list[dict]) -> list[str]:
    """Three spike codes of one QANN (definitions: pipelines/codes.py)."""
    lines = ["## Spike codes of the QANN", ""]
    lines += _table(
        ["code", "", "top-1 %", "events / image", "synops / image", "payload bits",
         "latency (steps)", "energy µJ"],
        [[r["code"], r["label"], _pct(r["top1"]), f"{r['events']:.5g}", f"{r['synops']:.4g}",
          str(r["payload_bits"]), str(r["latency_steps"]), f"{r['energy']['total'] / 1e6:.3f}"]
         for r in rows],
    )  # fmt: skip
    kinds = {"input": "input noise", "deletion": "spike deletion", "jitter": "jitter"}
    header, cells = ["code"], {r["label"]: [r["code"]] for r in rows}
    for kind, title in kinds.items():
        levels = next(list(r["robustness"][kind]) for r in rows if r["robustness"][kind])
        header += [f"{title} {float(v):g}" for v in levels if float(v) > 0]
        for r in rows:
            by = r["robustness"][kind] or {}
            cells[r["label"]] += [_pct(by.get(v)) for v in levels if float(v) > 0]
    return lines + ["Top-1 % under perturbation:", ""] + _table(header, list(cells.values()))


def _neurobench_section(metrics: dict) -> list[str]:
    """NeuroBench's values beside multispike's own (definitions: pipelines/neurobench.py)."""
    nb, ours = metrics["neurobench"], metrics["snn"]["activity"]["total"]
    rows = [
        ["ClassificationAccuracy", f"{100 * nb['ClassificationAccuracy']:.2f} %",
         f"{100 * metrics['snn']['top1']:.2f} %"],
        ["ActivationSparsity", f"{nb['ActivationSparsity']:.4f}",
         f"{ours['activation_sparsity']:.4f}"],
        ["Effective_MACs + Effective_ACs", f"{nb['Effective_MACs'] + nb['Effective_ACs']:.5g}",
         f"{ours['macs'] + ours['synops']:.5g} (macs + synops)"],
        ["Dense", f"{nb['Dense']:.5g}", ""],
        ["MembraneUpdates", f"{nb['MembraneUpdates']:.5g}", f"{ours['membrane_updates']:.5g}"],
        ["Footprint (bytes)", f"{nb['Footprint']:.0f}", ""],
        ["ConnectionSparsity", f"{nb['ConnectionSparsity']:.4f}", ""],
    ]  # fmt: skip
    return [
        f"## NeuroBench ({metrics['snn']['label']})",
        "",
        *_table(["NeuroBench metric", "NeuroBench", "multispike"], rows),
        "Multi-level events carry k·q, so NeuroBench files their operations as MACs; it counts"
        " the analog first layer's non-zero inputs at every step, multispike its dense fan-out"
        " once; its MembraneUpdates reads snnTorch neurons only.",
        "",
    ]


def nested_metrics(metrics: dict) -> dict:
    """``{"ann.top1": x, "snn": {...}}`` → ``{"ann": {"top1": x}, "snn": {...}}``.

    The layout of every JSON file multispike writes (``report.json``, ``metrics.json``), so a
    key such as ``snn.top1_at_t`` is a path; integer keys become strings as in JSON.
    """
    nested: dict = {}
    for key, value in metrics.items():
        group, dot, name = key.partition(".")
        if dot:
            nested.setdefault(group, {})[name] = value
        else:
            nested[key] = {**value, **nested.get(key, {})} if isinstance(value, dict) else value
    return json.loads(json.dumps(nested))


def write_report(metrics: dict, directory: str | Path) -> Path:
    """Write ``metrics.json`` (nested, see :func:`nested_metrics`), ``report.md`` and PNGs."""
    from .plots import write_plots

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    metrics = dict(metrics, plots=[p.name for p in write_plots(metrics, directory)])
    text = json.dumps(nested_metrics(metrics), indent=2)
    (directory / "metrics.json").write_text(text + "\n")
    (directory / "report.md").write_text(render_markdown(metrics))
    return directory
