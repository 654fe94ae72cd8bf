"""The recipe schema of ``multispike run``: one dataclass per stage, YAML loading, overrides.

A recipe is a YAML file (``pipelines/recipes/<name>.yaml`` or any path) whose top-level keys
are the sections of :class:`RunConfig`. :func:`load_recipe` reads it, applies ``key.sub=value``
overrides and checks every key and type against the dataclasses; a mistake raises
:class:`RecipeError` naming the key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

__all__ = [
    "CalibrateConfig",
    "ConvertConfig",
    "DataConfig",
    "DistillConfig",
    "EvaluateConfig",
    "ExportConfig",
    "ModelConfig",
    "RecipeError",
    "RunConfig",
    "TeacherConfig",
    "load_recipe",
    "recipe_names",
]

RECIPES = "multispike.pipelines.recipes"


class RecipeError(ValueError):
    """A recipe or override is invalid; the message names the key."""


@dataclass
class ModelConfig:
    """The source ANN.

    Attributes:
        name: timm (or zoo ``ms_*``) registry name.
        num_classes: classifier size (default: the data's class count).
        in_chans: input channels (default: the data's).
        pretrained: load the registry's pretrained weights (timm hub, or the zoo's local files).
        checkpoint: a local weights file (takes precedence over ``pretrained``);
            ``shared:REL`` is ``REL`` inside the shared data folder (``MULTISPIKE_DATA``).
    """

    name: str = ""
    num_classes: int | None = None
    in_chans: int | None = None
    pretrained: bool = False
    checkpoint: str | None = None


@dataclass
class DataConfig:
    """The data, as a ``--data`` spec of :func:`multispike.distill.data.from_spec`.

    Attributes:
        spec: e.g. ``digits``, ``cifar10`` (the shared ``.npz``), ``imagefolder:DIR``.
        options: DataModule options (``batch_size``, ``image_size``, ``augment``, ...).
    """

    spec: str = "digits"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TeacherConfig:
    """Training the ANN first, for data without pretrained weights (cross-entropy, SGD).

    Attributes:
        train: train ``model.name`` from scratch (``False``: use its weights as they are).
        max_epochs: training epochs.
        lr: peak learning rate (one-cycle).
    """

    train: bool = False
    max_epochs: int = 10
    lr: float = 0.05


@dataclass
class CalibrateConfig:
    """ANN → QANN (:func:`multispike.convert.calibrate`).

    Attributes:
        levels: ``L``, quantization levels.
        per_channel: one threshold per channel.
        method: initial thresholds: ``percentile`` or ``mse``.
        percentile: the percentile of the activations used as λ.
        images: training images used for calibration.
    """

    levels: int = 8
    per_channel: bool = False
    method: Literal["percentile", "mse"] = "percentile"
    percentile: float = 99.9
    images: int = 512


@dataclass
class ConvertConfig:
    """QANN → SNN (:func:`multispike.convert.to_snn`), with optional residual rewiring.

    Attributes:
        max_spikes: ``N``, spikes per neuron per step (default ``L``).
        timesteps: ``T``.
        residual: rewire residual joins: ``sparse`` (barrier neurons), ``sew`` or ``analog``.
    """

    max_spikes: int | None = None
    timesteps: int = 1
    residual: Literal["sparse", "sew", "analog"] | None = None


@dataclass
class DistillConfig:
    """Step-wise distillation (:class:`multispike.distill.StepwiseDistillation`).

    Attributes:
        enabled: fine-tune (``False``: evaluate the converted SNN as it is).
        qat_epochs: quantization-aware training epochs of the QANN before the SNN epochs.
        max_epochs: SNN epochs (at ``convert.timesteps`` and ``convert.max_spikes``).
        alpha: weight of the per-step KL term.
        tau: temperature.
        optimizer: ``sgd`` or ``adamw``.
        lr: peak learning rate (cosine decay).
        weight_decay: weight decay of the weights.
        limit_train_batches: Lightning's limit per epoch (a fraction or a count).
        limit_val_batches: Lightning's limit per validation.
    """

    enabled: bool = True
    qat_epochs: int = 0
    max_epochs: int = 1
    alpha: float = 1.0
    tau: float = 4.0
    optimizer: Literal["sgd", "adamw"] = "adamw"
    lr: float = 1e-4
    weight_decay: float = 5e-4
    limit_train_batches: int | float = 1.0
    limit_val_batches: int | float = 1.0


@dataclass
class EvaluateConfig:
    """Evaluation on the test split (:func:`multispike.pipelines.evaluate.evaluate`).

    Attributes:
        timesteps: ``T`` of the evaluated SNN, accuracy at every step (default: the run's).
        binary_timesteps: ``T`` of the binary (``N = 1``) SNN beside it (default ``L``).
        sweep: extra ``NxT`` configurations for accuracy against energy, e.g. ``["1x8"]``.
        noise: Gaussian σ of the robustness test (empty: skip it).
        max_batches: evaluate on this many test batches only (default: all).
    """

    timesteps: int | None = None
    binary_timesteps: int | None = None
    sweep: list[str] = field(default_factory=list)
    noise: list[float] = field(default_factory=list)
    max_batches: int | None = None


@dataclass
class ExportConfig:
    """Export of the final SNN (:mod:`multispike.pipelines.export`).

    Attributes:
        formats: any of ``onnx`` (the T = 1 network) and ``nir`` (the spiking graph).
    """

    formats: list[Literal["onnx", "nir"]] = field(default_factory=lambda: ["onnx"])


@dataclass
class RunConfig:
    """A whole run; one section per stage (the YAML recipe's top-level keys)."""

    name: str = "run"
    description: str = ""
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    calibrate: CalibrateConfig = field(default_factory=CalibrateConfig)
    convert: ConvertConfig = field(default_factory=ConvertConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    export: ExportConfig = field(default_factory=ExportConfig)


def _check(value: Any, hint: Any, key: str) -> Any:
    """``value`` checked against the type ``hint``; the error names ``key``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _check(value, option, key)
            except RecipeError as err:
                errors.append(str(err))
        raise RecipeError(errors[-1] if len(errors) == 1 else f"{key}: {value!r} is not {hint}")
    if origin is Literal:
        if value not in args:
            raise RecipeError(f"{key}: {value!r} is not one of {list(args)}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise RecipeError(f"{key}: expected a list, got {value!r}")
        return [_check(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, bool) or not isinstance(value, hint):
        raise RecipeError(f"{key}: expected {hint.__name__}, got {value!r}")
    return value


def _build(cls: type, data: Any, prefix: str = "") -> Any:
    """A ``cls`` dataclass from a mapping; unknown keys and wrong types name the key."""
    where = prefix or "the recipe"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(f"{where}: expected a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        keys = ", ".join(f"'{prefix}.{k}'" if prefix else f"'{k}'" for k in unknown)
        raise RecipeError(f"unknown recipe key {keys}; {where} takes: {', '.join(names)}")
    values = {k: _check(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in data.items()}
    return cls(**values)


def recipe_names() -> list[str]:
    """Names of the recipes shipped in ``pipelines/recipes``."""
    files = resources.files(RECIPES).iterdir()
    return sorted(f.name.removesuffix(".yaml") for f in files if f.name.endswith(".yaml"))


def _read_recipe(recipe: str | Path) -> dict[str, Any]:
    path = Path(recipe)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise RecipeError(f"recipe file {str(path)!r} does not exist")
        text = path.read_text()
    else:
        entry = resources.files(RECIPES) / f"{recipe}.yaml"
        if not entry.is_file():
            raise RecipeError(
                f"unknown recipe {str(recipe)!r}: give a YAML file or one of {recipe_names()}"
            )
        text = entry.read_text()
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise RecipeError(f"recipe {str(recipe)!r} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise RecipeError(f"recipe {str(recipe)!r} must be a mapping of sections")
    return data


def _apply_override(data: dict[str, Any], override: str) -> None:
    key, sep, text = override.partition("=")
    if not sep or not key:
        raise RecipeError(
            f"override {override!r} must read key.sub=value, e.g. distill.max_epochs=1"
        )
    *parents, leaf = key.split(".")
    node = data
    for i, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            section = ".".join(parents[: i + 1])
            raise RecipeError(f"override {override!r}: '{section}' is not a section")
        node = child
    node[leaf] = yaml.safe_load(text) if text else None


def load_recipe(recipe: str | Path, overrides: Sequence[str] = ()) -> RunConfig:
    """The validated :class:`RunConfig` of a recipe name or YAML file, with ``key=value`` overrides.

    Raises:
        RecipeError: unknown recipe, unknown key or wrong type (the key is named).
    """
    data = _read_recipe(recipe)
    for override in overrides:
        _apply_override(data, override)
    return _build(RunConfig, data)
