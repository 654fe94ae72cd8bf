"""Address the submodules of a model by qualified name (``layer1.0.conv1``), and find its device."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["get_module", "model_device", "set_module"]


def get_module(root: nn.Module, path: str) -> nn.Module:
    """The submodule at a dotted ``path`` (``""`` is the root)."""
    return root.get_submodule(path) if path else root


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (or buffer); the CPU for a stateless model."""
    tensor = next(model.parameters(), None)
    if tensor is None:
        tensor = next(model.buffers(), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def set_module(root: nn.Module, path: str, module: nn.Module) -> None:
    """Put ``module`` at dotted ``path``, creating empty containers along the way."""
    parent_path, _, name = path.rpartition(".")
    parent = root
    for part in parent_path.split(".") if parent_path else []:
        if not hasattr(parent, part):
            parent.add_module(part, nn.Module())
        parent = getattr(parent, part)
    parent.add_module(name, module)
