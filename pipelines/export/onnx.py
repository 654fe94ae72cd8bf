"""Export the network at ``T = 1`` to ONNX.

**ONNX**: the network at ``T = 1`` is a feed-forward quantized network (floor, clamp,
mul); :func:`export_onnx` writes it with ``torch.onnx.export`` for ``(B, *input_shape)``
inputs and ``(B, classes)`` outputs. onnxruntime matches PyTorch to float rounding
(≈1e-6 relative); a pre-activation within rounding of a level boundary can land one
level apart.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, fx, nn

from ...convert import SpikingNetwork

__all__ = ["export_onnx"]

# --------------------------------------------------------------------------- ONNX


class _FirstStep(nn.Module):
    """The network at ``T = 1`` as a plain ``(B, ...) → (B, classes)`` module."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        if isinstance(self.model, SpikingNetwork):
            return self.model(x, timesteps=1)[0]
        return self.model(x)


def export_onnx(
    model: SpikingNetwork | fx.GraphModule,
    path: str | Path,
    *,
    opset: int = 17,
    preprocessing: dict[str, Any] | None = None,
) -> Path:
    """Write the ``T = 1`` network (SNN at one step, or a QANN) to an ONNX file.

    The file's ``metadata_props`` say what a deployment needs: ``multispike.kind``,
    ``levels``, ``max_spikes``, ``timesteps`` (1, as exported), ``input_shape``,
    ``num_classes``, ``architecture`` when known, and the input normalisation ``mean`` /
    ``std`` when given (``x = (image / max - mean) / std``), all as JSON strings.

    Args:
        model: a SpikingNetwork (exported at ``T = 1``) or a QANN; not modified.
        path: the ``.onnx`` file to write.
        opset: ONNX opset version.
        preprocessing: the normalisation, ``{"mean": [...], "std": [...]}`` (a model
            folder's ``config.json`` records it).

    Returns:
        ``path``; the graph takes ``input`` ``(B, *input_shape)`` and returns ``output``
        ``(B, classes)`` with a dynamic batch size.
    """
    net = model.net if isinstance(model, SpikingNetwork) else model
    meta = getattr(net, "meta", {}).get("multispike")
    if meta is None:
        raise TypeError(
            f"export_onnx expects a SpikingNetwork or a QANN, got {type(model).__name__}"
        )
    wrapper = _FirstStep(copy.deepcopy(model).cpu().eval())
    example = torch.zeros(1, *meta["input_shape"])
    path = Path(path)
    with torch.no_grad(), warnings.catch_warnings():
        # T = 1 is fixed at export: the neurons' Python checks on it are constants, as meant
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # the torch.export-based exporter needs onnxscript, not a dependency: keep TorchScript
        warnings.simplefilter("ignore", DeprecationWarning)
        # strided slices (the CIFAR ResNets' option-A shortcut) stay unfolded: harmless
        warnings.filterwarnings("ignore", "Constant folding - Only steps=1", UserWarning)
        torch.onnx.export(
            wrapper,
            (example,),
            str(path),
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
        classes = int(wrapper(example).shape[-1])
    _write_metadata(path, model, meta, classes, preprocessing)
    return path


def _write_metadata(
    path: Path, model: nn.Module, meta: dict, classes: int, preprocessing: dict | None
) -> None:
    import json

    import onnx

    snn = isinstance(model, SpikingNetwork)
    props = {
        "multispike.kind": "snn" if snn else "qann",
        "multispike.levels": meta["levels"],
        "multispike.max_spikes": meta.get("max_spikes") if snn else None,
        "multispike.timesteps": 1,
        "multispike.input_shape": list(meta["input_shape"]),
        "multispike.num_classes": classes,
        "multispike.architecture": (meta.get("architecture") or {}).get("model_name"),
        **{f"multispike.{k}": v for k, v in (preprocessing or {}).items()},
    }
    proto = onnx.load(str(path))
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.save(proto, str(path))
