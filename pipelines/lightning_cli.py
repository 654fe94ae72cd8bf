"""The one Trainer setup of multispike: a LightningCLI shared by ``train`` and ``distill``.

Both commands (and ``multispike run``'s stages, which call them) get the same Trainer and
callbacks: a CSV logger (TensorBoard too when installed) under ``runs/<name>``, a
``ModelCheckpoint`` ``checkpoint`` that keeps the last checkpoint and the best one on the
validation split (``val/top1``, or the key the module names in ``SELECTION_KEY``), the
progress bar, ``--ckpt_path`` to resume (checked before anything is built) and ``--test`` to
read the test split once after fitting. The module's source ANN (its ``ann``) sets the
DataModule's normalisation when the Trainer sets it up (``adopt_model_config``), so the data
is fed as the weights expect.
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI

from ..zoo import CheckpointError
from . import data  # noqa: F401  (lets --data name a DataModule by class name)
from .folder.checkpoints import FolderCheckpoint, ScheduleGuard, verify_checkpoint
from .help import install

__all__ = ["MultispikeCLI", "default_loggers", "fit_summary", "lightning_config", "run_cli"]


class MultispikeCLI(LightningCLI):
    """LightningCLI with multispike's checkpointing, ``--ckpt_path``, ``--test`` and the
    DataModule normalised like the module's source ANN."""

    def init_parser(self, **kwargs: Any):
        """Lightning's parser with the compact ``--help`` and "did you mean" errors."""
        return install(super().init_parser(**kwargs))

    def add_arguments_to_parser(self, parser) -> None:
        key = getattr(self.model_class, "SELECTION_KEY", "val/top1")
        parser.add_lightning_class_args(FolderCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": key,
                "checkpoint.mode": "max",
                "checkpoint.filename": "epoch{epoch:03d}-top1{" + key + ":.4f}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        parser.add_argument(
            "--ckpt_path", type=str | None, default=None,
            help="resume from this checkpoint (e.g. <log dir>/checkpoints/last.ckpt)",
        )  # fmt: skip
        parser.add_argument(
            "--test", type=bool, default=False,
            help="after fitting, evaluate the chosen model on the test split (read once)",
        )  # fmt: skip

    def before_instantiate_classes(self) -> None:
        """Check ``--ckpt_path`` (exists, intact, safe to unpickle) before building anything."""
        path = self.config.get("ckpt_path")
        if path:
            try:
                verify_checkpoint(path, load=True)
            except (FileNotFoundError, CheckpointError) as err:
                raise type(err)(f"--ckpt_path: {err}") from None

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        _add_resume_callbacks(self.trainer)


def _add_resume_callbacks(trainer) -> None:
    """A :class:`ScheduleGuard`, and ``last.ckpt`` after every epoch beside the chosen
    checkpoint, so an interrupted fit resumes where it stopped: Lightning's
    ``save_last=True`` writes it only when a top-k checkpoint is saved, so a resume from it
    would retrain every epoch after the best."""
    trainer.callbacks.append(ScheduleGuard())
    chosen = trainer.checkpoint_callback
    if chosen is None or chosen.save_last:
        return
    latest = FolderCheckpoint(
        dirpath=chosen.dirpath, filename=ModelCheckpoint.CHECKPOINT_NAME_LAST, monitor=None,
        save_top_k=1, enable_version_counter=False,
    )  # fmt: skip
    trainer.callbacks.append(latest)


class _NoTips(logging.Filter):
    """Drops Lightning's advertising ("💡 Tip: ... try installing litlogger") from the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


def _quiet() -> None:
    """Silence what users cannot act on: Lightning's product tips, deprecations inside
    Lightning's own pytree helper and CLI, the weight-averaging warning about sharding, which
    :meth:`StepwiseDistillation.configure_model` (it builds the student, it shards nothing)
    triggers, and torch's "No CUDA runtime is found" when ``torch_compile`` builds CPU
    kernels."""
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _NoTips) for f in logger.filters):
        logger.addFilter(_NoTips())
    warnings.filterwarnings("ignore", r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    # LightningCLI still passes jsonargparse's deprecated skip_none (Lightning's own call)
    warnings.filterwarnings("ignore", r"\s*skip_none parameter was deprecated")
    warnings.filterwarnings("ignore", "You're using the WeightAveraging callback with a model")
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)


def _cli(
    cli_class: type[MultispikeCLI],
    model_class: type[L.LightningModule],
    argv: list[str],
    prog: str,
    log_name: str,
) -> MultispikeCLI:
    with warnings.catch_warnings():
        # the command hands LightningCLI its own slice of sys.argv on purpose
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        return cli_class(
            model_class,
            L.LightningDataModule,
            subclass_mode_data=True,
            run=False,
            args=argv,
            seed_everything_default=0,
            auto_configure_optimizers=False,
            trainer_defaults={
                "logger": default_loggers(name=log_name),
                "plugins": [
                    {"class_path": "multispike.pipelines.folder.checkpoints.HashedCheckpointIO"}
                ],
            },
            save_config_kwargs={"overwrite": True},
            parser_kwargs={
                "prog": prog,
                "default_env": False,
                "allow_abbrev": False,
                "description": _description(prog),
            },  # fmt: skip
        )


def _description(prog: str) -> str:
    from .cli import COMMANDS

    return COMMANDS.get(prog.split()[-1], "")


def lightning_config(
    cli_class: type[MultispikeCLI],
    model_class: type[L.LightningModule],
    argv: list[str],
    prog: str,
    log_name: str,
) -> str:
    """The options ``argv`` resolve to, as YAML, validated but with nothing built.

    Raises:
        SystemExit: a parse error (reported on stderr by jsonargparse).
    """

    class ParseOnly(cli_class):
        def _set_seed(self) -> None:  # nothing runs: no global seed either
            pass

        def before_instantiate_classes(self) -> None:
            pass

        def instantiate_classes(self) -> None:
            pass

    cli = _cli(ParseOnly, model_class, argv, prog, log_name)
    return cli.parser.dump(cli.config, skip_unset=False)


def run_cli(
    cli_class: type[MultispikeCLI],
    model_class: type[L.LightningModule],
    argv: list[str],
    prog: str,
    log_name: str,
) -> int:
    """Parse ``argv``, fit (resuming from ``--ckpt_path``), print the chosen model, and test
    it if asked. Returns the exit code (2 for a user error, with one line on stderr)."""
    from .cli import user_error, user_error_types

    _quiet()
    try:
        cli = _cli(cli_class, model_class, argv, prog, log_name)
    except SystemExit as done:  # --help, --print_config, or a parse error already reported
        return int(done.code or 0)
    except user_error_types() as err:
        return user_error(prog, err)
    try:
        cli.trainer.fit(
            cli.model, datamodule=cli.datamodule, ckpt_path=cli.config.ckpt_path, weights_only=True
        )
        print(fit_summary(cli.trainer))
        if cli.config.test:
            best = _chosen(cli.trainer)
            cli.trainer.test(
                cli.model, datamodule=cli.datamodule, ckpt_path=best, weights_only=True
            )
    except user_error_types() as err:
        return user_error(prog, err)
    return 0


def _chosen(trainer: L.Trainer) -> str | None:
    """The best checkpoint on the validation split, if one was kept."""
    callback = trainer.checkpoint_callback
    best = getattr(callback, "best_model_path", "") if callback is not None else ""
    return best or None


def fit_summary(trainer: L.Trainer) -> str:
    """One line: the chosen checkpoint and its validation score, or why there is none."""
    callback: Any = trainer.checkpoint_callback
    if callback is None or not getattr(callback, "best_model_path", ""):
        return f"fit done after {trainer.current_epoch} epochs (no validation checkpoint kept)"
    score = callback.best_model_score
    value = f"{100 * float(score):.2f} %" if score is not None else "?"
    return (
        f"fit done after {trainer.current_epoch} epochs; chosen on the validation split: "
        f"{callback.monitor} = {value} ({callback.best_model_path})"
    )


def default_loggers(save_dir: str = "runs", name: str = "distill") -> list[dict[str, Any]]:
    """A CSV logger in ``save_dir/name``, plus TensorBoard in ``save_dir/name_tensorboard``
    when it is installed."""
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
                "init_args": {"save_dir": save_dir, "name": f"{name}_tensorboard"},
            }
        )
    return loggers
