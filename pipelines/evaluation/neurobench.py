"""NeuroBench's own harness on a multispike SNN: the community's metric names and counts.

:func:`neurobench_metrics` runs ``neurobench.benchmarks.Benchmark`` (PyPI ``neurobench``)
on a :class:`SpikingNetwork` with :class:`MultiLevelIFNeuron` registered as an activation
module, and returns its results under NeuroBench's names. What NeuroBench counts, against
multispike's :class:`~multispike.distill.metrics.ActivityMonitor` on the same images:

- ``ActivationSparsity``: zero outputs over all outputs of the activation modules, all
  steps. Equal to multispike's ``activation_sparsity = 1 − events / (neurons · T)``.
- ``SynapticOperations``: per ``Linear``/``Conv`` module, ``Σ [input ≠ 0] · fan-out`` per
  sample (all steps), filed as ``Effective_ACs`` when every input is in {−1, 0, 1} and as
  ``Effective_MACs`` otherwise; ``Dense`` counts every connection. A **binary** (``N = 1``)
  layer's ``Effective_ACs`` equal multispike's ``synops`` (one accumulate per event and
  synapse). A **multi-level** layer's events carry ``k·q`` (``k ≤ N`` spikes): NeuroBench
  files them under ``Effective_MACs``, multispike under ``synops`` — the same count
  (events × fan-out) under another label, since the event's payload scales a stored weight
  once per synapse. The **analog first layer** (the image) differs in what is counted:
  NeuroBench counts its non-zero inputs at every step, multispike its whole fan-out once for
  a static image (the dense MACs an accelerator performs).
- ``MembraneUpdates``: NeuroBench reads the ``mem`` attribute of snnTorch neurons only, so
  it reports 0 for multispike's neurons; multispike counts ``neurons × T`` per sample.
- ``Footprint`` (bytes of parameters and buffers) and ``ConnectionSparsity`` (zero weights
  over all weights of the connection layers): static, as NeuroBench defines them.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor, nn

from ...convert import MultiLevelIFNeuron, SpikingNetwork
from ...distill.frames import student_input

__all__ = ["neurobench_metrics"]


class _LastStep(nn.Module):
    """``(B, ...) → (B, classes)``: the SNN's mean output over its ``T`` steps, on the input
    :func:`~multispike.distill.frames.student_input` makes (images, or event frames one per
    step), as ``multispike evaluate`` runs it."""

    def __init__(self, snn: SpikingNetwork) -> None:
        super().__init__()
        self.snn = snn

    def forward(self, x: Tensor) -> Tensor:
        return self.snn(student_input(x, None, self.snn.timesteps)).mean(0)


def neurobench_metrics(snn: SpikingNetwork, loader: Iterable) -> dict[str, float]:
    """NeuroBench's static and workload metrics of ``snn`` on ``loader``'s ``(x, y)`` batches.

    Args:
        snn: the spiking network (its ``T`` and ``N`` as set; not modified).
        loader: ``(x, y)`` batches: images ``(B, C, H, W)`` or event frames
            ``(B, F, C, H, W)``, and class labels ``(B,)``.

    Returns:
        ``{"Footprint", "ConnectionSparsity", "ClassificationAccuracy",
        "ActivationSparsity", "MembraneUpdates", "Effective_MACs", "Effective_ACs",
        "Dense"}`` as floats; operation counts are per sample, summed over the ``T`` steps.
    """
    try:
        from neurobench.benchmarks import Benchmark
        from neurobench.metrics.static import ConnectionSparsity, Footprint
        from neurobench.metrics.workload import (
            ActivationSparsity,
            ClassificationAccuracy,
            MembraneUpdates,
            SynapticOperations,
        )
        from neurobench.models import TorchModel
    except ImportError as err:
        raise ImportError(
            "neurobench_metrics needs neurobench: pip install neurobench (in a clone: "
            'pip install -e ".[neurobench]")'
        ) from err
    if not isinstance(snn, SpikingNetwork):
        raise TypeError(f"neurobench_metrics expects a SpikingNetwork, got {type(snn).__name__}")
    model = TorchModel(_LastStep(snn))
    model.add_activation_module(MultiLevelIFNeuron)
    benchmark = Benchmark(
        model,
        loader,
        [],
        [lambda logits: logits.argmax(-1)],
        [
            [Footprint, ConnectionSparsity],
            [ClassificationAccuracy, ActivationSparsity, MembraneUpdates, SynapticOperations],
        ],
    )
    try:
        results = benchmark.run(quiet=True)
    finally:
        model.cleanup_hooks()
    synops = results.pop("SynapticOperations")
    return {**{k: float(v) for k, v in results.items()}, **{k: float(v) for k, v in synops.items()}}
