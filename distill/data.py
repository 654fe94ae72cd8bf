"""Deprecated: the DataModules moved to :mod:`multispike.pipelines.data`.

``multispike.distill.data.CIFAR10DataModule`` (in configs written before 0.2) still resolves,
with a ``DeprecationWarning``; this alias goes in the next release.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    warnings.warn(
        f"multispike.distill.data.{name} moved to multispike.pipelines.data.{name}; "
        "the old path goes in the next release",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module("multispike.pipelines.data"), name)
