"""Local and third-party checkpoints → zoo (and timm) models, with errors that name every mismatch.

A checkpoint may be a raw state dict or hold one under ``state_dict`` / ``model_state_dict`` /
``model`` / ``net`` (nested wrappers are unwrapped); wrapper prefixes (DataParallel ``module.``,
``torch.compile`` ``_orig_mod.``, Lightning ``model.``) are stripped and known third-party names
(``fc`` / ``downsample`` of timm-style CIFAR ResNets) are mapped onto zoo names. The same path
serves ``load_checkpoint(model, path)`` (the CLI's ``--checkpoint``) and timm's
``create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=PATH))`` through the
``pretrained_filter_fn`` hook of :func:`build_zoo_model`.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors.torch import load_file as load_safetensors
from timm.models import build_model_with_cfg
from torch import nn

from . import parts

__all__ = [
    "CheckpointError",
    "adapt_state_dict",
    "build_zoo_model",
    "check_state_dict",
    "extract_state_dict",
    "load_checkpoint",
    "pretrained_filter_fn",
    "read_checkpoint",
]

ModelT = TypeVar("ModelT", bound=nn.Module)

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net")
PREFIXES = ("module.", "_orig_mod.", "model.")
# (pattern, replacement) applied to a key the model lacks, kept when the result is a model key.
RENAMES = ((re.compile(r"^fc\."), "linear."), (re.compile(r"\.downsample\."), ".shortcut."))


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit the model it is loaded into."""


def read_checkpoint(path: str | Path) -> Any:
    """Read a ``.safetensors`` file or a torch pickle (``weights_only=True``) onto the CPU; a
    file stored in parts (:mod:`multispike.zoo.parts`) is read joined."""
    path = Path(path).expanduser()
    if not parts.exists(path):
        raise FileNotFoundError(
            f"checkpoint file not found: {path} — check the path given to --checkpoint or "
            "pretrained_cfg_overlay=dict(file=...)"
        )
    if not path.is_file():
        path = parts.joined_file(path)
    if path.suffix == ".safetensors":
        try:
            return load_safetensors(str(path), device="cpu")
        except Exception as err:  # safetensors raises its own error types for bad headers
            raise CheckpointError(
                f"{path}: not a readable safetensors file ({type(err).__name__}: {err})"
            ) from err
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: not loadable with torch.load(weights_only=True) ({err}). Re-save only the "
            "weights, e.g. torch.save(model.state_dict(), path), or as .safetensors."
        ) from err
    except Exception as err:  # a text file, a truncated archive, ...: any reader error
        raise CheckpointError(
            f"{path}: not a PyTorch checkpoint ({type(err).__name__}: {err}); give a file "
            "written by torch.save or a .safetensors file"
        ) from err


def extract_state_dict(checkpoint: Any, source: str = "<checkpoint>") -> dict[str, torch.Tensor]:
    """The tensors inside ``checkpoint``, unwrapping ``state_dict``/``model``/``net`` keys."""
    while isinstance(checkpoint, Mapping):
        wrapper = next((k for k in WRAPPER_KEYS if isinstance(checkpoint.get(k), Mapping)), None)
        if wrapper is None:
            break
        checkpoint = checkpoint[wrapper]
    if isinstance(checkpoint, nn.Module):
        checkpoint = checkpoint.state_dict()
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f"{source}: holds a {type(checkpoint).__name__}, not a state dict")
    tensors = {k: v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(
            f"{source}: no tensors found (top-level keys: {sorted(map(str, checkpoint))[:10]}); "
            f"expected a state dict, or one under one of {WRAPPER_KEYS}"
        )
    return tensors


def _strip_prefixes(state_dict: dict[str, torch.Tensor], model_keys: set[str]) -> dict:
    while True:
        prefix = next(
            (
                p
                for p in PREFIXES
                if all(k.startswith(p) for k in state_dict)
                and not all(k.startswith(p) for k in model_keys)
            ),
            None,
        )
        if prefix is None:
            return state_dict
        state_dict = {k[len(prefix) :]: v for k, v in state_dict.items()}


def _rename(key: str, model_keys: set[str]) -> str:
    if key in model_keys:
        return key
    renamed = key
    for pattern, replacement in RENAMES:
        renamed = pattern.sub(replacement, renamed)
    return renamed if renamed in model_keys else key


def adapt_state_dict(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> dict:
    """Map a third-party state dict onto ``model``'s key names (a new dict; inputs untouched).

    Strips wrapper prefixes present on every key, renames known third-party layouts, and
    fills BatchNorm ``num_batches_tracked`` counters that old checkpoints lack with the
    model's own values.
    """
    target = model.state_dict()
    model_keys = set(target)
    stripped = _strip_prefixes(dict(state_dict), model_keys)
    adapted = {_rename(k, model_keys): v for k, v in stripped.items()}
    for key in model_keys - set(adapted):
        if key.endswith("num_batches_tracked"):
            adapted[key] = target[key].clone()
    return adapted


# keys named per kind in a mismatch message: enough to recognise the model, short enough to read
_SHOWN = 8


def check_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    model: nn.Module,
    source: str = "<state dict>",
    ignore: tuple[str, ...] = (),
) -> None:
    """Raise :class:`CheckpointError` listing missing / unexpected keys and shape mismatches.

    Args:
        state_dict: Already adapted state dict (see :func:`adapt_state_dict`).
        model: The model it must fit exactly.
        source: Where the state dict came from, named in the message (usually the file).
        ignore: Model keys that may be absent or differ in shape (layers timm adapts itself).
    """
    target = model.state_dict()
    missing = sorted(set(target) - set(state_dict) - set(ignore))
    unexpected = sorted(set(state_dict) - set(target))
    shapes = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(target[k].shape)}"
        for k, v in state_dict.items()
        if k in target and k not in ignore and v.shape != target[k].shape
    ]
    if not (missing or unexpected or shapes):
        return
    parts = []
    for title, count, items in (
        ("missing keys", len(missing), _by_module(missing)),
        ("unexpected keys", len(unexpected), _by_module(unexpected)),
        ("shape mismatches", len(shapes), shapes),
    ):
        if items:
            unit = " modules" if items is not shapes else ""
            more = f", … ({len(items) - _SHOWN} more{unit})" if len(items) > _SHOWN else ""
            shown = ", ".join(items[:_SHOWN]) + more
            parts.append(f"{count} {title}: {shown}")
    hint = "is it a checkpoint of this architecture and width?"
    if shapes and all(any(w in s for w in ("linear", "classifier", "head", "fc.")) for s in shapes):
        hint = "only the classifier differs: a wrong --num_classes?"
    raise CheckpointError(
        f"checkpoint {source} does not fit {type(model).__name__}: {'; '.join(parts)}; {hint}"
    )


def _by_module(keys: list[str]) -> list[str]:
    """``a.bn.bias, a.bn.weight, a.conv.weight`` → ``a.bn.{bias,weight}, a.conv.weight``."""
    groups: dict[str, list[str]] = {}
    for key in keys:
        module, _, name = key.rpartition(".")
        groups.setdefault(module, []).append(name)
    return [
        (f"{m}." if m else "") + (names[0] if len(names) == 1 else f"{{{','.join(names)}}}")
        for m, names in groups.items()
    ]


def load_checkpoint(model: ModelT, path: str | Path) -> ModelT:
    """Load a local checkpoint into ``model`` in place, strictly; returns ``model``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: unreadable file, or any missing / unexpected key or shape mismatch.
    """
    source = str(path)
    state_dict = adapt_state_dict(extract_state_dict(read_checkpoint(path), source), model)
    check_state_dict(state_dict, model, source)
    model.load_state_dict(state_dict, strict=True)
    return model


def pretrained_filter_fn(state_dict: Mapping[str, Any], model: nn.Module) -> dict:
    """timm's ``pretrained_filter_fn`` hook: adapt and check what timm read from file or hub.

    Keys timm adapts itself afterwards are exempt: the classifier when ``num_classes`` differs
    from the pretrained config (timm drops it), the first conv when ``in_chans`` differs.
    """
    cfg = getattr(model, "pretrained_cfg", None) or {}
    source = cfg.get("file") or cfg.get("url") or cfg.get("hf_hub_id") or "<pretrained weights>"
    adapted = adapt_state_dict(extract_state_dict(state_dict, source), model)
    ignore: list[str] = []
    if (
        cfg.get("num_classes") is not None
        and getattr(model, "num_classes", None) != cfg["num_classes"]
    ):
        for name in _as_tuple(cfg.get("classifier")):
            ignore += [f"{name}.weight", f"{name}.bias"]
        adapted = {k: v for k, v in adapted.items() if k not in ignore}
    in_chans = (cfg.get("input_size") or (3,))[0]
    if getattr(model, "in_chans", in_chans) != in_chans:
        ignore += [f"{name}.weight" for name in _as_tuple(cfg.get("first_conv"))]
    check_state_dict(adapted, model, source, ignore=tuple(ignore))
    return adapted


def _as_tuple(names: str | tuple[str, ...] | None) -> tuple[str, ...]:
    if names is None:
        return ()
    return (names,) if isinstance(names, str) else tuple(names)


def build_zoo_model(
    model_cls: Callable[..., ModelT], variant: str, pretrained: bool = False, **kwargs: Any
) -> ModelT:
    """``timm.models.build_model_with_cfg`` with this module's checkpoint hook and file check."""
    file = (kwargs.get("pretrained_cfg_overlay") or {}).get("file")
    if pretrained and file and not Path(file).expanduser().is_file():
        raise FileNotFoundError(
            f"pretrained_cfg_overlay file for {variant} not found: {file} — pass an existing "
            "checkpoint path (a state dict, or a dict holding one)"
        )
    return build_model_with_cfg(
        model_cls, variant, pretrained, pretrained_filter_fn=pretrained_filter_fn, **kwargs
    )
