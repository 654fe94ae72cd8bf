"""The schema of a model folder's ``config.json``, checked before anything is built.

A model folder may come from anywhere, so its config decides nothing by itself: the
architecture must be a name in timm's registry (the zoo's ``ms_*`` models included) —
nothing is imported because a file says so — and every file it names must be a plain file
name inside the folder. Each violation is reported with its field and what it allows.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

__all__ = ["ModelFileError", "validate_config"]

_SHA256 = re.compile(r"[0-9a-f]{64}")
# create_model keyword arguments that would read or fetch something: never from a file
_LOADING_KWARG = re.compile(r"pretrained|checkpoint|path|file|dir|url|cache|hub", re.IGNORECASE)


class ModelFileError(ValueError):
    """A model folder is corrupt, incomplete or does not match what it claims to hold."""


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


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
        if not _positive_int(spec.get(count)):
            problems.append(f"layers.{name}.{count}: an integer >= 1")


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
    if not _positive_int(config.get("levels")):
        problems.append(f"levels: an integer >= 1, got {config.get('levels')!r}")
    if not isinstance(config.get("per_channel"), bool):
        problems.append(f"per_channel: true or false, got {config.get('per_channel')!r}")
    shape = config.get("input_shape")
    if not (isinstance(shape, list) and 1 <= len(shape) <= 4 and all(map(_positive_int, shape))):
        problems.append(f"input_shape: a list of 1 to 4 positive integers, got {shape!r}")
    for key in ("max_spikes", "timesteps"):
        value = config.get(key)
        if config.get("kind") == "snn" and not _positive_int(value):
            problems.append(f"{key}: an integer >= 1 for an SNN, got {value!r}")
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
    if not isinstance(config.get("versions"), dict):
        problems.append("versions: a mapping of library name to version")
    if problems:
        raise ModelFileError(f"{path} is not a valid model config: " + "; ".join(problems))
