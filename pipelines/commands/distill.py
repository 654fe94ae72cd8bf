"""``multispike distill``: step-wise distillation of a converted model (LightningCLI).

    multispike distill --config distill.yaml [--trainer.max_epochs 2] [--ckpt_path last.ckpt]
    multispike distill --config distill.yaml --print_config     # the full, resolved config

The config names the teacher (``class_path: multispike.zoo.load_model``), the DataModule and
either the student (a model folder of ``multispike convert``:
``class_path: multispike.pipelines.load``) or the levels it is calibrated to, and the stage
schedule of :class:`~multispike.distill.module.StepwiseDistillation`. Checkpoints keep the
last epoch and the best one on the validation split (in the last stage); the student of the
best one ends as a model folder in ``<log dir>/student`` (``--save_student.dirpath DIR``;
:class:`~multispike.pipelines.callbacks.SaveStudent`), ready for ``multispike evaluate
--model_dir`` and ``multispike export``. ``multispike run`` runs this same command for its
``distill`` stage.
"""

from __future__ import annotations

from ...distill.callbacks import SpikeActivityLogger
from ...distill.module import StepwiseDistillation
from ..callbacks import SaveStudent
from ..lightning_cli import MultispikeCLI, lightning_config, run_cli

__all__ = ["DistillCLI", "config", "main"]


class DistillCLI(MultispikeCLI):
    """:class:`MultispikeCLI` with ``activity``
    (:class:`~multispike.distill.callbacks.SpikeActivityLogger`) and ``save_student``
    (:class:`~multispike.pipelines.callbacks.SaveStudent`) always on."""

    def add_arguments_to_parser(self, parser) -> None:
        super().add_arguments_to_parser(parser)
        parser.add_lightning_class_args(SpikeActivityLogger, "activity")
        parser.add_lightning_class_args(SaveStudent, "save_student")


def config(argv: list[str]) -> str:
    """The options ``argv`` resolve to, as YAML (validated; nothing is built)."""
    return lightning_config(DistillCLI, StepwiseDistillation, argv, "multispike distill", "distill")


def main(argv: list[str]) -> int:
    return run_cli(DistillCLI, StepwiseDistillation, argv, "multispike distill", "distill")
