"""Fine-tune converted SNNs by step-wise distillation from their ANN teacher (Lightning).

``StepwiseDistillation`` is the LightningModule system (frozen teacher, QANN/SNN student,
stages QAT → SNN → fewer steps); ``stepwise_distillation_loss`` is its loss, docs/method.md §5.
DataModules live in :mod:`multispike.distill.data`, Metrics in :mod:`multispike.distill.metrics`.
"""

from .losses import stepwise_distillation_loss
from .module import StepwiseDistillation
from .students import Stage

__all__ = ["Stage", "StepwiseDistillation", "stepwise_distillation_loss"]
