"""The one way multispike builds a source ANN: a timm (or zoo) name plus where its weights are.

Weights are looked for in this order, and the first source found is the only one used:

1. ``checkpoint``: an explicit local file (any layout :func:`load_checkpoint` reads); it
   never triggers a download;
2. with ``pretrained``: the zoo's copy in the local data folder
   (:func:`multispike.zoo.paths.pretrained_path`, ``MULTISPIKE_DATA``);
3. with ``pretrained``: timm's own source (its cache, else the hub).

Without ``checkpoint`` or ``pretrained`` the model keeps its random initialisation.
"""

from __future__ import annotations

import difflib
from typing import Any

import timm
from timm.models import get_pretrained_cfg
from torch import nn

from .checkpoints import load_checkpoint
from .paths import pretrained_path

__all__ = ["load_model"]


def load_model(
    model_name: str,
    checkpoint: str | None = None,
    pretrained: bool = False,
    num_classes: int | None = None,
    in_chans: int | None = None,
) -> nn.Module:
    """A timm/zoo model in eval mode, with weights from the first source found (see above).

    Args:
        model_name: name in timm's registry, e.g. ``"resnet18"`` or ``"ms_resnet20"``.
        checkpoint: local weights file (state dict, Lightning or third-party checkpoint,
            safetensors); takes precedence over ``pretrained``.
        pretrained: load pretrained weights: the local data folder's copy, else timm's.
        num_classes: classifier outputs (default: the registry's).
        in_chans: input channels (default: the registry's).

    Raises:
        ValueError: ``model_name`` is not registered (the message lists close names).
        FileNotFoundError: ``checkpoint`` does not exist.
        CheckpointError: the checkpoint cannot be read or does not fit the model.
    """
    import multispike.zoo  # noqa: F401  (registers the zoo's ms_* models)

    if not timm.is_model(model_name):
        close = difflib.get_close_matches(model_name, timm.list_models(), n=6, cutoff=0.75)
        raise ValueError(f"model {model_name!r} is not a timm model; similar names: {close}")
    kwargs: dict[str, Any] = {
        k: v for k, v in (("num_classes", num_classes), ("in_chans", in_chans)) if v
    }
    no_local = None
    if checkpoint is None and pretrained:
        try:
            kwargs["pretrained_cfg_overlay"] = dict(file=str(pretrained_path(model_name)))
        except FileNotFoundError as err:  # no local copy: timm's source, if it has one
            no_local = err
    if no_local is not None and not _timm_has_source(model_name):
        raise FileNotFoundError(
            f"{no_local}; timm has no other source for it: pass a local weights file with "
            "--checkpoint FILE"
        )
    try:
        model = timm.create_model(
            model_name, pretrained=pretrained and checkpoint is None, **kwargs
        )
    except OSError as err:  # offline: no local copy, and the hub cannot be reached
        if no_local is None:
            raise
        raise FileNotFoundError(
            f"{no_local}; timm's hub is out of reach too ({type(err).__name__}); pass a local "
            "weights file with --checkpoint FILE"
        ) from None
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    return model.eval()


def _timm_has_source(model_name: str) -> bool:
    """Whether timm's ``pretrained_cfg`` for ``model_name`` names any place to load from."""
    cfg = get_pretrained_cfg(model_name)
    return cfg is not None and any(
        getattr(cfg, key, None) for key in ("url", "hf_hub_id", "file", "state_dict")
    )
