"""Fold eval-mode BatchNorm into the conv/linear layer that feeds it.

For ``y = γ·(Wx + b − μ)/√(σ² + ε) + β`` the folded layer has ``W' = W·γ/√(σ² + ε)`` and
``b' = (b − μ)·γ/√(σ² + ε) + β`` (``torch.nn.utils.fusion``). Folding is exact in real
arithmetic; it is applied only where the conv/linear output feeds that BatchNorm alone.
BatchNorms that cannot be folded (after a join or a pooling) stay as frozen affine maps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from .modules import get_module, set_module

__all__ = ["fold_batchnorm"]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BNS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _functional_bn(gm: fx.GraphModule, node: fx.Node) -> nn.BatchNorm1d | None:
    """An eval BatchNorm module equivalent to an ``F.batch_norm`` node, else ``None``."""
    names = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum")
    names += ("eps",)
    args = dict(zip(names, node.args, strict=False))
    args.update(node.kwargs)
    eps = args.get("eps", 1e-5)
    if args.get("training", False):
        return None
    tensors = {}
    for key in ("running_mean", "running_var", "weight", "bias"):
        arg = args.get(key)
        if arg is None:
            tensors[key] = None
            continue
        if not isinstance(arg, fx.Node) or arg.op != "get_attr":
            return None
        owner, _, name = arg.target.rpartition(".")
        tensors[key] = getattr(get_module(gm, owner), name)
    if tensors["running_mean"] is None or tensors["running_var"] is None:
        return None
    bn = nn.BatchNorm1d(tensors["running_mean"].numel(), eps=float(eps))
    with torch.no_grad():
        bn.running_mean.copy_(tensors["running_mean"])
        bn.running_var.copy_(tensors["running_var"])
        bn.weight.copy_(tensors["weight"] if tensors["weight"] is not None else 1.0)
        bn.bias.copy_(tensors["bias"] if tensors["bias"] is not None else 0.0)
    return bn.eval()


def _as_bn(gm: fx.GraphModule, node: fx.Node) -> nn.Module | None:
    if node.op == "call_module":
        mod = get_module(gm, node.target)
        if type(mod) in _BNS and mod.track_running_stats and mod.running_mean is not None:
            return mod
        return None
    if node.op == "call_function" and node.target is F.batch_norm:
        return _functional_bn(gm, node)
    return None


def fold_batchnorm(gm: fx.GraphModule) -> list[tuple[str, str]]:
    """Fold every foldable BatchNorm in place; returns ``(layer, batchnorm)`` name pairs.

    Only layers of exactly ``nn.Conv*d``/``nn.Linear`` type are folded into (subclasses may
    transform their weight in ``forward``).
    """
    folded = []
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or len(node.users) != 1:
            continue
        layer = get_module(gm, node.target)
        if not (type(layer) in _CONVS or type(layer) is nn.Linear or _is_timm_linear(layer)):
            continue
        (user,) = node.users
        if user.args[0] is not node:
            continue
        bn = _as_bn(gm, user)
        if bn is None:
            continue
        fuse = fuse_linear_bn_eval if isinstance(layer, nn.Linear) else fuse_conv_bn_eval
        fused = fuse(layer.eval(), bn.eval())
        for param in fused.parameters():  # a bias created by folding is trainable too
            param.requires_grad_(layer.weight.requires_grad)
        set_module(gm, node.target, fused)
        bn_name = user.target if user.op == "call_module" else _owner_name(user)
        user.replace_all_uses_with(node)
        gm.graph.erase_node(user)
        folded.append((node.target, bn_name))
    gm.graph.eliminate_dead_code()
    gm.graph.lint()
    gm.recompile()
    return folded


def _is_timm_linear(layer: nn.Module) -> bool:
    """timm's ``Linear`` is ``nn.Linear`` with a jit-friendly forward; fold into it too."""
    return type(layer).__name__ == "Linear" and type(layer).__module__.startswith("timm.layers")


def _owner_name(node: fx.Node) -> str:
    weight = node.args[3] if len(node.args) > 3 else node.kwargs.get("weight")
    if isinstance(weight, fx.Node) and weight.op == "get_attr":
        return weight.target.rpartition(".")[0]
    return node.name
