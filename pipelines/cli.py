"""The ``multispike`` command: ``multispike <command> [options]``, one parser for all of them.

Every command reads its options with jsonargparse, the parser of LightningCLI: options are
``--key value`` (nested keys ``--data.init_args.batch_size 64``), ``--config FILE.yaml``
(several may be stacked; later ones and later flags win) and ``--print_config`` prints the
resolved configuration, which is itself a valid ``--config`` file. ``train`` and ``distill``
are LightningCLIs; the others parse the typed signature of one function
(:func:`function_parser`). ``multispike run`` chains them, each stage with the options of its
command.

Each command lives in ``multispike.pipelines.commands.<name>`` and exposes
``main(argv: list[str]) -> int``; it is imported only when called, so ``multispike --help``
stays instant.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, fields
from typing import Any

__all__ = [
    "COMMANDS",
    "function_config",
    "function_parser",
    "main",
    "run_function",
    "user_error",
    "user_error_types",
    "versions",
]

from .help import FULL_HELP_VAR, install

DEBUG_VAR = "MULTISPIKE_DEBUG"

COMMANDS = {
    "train": "train an ANN from scratch with cross-entropy (LightningCLI)",
    "convert": "calibrate an ANN into a quantized ANN and convert it to an SNN (model folder)",
    "distill": "fine-tune a converted model by step-wise distillation (LightningCLI)",
    "evaluate": "test-set report: accuracy at every step, activity, synaptic ops, energy",
    "export": "export a converted model folder to ONNX, NIR or sinabs",
    "avalanche": "residual-stream activity of the sparse/SEW/analog forms along depth",
    "run": "run a recipe: train -> convert -> distill -> evaluate -> export, resumable",
    "demo": "run the embedded digits recipe (no download, under a minute on a CPU)",
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: multispike <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()]
    lines += [
        "",
        "multispike <command> --help shows a command's options (--help full: all of them);",
        "multispike --debug <command> ... shows the traceback behind an error;",
        "multispike --version prints the installed versions.",
    ]
    return "\n".join(lines)


def versions() -> str:
    """One line: multispike's version and those of the libraries its results depend on."""
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for lib in ("multispike", "torch", "lightning", "timm", "torchmetrics"):
        try:
            parts.append(f"{lib} {version(lib)}")
        except PackageNotFoundError:
            parts.append(f"{lib} (not installed)")
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--debug":  # tracebacks for user errors too
        os.environ[DEBUG_VAR] = "1"
        argv = argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] == "--version":
        print(versions())
        return 0
    name, rest = argv[0], argv[1:]
    for i, arg in enumerate(rest[:-1]):
        if arg in ("-h", "--help") and rest[i + 1] == "full":  # every option, Trainer's too
            os.environ[FULL_HELP_VAR] = "1"
            rest = rest[: i + 1] + rest[i + 2 :]
            break
    if name not in COMMANDS:
        print(f"multispike: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"multispike.pipelines.commands.{name}")
    return int(module.main(rest) or 0)


# --------------------------------------------------------------------------- function commands


def user_error_types() -> tuple[type[BaseException], ...]:
    """Errors that mean "the input is wrong" (one line, exit 2), not "multispike is broken"."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from ..convert import ConversionError
    from ..zoo import CheckpointError
    from .data import DataNotFoundError, DataSpecError
    from .export import ExportError
    from .folder import ModelFileError

    return (
        OSError,
        ConversionError,
        DataNotFoundError,
        DataSpecError,
        CheckpointError,
        ModelFileError,
        ExportError,
        ValueError,
        OverflowError,
        ModuleNotFoundError,
        MisconfigurationException,
    )  # fmt: skip  (OSError: missing, unreadable or unwritable files, a full disk; Lightning's
    #  MisconfigurationException: a Trainer option this machine cannot honour, e.g. no GPU)


def user_error(prog: str, err: BaseException) -> int:
    """Print ``prog: error: <message>`` on stderr (after the traceback with ``--debug``);
    the exit code of a user error (2)."""
    if os.environ.get(DEBUG_VAR) == "1":
        traceback.print_exception(err)
    print(f"{prog}: error: {err}", file=sys.stderr)
    return 2


def function_parser(fn: Callable[..., Any], prog: str):
    """A jsonargparse parser of ``fn``'s typed keyword arguments, with ``--config``.

    Help comes from ``fn``'s Google-style docstring; ``--print_config`` prints the resolved
    options as YAML. A parameter typed :class:`~multispike.convert.CalibrationOptions` gives
    flat options, one per field (``--levels``, ``--calibration``...), documented by the
    dataclass's docstring, where the parameter stands; :func:`run_function` builds the object.
    """
    from jsonargparse import ActionConfigFile, ArgumentParser

    doc = inspect.getdoc(fn) or ""
    parser = ArgumentParser(
        prog=prog, description=doc.split("\n\n")[0], default_env=False, allow_abbrev=False
    )
    parser.add_argument("--config", action=ActionConfigFile, help="a YAML file of these options")
    signature = inspect.signature(fn).parameters
    names, flat = list(signature), _flat_options(fn)
    start = 0
    for name in [*flat, None]:
        end = names.index(name) if name else len(names)
        if names[start:end]:
            parser.add_function_arguments(
                fn, as_group=False, skip=set(names) - set(names[start:end])
            )
        if name:
            parser.add_class_arguments(flat[name], nested_key=None, as_group=False)
            default = signature[name].default
            if isinstance(default, flat[name]):
                parser.set_defaults(asdict(default))
        start = end + 1
    return install(parser)


def _flat_options(fn: Callable[..., Any]) -> dict[str, type]:
    """``fn``'s parameters whose fields are flat options: those typed ``CalibrationOptions``."""
    from typing import get_type_hints

    named = [  # by name first, so that commands without them do not import torch for --help
        name
        for name, param in inspect.signature(fn).parameters.items()
        if "CalibrationOptions" in str(getattr(param.annotation, "__name__", param.annotation))
    ]
    if not named:
        return {}
    from ..convert import CalibrationOptions

    hints = get_type_hints(fn)
    return {name: CalibrationOptions for name in named if hints[name] is CalibrationOptions}


def _arguments(fn: Callable[..., Any], options: dict[str, Any]) -> dict[str, Any]:
    """``fn``'s keyword arguments from parsed ``options``: flat fields gathered into their
    objects (see :func:`function_parser`).

    Raises:
        ValueError: a field out of range (from the object's own checks).
    """
    kwargs = {k: v for k, v in options.items() if k not in ("config", "__path__")}
    for name, cls in _flat_options(fn).items():
        kwargs[name] = cls(**{f.name: kwargs.pop(f.name) for f in fields(cls)})
    return kwargs


def function_config(fn: Callable[..., Any], argv: Sequence[str], prog: str) -> str:
    """The options ``argv`` resolve to for ``fn``, as YAML (validated; nothing is called).

    Raises:
        SystemExit: a parse error (reported on stderr by jsonargparse).
    """
    parser = function_parser(fn, prog)
    return parser.dump(parser.parse_args(list(argv)), skip_unset=False)


def run_function(fn: Callable[..., Any], argv: Sequence[str], prog: str) -> int:
    """Parse ``argv`` against ``fn``'s signature, instantiate its classes and call it.

    User errors (see :func:`user_error_types`) print one line and return 2; ``--help``,
    ``--print_config`` and parse errors exit through jsonargparse as usual.
    """
    parser = function_parser(fn, prog)
    try:
        config = parser.parse_args(list(argv))
    except SystemExit as done:
        return int(done.code or 0)
    try:
        fn(**_arguments(fn, vars(parser.instantiate(config))))
    except user_error_types() as err:
        return user_error(prog, err)
    _record_config(parser, config)
    return 0


def _record_config(parser: Any, config: Any) -> None:
    """The resolved options beside the command's output, as Lightning keeps them for a fit:
    ``<output>/config.yaml`` for a folder, ``<output>.config.yaml`` for a file (rank 0)."""
    from pathlib import Path

    from .recipes.runner import manages_run_folder

    output = getattr(config, "output", None)
    if not output or not manages_run_folder():  # the first process of a distributed run
        return
    path = Path(output)
    target = path / "config.yaml" if path.is_dir() else path.with_name(path.name + ".config.yaml")
    if path.exists():
        target.write_text(parser.dump(config, skip_unset=False))
