"""What ``multispike evaluate`` measures and writes.

- :mod:`.compute`: accuracy at every step, activity, synaptic operations, energy, latency,
  robustness of the SNN, its QANN, the ANN and the binary SNN of the same QANN;
- :mod:`.report`: the markdown report and ``metrics.json``; :mod:`.plots`: its figures;
- :mod:`.codes`: multi-level against TTFS and binary codes of one QANN;
- :mod:`.neurobench`: the same model through NeuroBench's harness (optional extra);
- :mod:`.avalanche`: residual-stream activity along depth (``multispike avalanche``).
"""

from .compute import evaluate, matched_energy_ratio
from .report import nested_metrics, render_markdown, write_report
from .robustness import perturb_input, robustness
from .runs import SNNConfig, accuracy_summary, latency

__all__ = [
    "SNNConfig",
    "accuracy_summary",
    "evaluate",
    "latency",
    "matched_energy_ratio",
    "nested_metrics",
    "perturb_input",
    "render_markdown",
    "robustness",
    "write_report",
]
