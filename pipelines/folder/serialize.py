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

import json
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import timm
from torch import fx, nn

from ...convert import SpikingNetwork, neurons, quantizers
from .hashes import sha256_of
from .schema import ModelFileError
from .weights_file import write_safetensors

__all__ = [
    "FORMAT",
    "LIBRARIES",
    "MAX_CONFIG_BYTES",
    "MAX_PARAMETERS",
    "CONFIG_FILE",
    "FORMAT_VERSION",
    "ModelFileError",
    "TRANSFORMS",
    "WEIGHTS_FILE",
    "conversion_meta",
    "installed_version",
    "register_transform",
    "replay_transforms",
    "save",
]

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
MAX_CONFIG_BYTES = 64 << 20  # a config.json (per-channel thresholds of a large CNN: ~2 MB)
MAX_PARAMETERS = 2**30  # parameters and buffers of the architecture a config names (4 GiB)
FORMAT = "multispike-model"
LIBRARIES = ("multispike", "torch", "timm")

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
    weights = write_safetensors(
        model.state_dict(), directory / WEIGHTS_FILE, (FORMAT, str(FORMAT_VERSION))
    )
    is_snn = isinstance(model, SpikingNetwork)
    config = {
        "format": FORMAT,
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
        "weights": {"file": WEIGHTS_FILE, "sha256": sha256_of(weights)},
        "versions": {lib: installed_version(lib) for lib in LIBRARIES},
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


def installed_version(lib: str) -> str | None:
    """``lib``'s installed version; ``None`` where it runs from a source tree, not installed."""
    try:
        return metadata.version(lib)
    except metadata.PackageNotFoundError:
        return None
