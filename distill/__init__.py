"""Fine-tune converted SNNs by step-wise distillation from their ANN teacher (Lightning).

``StepwiseDistillation`` is the LightningModule system (frozen teacher, QANN/SNN student,
stages QAT → SNN → fewer steps); ``stepwise_distillation_loss`` is its loss, docs/method.md §5.
DataModules live in :mod:`multispike.pipelines.data`, Metrics in :mod:`multispike.distill.metrics`.
The names below are imported on first use, so importing the DataModules stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Stage", "StepwiseDistillation", "stepwise_distillation_loss"]
_HOMES = {
    "Stage": "students",
    "StepwiseDistillation": "module",
    "stepwise_distillation_loss": "losses",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
