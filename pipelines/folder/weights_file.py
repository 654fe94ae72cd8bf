"""Writing a safetensors file the way the rest of the files are written: the same bytes for the
same tensors (a model folder's SHA-256 and a recipe's stage hashes stay put across reruns) and
the user's usual permissions (``safetensors.torch.save_file`` creates its files 0600)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import save

__all__ = ["write_safetensors"]


def write_safetensors(
    tensors: Mapping[str, torch.Tensor], path: str | Path, tag: tuple[str, str] | None = None
) -> Path:
    """Write ``tensors`` (CPU copies: tied weights are saved once per name) to ``path``;
    ``tag`` is the one ``(key, value)`` of the header's metadata (safetensors orders several
    keys at random)."""
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}
    data = save(state, metadata=dict([tag]) if tag else None)
    path = Path(path)
    path.write_bytes(data)
    return path
