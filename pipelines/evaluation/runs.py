"""Run an ANN, its QANN and SNNs over a loader in one pass: accuracy at every step, activity,
agreement and latency per network.

- prediction after ``t`` steps: argmax of the mean of the SNN's first ``t`` outputs;
- latency of an image: the first ``t`` from which the prediction no longer changes up to
  ``T`` (1 when it never changes);
- SNN–QANN agreement: the QANN on exactly the SNN's input (for event data: the frames the SNN
  sees, re-binned to its steps, logits averaged), so ``T = 1, N = L`` agrees bit for bit;
  the QANN's own accuracy is on all ``F`` frames, like the ANN's;

Under ``torch.distributed``, loaders from :func:`multispike.convert.shard_batches` give each
rank whole batches; the metrics are torchmetrics states reduced over the ranks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ...convert import SpikingNetwork, model_device
from ...convert.calibrate import batch_inputs
from ...convert.distributed import all_reduce_sum
from ...distill.frames import student_input, teacher_logits
from ...distill.metrics import ActivityMonitor, StepAccuracy, StepAgreement

__all__ = [
    "SNNConfig",
    "accuracy_summary",
    "latency",
    "progress_batches",
    "run_networks",
    "spiking_runs",
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


def progress_batches(
    loader: Iterable, desc: str, progress: bool
) -> Iterable[tuple[Tensor, Tensor]]:
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


def run_networks(
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
            for x, y in progress_batches(loader, desc, progress):
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
    summary, (run,) = run_networks(loader, ann, qann, [snn], False, progress, "accuracy")
    for key in ("top1_at_t", "top5_at_t", "agreement_with_qann", "agreement_with_qann_at_t",
                "max_abs_logit_diff"):  # fmt: skip
        summary[f"snn.{key}"] = run[key]
    return summary


def spiking_runs(metrics: dict) -> list[dict]:
    """The multi-level SNN's run and the binary one's, once when they are the same SNN."""
    main, binary = metrics["snn"], metrics["binary"]
    return [main] if binary["label"] == main["label"] else [main, binary]
