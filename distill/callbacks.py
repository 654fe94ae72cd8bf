"""Optional training behaviour: spike-activity logging.

Removing it leaves training intact; ``multispike distill`` installs it by default.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import Callback

from ..convert import SpikingNetwork
from .metrics import ActivityMonitor

__all__ = ["SpikeActivityLogger"]


class SpikeActivityLogger(Callback):
    """Log the SNN student's activity each validation/test epoch (nothing for a QANN).

    Logs ``<split>/events_per_neuron_step``, ``<split>/mean_payload``,
    ``<split>/silent_fraction`` and ``<split>/synops`` (synaptic operations per sample)
    from :class:`~multispike.distill.metrics.ActivityMonitor` (torchmetrics, DDP-reduced).
    """

    KEYS = ("events_per_neuron_step", "mean_payload", "silent_fraction", "synops")

    def __init__(self) -> None:
        self.monitor: ActivityMonitor | None = None

    def _start(self, pl_module: L.LightningModule) -> None:
        student = getattr(pl_module, "student", None)
        if isinstance(student, SpikingNetwork):
            self.monitor = ActivityMonitor(student).attach()

    def _end(self, pl_module: L.LightningModule, split: str) -> None:
        if self.monitor is None:
            return
        monitor, self.monitor = self.monitor, None
        monitor.remove()
        if not any(m.update_count for m in monitor.activity.values()):
            return
        total = monitor.compute()["total"]
        pl_module.log_dict({f"{split}/{key}": float(total[key]) for key in self.KEYS})

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start(pl_module)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._end(pl_module, "val")

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start(pl_module)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._end(pl_module, "test")
