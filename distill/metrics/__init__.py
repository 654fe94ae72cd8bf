"""Metrics of a spiking network, one per file, in torchmetrics' ``update``/``compute`` form.

- :mod:`.accuracy`: accuracy at every step, agreement with a reference network;
- :mod:`.activity`: spike events, sparsity and membrane updates of a layer of neurons;
- :mod:`.synops`: synaptic operations (spike inputs) and MACs (analog inputs) of a layer;
- :mod:`.energy`: energy per image from those counts and a cost table (docs/method.md §6);
- :mod:`.monitor`: forward hooks that feed the per-layer metrics during a forward pass;
- :mod:`.counts`: exact event counting shared by them.

``evaluate`` and distillation's logging use the same classes.
"""

from .accuracy import StepAccuracy, StepAgreement, step_accuracy
from .activity import SpikeActivity
from .counts import count_nonzero, exact_sum, spike_counts
from .energy import CostTable, analog_counts, energy, fanout, load_costs, spiking_counts
from .monitor import ActivityMonitor, spike_inputs
from .synops import SynapticOperations

__all__ = [
    "ActivityMonitor",
    "CostTable",
    "SpikeActivity",
    "StepAccuracy",
    "StepAgreement",
    "SynapticOperations",
    "analog_counts",
    "count_nonzero",
    "energy",
    "exact_sum",
    "fanout",
    "load_costs",
    "spike_counts",
    "spike_inputs",
    "spiking_counts",
    "step_accuracy",
]
