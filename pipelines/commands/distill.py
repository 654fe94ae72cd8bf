"""``multispike distill``: step-wise distillation from a YAML recipe (LightningCLI).

    multispike distill --config recipe.yaml [--trainer.max_epochs 2] [--ckpt_path last.ckpt]
    multispike distill --config recipe.yaml --print_config     # the full, resolved recipe

Recipes (``multispike.pipelines.recipes/distill/*.yaml``) name the teacher by registry name
(``class_path: multispike.distill.students.timm_model``), the DataModule, the student's
levels and the stage schedule of :class:`~multispike.distill.module.StepwiseDistillation`.
Every run saves its resolved config next to its logs; CSV logs (and TensorBoard when
installed) and checkpoints on the final-step top-1 are on by default. The distilled student
ends as a model directory in ``<log dir>/student`` (``--save_student.dirpath DIR``; see
:class:`~multispike.pipelines.callbacks.SaveStudent`), ready for ``multispike evaluate
--model-dir`` and ``multispike export``.
"""

from __future__ import annotations

import warnings

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI

from multispike.distill.callbacks import (
    CHECKPOINT_ON_FINAL_STEP_TOP1,
    SpikeActivityLogger,
    default_loggers,
)
from multispike.distill.module import StepwiseDistillation
from multispike.pipelines.callbacks import SaveStudent

__all__ = ["DistillCLI", "main"]


class DistillCLI(LightningCLI):
    """LightningCLI with ``--ckpt_path`` (resume), ``--test`` (test the final student), and
    three callbacks always on: ``checkpoint`` (ModelCheckpoint on ``val/top1``, best and last),
    ``activity`` (:class:`~multispike.distill.callbacks.SpikeActivityLogger`) and
    ``save_student`` (:class:`~multispike.pipelines.callbacks.SaveStudent`)."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {f"checkpoint.{k}": v for k, v in CHECKPOINT_ON_FINAL_STEP_TOP1.items()}
        )
        parser.add_lightning_class_args(SpikeActivityLogger, "activity")
        parser.add_lightning_class_args(SaveStudent, "save_student")
        parser.add_argument(
            "--ckpt_path", type=str | None, default=None,
            help="resume from this checkpoint (e.g. <run>/checkpoints/last.ckpt)",
        )  # fmt: skip
        parser.add_argument(
            "--test", type=bool, default=False, help="test the final student after fitting"
        )


def main(argv: list[str]) -> int:
    """Parse the recipe and overrides, fit (resuming from ``--ckpt_path``), optionally test."""
    try:
        with warnings.catch_warnings():
            # `multispike distill` hands LightningCLI its own slice of sys.argv on purpose
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            cli = DistillCLI(
                StepwiseDistillation,
                L.LightningDataModule,
                subclass_mode_data=True,
                run=False,
                args=argv,
                seed_everything_default=0,
                auto_configure_optimizers=False,
                trainer_defaults={"logger": default_loggers()},
                save_config_kwargs={"overwrite": True},
                parser_kwargs={"prog": "multispike distill", "default_env": False},
            )
    except SystemExit as done:  # --help, --print_config, or a parse error already reported
        return int(done.code or 0)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.config.ckpt_path)
    if cli.config.test:
        cli.trainer.test(cli.model, datamodule=cli.datamodule)
    return 0
