"""Recipes, CLI, evaluation and export built on multispike.convert and multispike.distill.

``load`` and ``save`` (model folders) are imported on first use, so that the command line's
``--help`` does not wait for torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load", "save"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import folder

        return getattr(folder, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
