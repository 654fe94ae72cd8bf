"""Rebuild a model folder bit-exactly: ``timm.create_model(name, **kwargs)`` → ``build_qann``
→ replay of the recorded transforms → ``to_snn`` → strict state-dict load, after the
``config.json`` passed :func:`~.schema.validate_config` and the weights their SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any, Literal

import safetensors
import timm
import torch
from safetensors.torch import load as load_safetensors
from torch import Tensor, fx, nn

from ...convert import SpikingNetwork, build_qann, neurons, qann_of, quantizers, to_snn
from ...zoo import parts
from .schema import ModelFileError, validate_config
from .serialize import (
    CONFIG_FILE,
    FORMAT,
    FORMAT_VERSION,
    LIBRARIES,
    MAX_CONFIG_BYTES,
    MAX_PARAMETERS,
    WEIGHTS_FILE,
    installed_version,
    replay_transforms,
)

__all__ = ["load"]


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
        raise FileNotFoundError(f"{_not_a_model_folder(path.parent)}")
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
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a multispike model config (no format {FORMAT!r})")
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
    """The weights file's tensors, read whole or joined from its parts (:mod:`..zoo.parts`)."""
    try:
        data = parts.read_bytes(path)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{err}: the model directory is incomplete") from None
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise ModelFileError(
            f"{path} does not match the SHA-256 recorded in {CONFIG_FILE}: the weights are "
            "corrupt or come from another model"
        )
    try:
        return load_safetensors(data)
    except (safetensors.SafetensorError, OSError, ValueError) as err:
        raise ModelFileError(f"{path} is not a readable safetensors file ({err})") from err


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split("+")[0].split(".")[:2])


def _check_versions(config: dict[str, Any], path: Path) -> None:
    for lib, saved in config["versions"].items():
        current = installed_version(lib) if lib in LIBRARIES else None
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


def _not_a_model_folder(folder: Path) -> str:
    """Why ``folder`` is not a model folder, and where one might be."""
    what = (
        f"a model folder (written by multispike convert, distill or pipelines.save) holds "
        f"{CONFIG_FILE} and {WEIGHTS_FILE}"
    )
    if not folder.exists():
        return f"model folder {folder} does not exist; {what}"
    if not folder.is_dir():
        return f"{folder} is a file, not a model folder; {what} (ANN weights go to --checkpoint)"
    inside = sorted(p.parent for p in folder.glob(f"*/{CONFIG_FILE}"))
    inside += sorted(p.parent for p in folder.glob(f"*/*/{CONFIG_FILE}"))  # a run: distill/student
    if inside:
        names = ", ".join(str(p) for p in inside[:3])
        return f"{folder} holds no {CONFIG_FILE}; model folders inside it: {names}"
    if any(folder.glob("*.safetensors*")) or any(folder.glob("*.pth")):
        return f"{folder} holds weights but no {CONFIG_FILE}: for an ANN, use --checkpoint FILE"
    return f"{folder} holds no {CONFIG_FILE}; {what}"
