"""Save a converted model to a directory and rebuild it bit-exactly from there.

A model directory holds two files:

- ``model.safetensors``: the state dict (folded weights, thresholds λ), nothing executable;
- ``config.json``: how to rebuild the graph — the timm model name and ``create_model``
  kwargs, ``levels``, ``per_channel``, ``input_shape``, ``max_spikes`` and ``timesteps``
  (SNN), every layer's threshold, the recorded graph transforms, the SHA-256 of the
  weights and the versions of multispike, torch and timm that wrote it.

:func:`load` rebuilds by ``timm.create_model(name, **kwargs)`` → ``build_qann`` → replay of
the recorded transforms (:data:`TRANSFORMS`) → ``to_snn`` → strict state-dict load, so the
rebuilt model computes exactly (``torch.equal``) what the saved one did.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import safetensors
import timm
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, fx, nn

from ...convert import SpikingNetwork, build_qann, neurons, qann_of, quantizers, to_snn
from .schema import ModelFileError, validate_config

__all__ = [
    "CONFIG_FILE",
    "FORMAT_VERSION",
    "ModelFileError",
    "TRANSFORMS",
    "WEIGHTS_FILE",
    "conversion_meta",
    "load",
    "register_transform",
    "replay_transforms",
    "save",
]

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
MAX_CONFIG_BYTES = 64 << 20  # a config.json (per-channel thresholds of a large CNN: ~2 MB)
MAX_PARAMETERS = 2**30  # parameters and buffers of the architecture a config names (4 GiB)
_FORMAT = "multispike-model"
_LIBRARIES = ("multispike", "torch", "timm")

Transform = Callable[[fx.GraphModule, dict[str, Any]], fx.GraphModule]
TRANSFORMS: dict[str, Transform] = {}


def register_transform(name: str) -> Callable[[Transform], Transform]:
    """Register ``fn(qann, spec) -> qann`` to replay a recorded graph transform on load.

    A transform that changes a QANN's structure records itself as a JSON-able dict
    ``{"name": name, **options}`` in ``qann.meta["multispike"]["transforms"]``; :func:`load`
    calls the function registered under ``name`` with that dict, in recorded order.
    """

    def register(fn: Transform) -> Transform:
        TRANSFORMS[name] = fn
        return fn

    return register


@register_transform("residual")
def _replay_residual(qann: fx.GraphModule, spec: dict[str, Any]) -> fx.GraphModule:
    from ...convert.residual import JOIN_MODES, rewire_residual

    if set(spec) != {"name", "mode"} or spec["mode"] not in JOIN_MODES:
        raise ModelFileError(
            f"transform {spec}: a residual transform is {{name: residual, mode: one of "
            f"{list(JOIN_MODES)}}}"
        )
    return rewire_residual(qann, spec["mode"])


def replay_transforms(qann: fx.GraphModule, specs: list[dict[str, Any]]) -> fx.GraphModule:
    """Apply recorded transforms to a freshly built QANN, in order."""
    for spec in specs:
        name = spec.get("name")
        if name not in TRANSFORMS:
            raise ModelFileError(
                f"unknown graph transform {name!r}; known: {sorted(TRANSFORMS)}. Register it "
                "with multispike.pipelines.folder.serialize.register_transform before loading."
            )
        qann = TRANSFORMS[name](qann, spec)
    qann.meta["multispike"]["transforms"] = [dict(s) for s in specs]
    return qann


# --------------------------------------------------------------------------- save


def save(
    model: SpikingNetwork | fx.GraphModule,
    directory: str | Path,
    *,
    model_name: str,
    model_kwargs: dict[str, Any] | None = None,
    preprocessing: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` (a QANN or a SpikingNetwork) to ``directory``; the model is untouched.

    Args:
        model: a quantized ANN from ``calibrate``/``build_qann`` or an SNN from ``to_snn``.
        directory: created if missing; ``config.json`` and ``model.safetensors`` are replaced.
        model_name: the timm model name the source ANN was created from.
        model_kwargs: the ``timm.create_model`` kwargs it was created with (``num_classes``,
            ``in_chans``, ...), JSON-serialisable; ``pretrained`` is never replayed.
        preprocessing: how inputs were normalised, ``{"mean": [...], "std": [...]}`` (per
            channel, ``x = (image / max - mean) / std``); recorded for deployment (ONNX
            metadata), not used by :func:`load`.

    Returns:
        The directory.
    """
    meta = conversion_meta(model)
    if not timm.is_model(model_name):
        raise ValueError(
            f"model_name {model_name!r} is not a registered timm model: pass the name the "
            "source ANN was created with (import the module that registers it first)"
        )
    kwargs = {k: v for k, v in (model_kwargs or {}).items() if k != "pretrained"}
    try:
        json.dumps(kwargs)
    except TypeError as err:
        raise ValueError(f"model_kwargs must be JSON-serialisable: {err}") from err
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    weights = directory / WEIGHTS_FILE
    save_file(state, str(weights), metadata={"format": "pt", _FORMAT: str(FORMAT_VERSION)})
    is_snn = isinstance(model, SpikingNetwork)
    config = {
        "format": _FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": "snn" if is_snn else "qann",
        "architecture": {
            "model_name": model_name,
            "model_kwargs": kwargs,
            "source_class": meta.get("source_class"),
        },
        "levels": meta["levels"],
        "per_channel": meta["per_channel"],
        "input_shape": list(meta["input_shape"]),
        "max_spikes": meta.get("max_spikes") if is_snn else None,
        "timesteps": model.timesteps if is_snn else None,
        "transforms": list(meta.get("transforms", [])),
        "layers": _layers(model),
        "weights": {"file": WEIGHTS_FILE, "sha256": _sha256(weights)},
        "versions": {lib: _installed_version(lib) for lib in _LIBRARIES},
    }
    if preprocessing is not None:
        config["preprocessing"] = {
            k: [float(v) for v in preprocessing[k]] for k in ("mean", "std") if k in preprocessing
        }
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    return directory


def conversion_meta(model: nn.Module) -> dict[str, Any]:
    """The conversion record of a QANN or SNN (``levels``, ``input_shape``, ...).

    Raises:
        TypeError: ``model`` is neither a QANN nor a SpikingNetwork.
    """
    net = model.net if isinstance(model, SpikingNetwork) else model
    meta = getattr(net, "meta", {}).get("multispike") if isinstance(net, fx.GraphModule) else None
    if meta is None:
        raise TypeError(
            f"save expects a QANN (multispike.convert.calibrate) or a SpikingNetwork "
            f"(multispike.convert.to_snn), got {type(model).__name__}"
        )
    return meta


def _layers(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Per-layer spike/level count and threshold (as floats, exact for float32)."""
    if isinstance(model, SpikingNetwork):
        return {
            path: {"max_spikes": n.max_spikes, "threshold": n.threshold.detach().cpu().tolist()}
            for path, n in neurons(model.net).items()
        }
    return {
        path: {"levels": q.levels, "threshold": q.threshold.detach().cpu().tolist()}
        for path, q in quantizers(model).items()
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------- load


def load(
    directory: str | Path,
    kind: Literal["qann", "snn"] | None = None,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Rebuild a model written by :func:`save`; it computes exactly what the saved one did.

    A config names it as the student of a distillation:
    ``{class_path: multispike.pipelines.load, init_args: {directory: DIR, kind: qann}}``.

    Args:
        directory: a directory holding ``config.json`` and ``model.safetensors``.
        kind: the kind to return (default: the saved one): ``qann`` gives a saved SNN's QANN
            (:func:`~multispike.convert.qann_of`), ``snn`` a saved QANN's SNN (``N = L``,
            ``T = 1``).
        device: where to put the rebuilt model.

    Raises:
        FileNotFoundError: a file is missing.
        ModelFileError: a corrupt or mismatched file (named in the message), an unknown
            model name or transform, or an incompatible format version.
    """
    directory = Path(directory)
    config_path = directory / CONFIG_FILE
    config = _read_config(config_path)
    weights_path = directory / config["weights"]["file"]
    state = _read_weights(weights_path, config["weights"].get("sha256"))
    _check_versions(config, config_path)

    arch = config["architecture"]
    ann = _create(arch, config_path)
    qann = _build_qann(ann, config, config_path)
    qann = replay_transforms(qann, config["transforms"])
    # where it came from travels with it (SaveStudent saves a distilled copy under this name)
    qann.meta["multispike"]["architecture"] = {
        "model_name": arch["model_name"], "model_kwargs": dict(arch.get("model_kwargs") or {}),
    }  # fmt: skip
    model: SpikingNetwork | fx.GraphModule = qann
    if config["kind"] == "snn":
        model = to_snn(qann, max_spikes=config["max_spikes"], timesteps=config["timesteps"])
    _apply_layers(model, config["layers"], config_path)
    _load_state(model, state, weights_path)
    _check_thresholds(model, config["layers"], config_path, weights_path)
    if kind == "qann" and isinstance(model, SpikingNetwork):
        model = qann_of(model)
    elif kind == "snn" and not isinstance(model, SpikingNetwork):
        model = to_snn(model)
    elif kind not in (None, "qann", "snn"):
        raise ValueError(f"kind must be 'qann', 'snn' or None, got {kind!r}")
    return model.to(device).eval()


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: a model directory written by multispike.pipelines.save holds "
            f"{CONFIG_FILE} and {WEIGHTS_FILE}"
        )
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ModelFileError(
            f"{path} is {path.stat().st_size} bytes, more than a model config holds "
            f"({MAX_CONFIG_BYTES}): the file is corrupt or not a config"
        )
    try:
        config = json.loads(path.read_text())
    # ValueError: bad JSON, bad UTF-8, integers over Python's digit limit; RecursionError: nesting
    except (ValueError, RecursionError) as err:
        raise ModelFileError(f"{path} is not valid JSON ({err}): the file is corrupt") from err
    if not isinstance(config, dict) or config.get("format") != _FORMAT:
        raise ModelFileError(f"{path} is not a multispike model config (no format {_FORMAT!r})")
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        raise ModelFileError(
            f"{path} has format_version {version!r}, this multispike reads {FORMAT_VERSION}: "
            + ("upgrade multispike to load it" if newer else "re-export it with save()")
        )
    validate_config(config, path)
    return config


def _read_weights(path: Path, sha256: str | None) -> dict[str, Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the model directory is incomplete")
    if sha256 is not None and _sha256(path) != sha256:
        raise ModelFileError(
            f"{path} does not match the SHA-256 recorded in {CONFIG_FILE}: the weights are "
            "corrupt or come from another model"
        )
    try:
        return load_file(str(path))
    except (safetensors.SafetensorError, OSError, ValueError) as err:
        raise ModelFileError(f"{path} is not a readable safetensors file ({err})") from err


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split("+")[0].split(".")[:2])


def _installed_version(lib: str) -> str | None:
    """``lib``'s installed version; ``None`` where it runs from a source tree, not installed."""
    try:
        return metadata.version(lib)
    except metadata.PackageNotFoundError:
        return None


def _check_versions(config: dict[str, Any], path: Path) -> None:
    for lib, saved in config["versions"].items():
        current = _installed_version(lib) if lib in _LIBRARIES else None
        if saved is None or current is None:  # nothing to compare against
            continue
        if _major_minor(saved) != _major_minor(current):
            warnings.warn(
                f"{path} was written with {lib} {saved}, this is {lib} {current}: the rebuilt "
                "model is checked against the saved weights, but verify its outputs",
                stacklevel=3,
            )


def _create(arch: dict[str, Any], path: Path) -> nn.Module:
    """The architecture, by registry name only (validated): a config never imports code.

    It is first built on the meta device (no memory) to refuse one over
    :data:`MAX_PARAMETERS`; a model whose constructor cannot run there is built directly.

    Raises:
        ModelFileError: the constructor refuses ``model_kwargs`` or the model is too large.
    """
    name, kwargs = arch["model_name"], arch.get("model_kwargs", {})
    where = f"{path}: architecture {name!r} with model_kwargs {str(kwargs)[:200]}"
    try:
        with torch.device("meta"):
            probe = timm.create_model(name, pretrained=False, **kwargs)
    except Exception:  # some constructors need real tensors: built directly below
        probe = None
    if probe is not None:
        size = sum(t.numel() for t in [*probe.parameters(), *probe.buffers()])
        if size > MAX_PARAMETERS:
            raise ModelFileError(
                f"{where} has {size} parameters, more than {MAX_PARAMETERS}: fix "
                "architecture.model_kwargs"
            )
    try:
        return timm.create_model(name, pretrained=False, **kwargs)
    except Exception as err:  # a constructor given values it cannot take raises any type
        raise ModelFileError(
            f"{where} cannot be built ({_brief(err)}): fix architecture.model_kwargs"
        ) from err


def _build_qann(ann: nn.Module, config: dict[str, Any], path: Path) -> fx.GraphModule:
    """``build_qann`` with the config's options; an ``input_shape`` the model cannot take is
    the config's fault (ModelFileError), not a crash."""
    try:
        return build_qann(
            ann, config["levels"], per_channel=config["per_channel"],
            input_shape=config["input_shape"],
        )  # fmt: skip
    except RuntimeError as err:
        raise ModelFileError(
            f"{path}: input_shape {config['input_shape']} does not fit architecture "
            f"{config['architecture']['model_name']!r} ({_brief(err)})"
        ) from err


def _apply_layers(model: nn.Module, layers: dict[str, dict[str, Any]], path: Path) -> None:
    """Set per-layer spike/level counts (they may differ from the model-wide default)."""
    snn = isinstance(model, SpikingNetwork)
    found = neurons(model.net) if snn else quantizers(model)
    if set(found) != set(layers):
        raise ModelFileError(
            f"{path} lists layers {_first(set(layers) - set(found))} the rebuilt model lacks "
            f"and the model has {_first(set(found) - set(layers))} the file lacks: the "
            "architecture or transforms do not match"
        )
    for name, spec in layers.items():
        if snn:
            found[name].max_spikes = int(spec["max_spikes"])
        else:
            found[name].levels = int(spec["levels"])


def _brief(err: BaseException) -> str:
    """``err`` on one line of at most about 200 characters."""
    return f"{type(err).__name__}: " + " ".join(str(err).split())[:200]


def _first(names: set[str], count: int = 5) -> str:
    """The first ``count`` of ``names`` (sorted), ``...`` when there are more."""
    shown = sorted(names)
    return f"{shown[:count]}{' ...' if len(shown) > count else ''}"


def _load_state(model: nn.Module, state: dict[str, Tensor], path: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{k}: file {tuple(state[k].shape)}, model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    if unexpected:
        problems.append(f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
    if wrong:
        problems.append(f"shape mismatch {wrong[:5]}{' ...' if len(wrong) > 5 else ''}")
    if problems:
        raise ModelFileError(
            f"{path} does not fit the architecture in {CONFIG_FILE}: " + "; ".join(problems)
        )
    model.load_state_dict(state, strict=True)


def _check_thresholds(
    model: nn.Module, layers: dict[str, dict[str, Any]], config: Path, weights: Path
) -> None:
    modules = neurons(model.net) if isinstance(model, SpikingNetwork) else quantizers(model)
    for name, spec in layers.items():
        recorded = torch.tensor(spec["threshold"], dtype=torch.float32)
        if name not in modules or not torch.equal(recorded, modules[name].threshold.detach()):
            raise ModelFileError(
                f"threshold of {name} in {config} differs from {weights}: the files do not "
                "belong together"
            )
