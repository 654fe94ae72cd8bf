"""Optional training behaviour: spike-activity logging and the default logger/checkpoint set.

Removing any of these leaves training intact; the CLI installs them by default.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from multispike.convert import SpikingNetwork

from .metrics import ActivityMonitor

__all__ = ["SpikeActivityLogger", "default_callbacks", "default_loggers"]


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


def default_callbacks() -> list[dict[str, Any]]:
    """Checkpoints on the final-step top-1 (best and last), LR and activity logging.

    Returned as ``class_path``/``init_args`` dicts so that ``--print_config`` shows them.
    """
    return [
        {
            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {
                "monitor": "val/top1",
                "mode": "max",
                "save_last": True,
                "filename": "epoch{epoch:03d}-top1{val/top1:.4f}",
                "auto_insert_metric_name": False,
            },
        },
        {
            "class_path": "lightning.pytorch.callbacks.LearningRateMonitor",
            "init_args": {"logging_interval": "epoch"},
        },
        {"class_path": "multispike.distill.callbacks.SpikeActivityLogger"},
    ]


def default_loggers(save_dir: str = "runs", name: str = "distill") -> list[dict[str, Any]]:
    """A CSV logger, plus TensorBoard when it is installed (same folder and version)."""
    loggers = [
        {
            "class_path": "lightning.pytorch.loggers.CSVLogger",
            "init_args": {"save_dir": save_dir, "name": name},
        }
    ]
    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        loggers.append(
            {
                "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                "init_args": {"save_dir": save_dir, "name": name},
            }
        )
    return loggers
