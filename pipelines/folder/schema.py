"""The schema of a model folder's ``config.json``, checked before anything is built.

A model folder may come from anywhere, so its config decides nothing by itself: the
architecture must be a name in timm's registry (the zoo's ``ms_*`` models included) —
nothing is imported because a file says so — and every file it names must be a plain file
name inside the folder. Each violation is reported with its field and what it allows.

Sizes are bounded so that no config can make :func:`~multispike.pipelines.load` allocate
without limit: ``input_shape`` (:data:`MAX_INPUT_DIM` per dimension, :data:`MAX_INPUT_ELEMENTS`
per sample), spike and level counts (:data:`MAX_COUNT`, top level and per layer; a layer's
count may differ from the top-level one), ``timesteps`` (:data:`MAX_TIMESTEPS`) and the
``create_model`` options ``num_classes`` / ``in_chans``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

__all__ = [
    "MAX_CLASSES",
    "MAX_COUNT",
    "MAX_INPUT_DIM",
    "MAX_INPUT_ELEMENTS",
    "MAX_TIMESTEPS",
    "ModelFileError",
    "validate_config",
]

MAX_COUNT = 65535  # levels L and spikes per step N (a 16-bit count)
MAX_TIMESTEPS = 4096  # steps T (nothing is allocated per step at load; inputs scale with T)
MAX_INPUT_DIM = 16384  # one dimension of input_shape
MAX_INPUT_ELEMENTS = 2**24  # elements of one input sample (3 x 2364 x 2364)
MAX_CLASSES = 2**20  # create_model's num_classes
_KWARG_COUNTS = {"num_classes": MAX_CLASSES, "in_chans": MAX_INPUT_DIM}

_SHA256 = re.compile(r"[0-9a-f]{64}")
# create_model keyword arguments that would read or fetch something: never from a file
_LOADING_KWARG = re.compile(r"pretrained|checkpoint|path|file|dir|url|cache|hub", re.IGNORECASE)


class ModelFileError(ValueError):
    """A model folder is corrupt, incomplete or does not match what it claims to hold."""


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _show(value: Any) -> str:
    """``repr(value)``, cut to keep a message on one short line."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _count(field: str, value: Any, limit: int, problems: list[str], what: str = "") -> None:
    """Report ``field`` unless it is an integer from 1 to ``limit``."""
    if not _positive_int(value):
        problems.append(f"{field}: an integer >= 1{what}, got {_show(value)}")
    elif value > limit:
        problems.append(f"{field}: at most {limit}, got {_show(value)}")


def _input_shape(shape: Any, problems: list[str]) -> None:
    if not (isinstance(shape, list) and 1 <= len(shape) <= 4 and all(map(_positive_int, shape))):
        problems.append(f"input_shape: a list of 1 to 4 positive integers, got {_show(shape)}")
    elif max(shape) > MAX_INPUT_DIM or math.prod(shape) > MAX_INPUT_ELEMENTS:
        problems.append(
            f"input_shape: at most {MAX_INPUT_DIM} per dimension and {MAX_INPUT_ELEMENTS} "
            f"elements per sample, got {shape!r} ({math.prod(shape)} elements)"
        )


def _threshold(value: Any) -> bool:
    values = value if isinstance(value, list) else [value]
    return bool(values) and all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values
    )


def _architecture(arch: Any, problems: list[str]) -> None:
    import timm

    import multispike.zoo  # noqa: F401  (the zoo's names are registered names too)

    if not isinstance(arch, dict):
        problems.append("architecture: a mapping with model_name and model_kwargs")
        return
    name = arch.get("model_name")
    if not isinstance(name, str) or not timm.is_model(name):
        import difflib

        close = difflib.get_close_matches(str(name), timm.list_models(), n=5, cutoff=0.75)
        problems.append(
            f"architecture.model_name: {name!r} is not a model in timm's registry (with the "
            f"multispike zoo); close names: {close or 'none'}"
        )
    kwargs = arch.get("model_kwargs", {})
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        problems.append("architecture.model_kwargs: a mapping of create_model keyword arguments")
        return
    for key, value in kwargs.items():
        plain = value is None or isinstance(value, str | int | float | bool)
        plain = plain or (isinstance(value, list) and all(isinstance(v, int) for v in value))
        if _LOADING_KWARG.search(key) or not plain:
            problems.append(
                f"architecture.model_kwargs.{key}: only plain architecture options (numbers, "
                "strings, integer lists) that load nothing"
            )
        elif key in _KWARG_COUNTS:
            _count(f"architecture.model_kwargs.{key}", value, _KWARG_COUNTS[key], problems)
        else:
            _plain_kwarg(f"architecture.model_kwargs.{key}", value, problems)


def _plain_kwarg(field: str, value: Any, problems: list[str]) -> None:
    """Bound a plain option: rates in [0, 1], other numbers (sizes, depths) within
    :data:`MAX_COUNT`."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if field.endswith("_rate"):
        if not (number and 0 <= value <= 1):
            problems.append(f"{field}: a number from 0 to 1, got {_show(value)}")
        return
    numbers = value if isinstance(value, list) else [value] if number else []
    if not all(math.isfinite(v) and abs(v) <= MAX_COUNT for v in numbers):
        problems.append(f"{field}: finite numbers within +-{MAX_COUNT}, got {_show(value)}")


def _weights(weights: Any, folder: Path, problems: list[str]) -> None:
    if not isinstance(weights, dict):
        problems.append("weights: a mapping with file and sha256")
        return
    file = weights.get("file")
    inside = isinstance(file, str) and file == Path(file).name and file not in ("", ".", "..")
    if not inside or not (folder / file).resolve().is_relative_to(folder.resolve()):
        problems.append(f"weights.file: {file!r} must be a file name inside {folder}")
    digest = weights.get("sha256")
    if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
        problems.append("weights.sha256: 64 lowercase hex digits (the file's SHA-256)")


def _layers(config: dict[str, Any], problems: list[str]) -> None:
    layers, kind = config.get("layers"), config.get("kind")
    if not isinstance(layers, dict) or not layers:
        problems.append("layers: a non-empty mapping of layer to {threshold, levels|max_spikes}")
        return
    count = "max_spikes" if kind == "snn" else "levels"
    for name, spec in layers.items():
        if not isinstance(spec, dict):
            problems.append(f"layers.{name}: a mapping with threshold and {count}")
            continue
        if not _threshold(spec.get("threshold")):
            problems.append(f"layers.{name}.threshold: a finite number or a list of them")
        _count(f"layers.{name}.{count}", spec.get(count), MAX_COUNT, problems)


def validate_config(config: Any, path: Path) -> None:
    """Check a parsed ``config.json`` (at ``path``) against the model-folder schema.

    Raises:
        ModelFileError: every violation, one per line, each naming its field and what it
            allows.
    """
    if not isinstance(config, dict):
        raise ModelFileError(f"{path}: expected a JSON object, got {type(config).__name__}")
    problems: list[str] = []
    if config.get("kind") not in ("qann", "snn"):
        problems.append(f"kind: 'qann' or 'snn', got {config.get('kind')!r}")
    _architecture(config.get("architecture"), problems)
    _count("levels", config.get("levels"), MAX_COUNT, problems)
    if not isinstance(config.get("per_channel"), bool):
        problems.append(f"per_channel: true or false, got {config.get('per_channel')!r}")
    _input_shape(config.get("input_shape"), problems)
    for key, limit in (("max_spikes", MAX_COUNT), ("timesteps", MAX_TIMESTEPS)):
        value = config.get(key)
        if config.get("kind") == "snn":
            _count(key, value, limit, problems, what=" for an SNN")
        if config.get("kind") == "qann" and value is not None:
            problems.append(f"{key}: null for a QANN (it has no spikes or steps), got {value!r}")
    transforms = config.get("transforms")
    if not isinstance(transforms, list) or not all(
        isinstance(t, dict) and isinstance(t.get("name"), str) for t in transforms
    ):
        problems.append("transforms: a list of {name: ..., options} mappings")
    _layers(config, problems)
    _weights(config.get("weights"), path.parent, problems)
    pre = config.get("preprocessing", {})
    if (
        not isinstance(pre, dict)
        or set(pre) - {"mean", "std"}
        or not all(
            isinstance(v, list) and v and all(_threshold(x) for x in v) for v in pre.values()
        )
    ):
        problems.append("preprocessing: a mapping of mean and std to lists of finite numbers")
    versions = config.get("versions")
    if not isinstance(versions, dict):
        problems.append("versions: a mapping of library name to version")
    else:
        problems += [
            f"versions.{lib}: a version string or null, got {_show(v)}"
            for lib, v in versions.items()
            if v is not None and not isinstance(v, str)
        ]
    if problems:
        raise ModelFileError(f"{path} is not a valid model config: " + "; ".join(problems))
