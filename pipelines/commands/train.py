"""``multispike train``: train an ANN from scratch with cross-entropy (LightningCLI).

    multispike train --model.model.model_name ms_resnet20 --model.model.num_classes 10 \\
        --model.model.in_chans 1 --data DigitsDataModule --trainer.max_epochs 15

For data without pretrained weights. The weights chosen on the validation split (the best
``val/top1`` checkpoint) are saved as safetensors (``--save_weights.path``, default
``<log dir>/model.safetensors``), ready for ``--checkpoint`` of ``convert`` and
``evaluate`` and for a distillation teacher. Options as in every LightningCLI:
``--config``, ``--print_config``, ``--trainer.*``, ``--data.*``, ``--ckpt_path``.
"""

from __future__ import annotations

from ...distill.classifier import Classifier
from ..callbacks import SaveWeights
from ..lightning_cli import MultispikeCLI, lightning_config, run_cli

__all__ = ["TrainCLI", "config", "main"]


class TrainCLI(MultispikeCLI):
    """:class:`MultispikeCLI` with ``save_weights`` (:class:`SaveWeights`) always on."""

    def add_arguments_to_parser(self, parser) -> None:
        super().add_arguments_to_parser(parser)
        parser.add_lightning_class_args(SaveWeights, "save_weights")


def config(argv: list[str]) -> str:
    """The options ``argv`` resolve to, as YAML (validated; nothing is built)."""
    return lightning_config(TrainCLI, Classifier, argv, "multispike train", "train")


def main(argv: list[str]) -> int:
    return run_cli(TrainCLI, Classifier, argv, "multispike train", "train")
