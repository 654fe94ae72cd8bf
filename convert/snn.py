"""Quantized ANN → spiking network: swap each quantizer for a multi-level IF neuron.

The SNN reuses the QANN's graph. Stateless layers (conv, linear, pooling, joins) process
all ``T`` steps at once on a time-flattened ``(T·B, ...)`` batch; neurons unroll time.
Inputs are analog (direct encoding): a static input is presented at every step, a
sequence input ``(T, B, ...)`` (event frames) gives one frame per step. The classifier
head's output at step ``t`` is returned for every ``t``; the prediction after ``t`` steps
is the mean of the first ``t`` outputs (:func:`cumulative_mean`).
"""

from __future__ import annotations

import copy
import operator
import warnings
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, fx, nn

from .calibrate import quantizers
from .modules import get_module, set_module
from .neuron import MultiLevelIFNeuron
from .quant import MultiLevelQuantizer
from .signals import add_into

__all__ = ["SpikingNetwork", "cumulative_mean", "neurons", "qann_of", "to_snn"]


def cumulative_mean(outputs: Tensor) -> Tensor:
    """``out[t] = mean(outputs[:t+1])`` over the leading time dimension."""
    steps = torch.arange(1, outputs.shape[0] + 1, device=outputs.device, dtype=outputs.dtype)
    return outputs.cumsum(0) / steps.view(-1, *([1] * (outputs.dim() - 1)))


def neurons(model: nn.Module) -> dict[str, MultiLevelIFNeuron]:
    """Every multi-level IF neuron of a model by qualified name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, MultiLevelIFNeuron)}


class SpikingNetwork(nn.Module):
    """A converted SNN: runs ``timesteps`` steps and returns every step's output.

    Args:
        net: the spiking graph (a QANN graph whose quantizers are neurons).
        timesteps: default number of steps ``T``.
        input_shape: shape of one static input sample, e.g. ``(3, 32, 32)``.

    Forward:
        ``x`` of shape ``(B, *input_shape)`` (presented at every step) or
        ``(T, B, *input_shape)`` (one frame per step; ``T`` must be the network's
        ``timesteps`` unless ``timesteps=T`` is passed) → outputs ``(T, B, classes)``. A numpy
        array is converted. Outside training, non-finite inputs (``inf``, ``nan``) raise, or warn
        when :attr:`nonfinite` is ``"warn"`` (``"ignore"`` skips the check).
    """

    def __init__(self, net: fx.GraphModule, timesteps: int = 1, input_shape=()) -> None:
        super().__init__()
        if timesteps < 1:
            raise ValueError(f"timesteps must be >= 1, got {timesteps}")
        self.net = net
        self.timesteps = int(timesteps)
        self.input_shape = tuple(int(d) for d in input_shape)
        self.nonfinite: Literal["raise", "warn", "ignore"] = "raise"

    def _checked(self, x: Any) -> Tensor:
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(np.ascontiguousarray(x)).to(torch.get_default_dtype())
        if not isinstance(x, Tensor):
            raise TypeError(f"SNN input must be a torch.Tensor or numpy array, got {type(x)}")
        checking = not (self.training or torch.compiler.is_compiling())  # no sync in training
        if self.nonfinite != "ignore" and checking:
            bad = int((~torch.isfinite(x)).sum()) if x.is_floating_point() else 0
            if bad:
                message = (
                    f"SNN input holds {bad} non-finite value(s) (inf/nan) of {x.numel()}; "
                    "fix the data, or set snn.nonfinite = 'warn' to run anyway"
                )
                if self.nonfinite == "raise":
                    raise ValueError(message)
                warnings.warn(message, RuntimeWarning, stacklevel=3)
        return x

    def forward(self, x: Tensor, timesteps: int | None = None) -> Tensor:
        x = self._checked(x)
        ndim = len(self.input_shape) + 1
        if x.dim() == ndim:
            steps = self.timesteps if timesteps is None else int(timesteps)
            batch = x.shape[0]
            x = x.unsqueeze(0).expand(steps, *x.shape).reshape(steps * batch, *x.shape[1:])
        elif x.dim() == ndim + 1:
            steps, batch = x.shape[:2]
            expected = self.timesteps if timesteps is None else timesteps
            if steps != expected:
                raise ValueError(
                    f"input has {steps} frames but the network runs {expected} steps: pass "
                    f"timesteps={steps} to run one frame per step, or re-bin the frames"
                )
            x = x.reshape(steps * batch, *x.shape[2:])
        else:
            raise ValueError(
                f"expected input (B, {', '.join(map(str, self.input_shape))}) or (T, B, ...), "
                f"got shape {tuple(x.shape)}"
            )
        for neuron in self.net.modules():
            if isinstance(neuron, MultiLevelIFNeuron):
                neuron.timesteps = steps
        out = self.net(x)
        return out.reshape(steps, batch, *out.shape[1:])

    def extra_repr(self) -> str:
        return f"timesteps={self.timesteps}"


def to_snn(
    qann: fx.GraphModule,
    max_spikes: int | None = None,
    timesteps: int = 1,
) -> SpikingNetwork:
    """Convert a quantized ANN into a :class:`SpikingNetwork` (on a copy).

    Each quantizer becomes a :class:`MultiLevelIFNeuron` at the same qualified name with
    the same threshold λ and quantum ``λ/N``. With ``N = L`` and ``T = 1`` the SNN's output
    is bit-identical to the QANN's. The SNN is in the QANN's mode, every module as the one it
    replaces: in eval mode (its input checks on) for a QANN of :func:`calibrate`,
    :func:`build_qann` or ``load``; in training mode for one being trained (distillation).

    Args:
        qann: from :func:`multispike.convert.calibrate` (or :func:`build_qann`).
        max_spikes: ``N``, spikes per neuron per step (default ``L``; 1 = binary IF).
        timesteps: default ``T``.
    """
    meta = qann.meta.get("multispike")
    if meta is None:
        raise TypeError("to_snn expects a quantized ANN from multispike.convert.calibrate")
    net = copy.deepcopy(qann)
    for path, quant in quantizers(net).items():
        neuron = MultiLevelIFNeuron(
            max_spikes or quant.levels, quant.threshold.detach(), source=quant.source
        )
        set_module(net, path, neuron.to(quant.threshold.device).train(quant.training))
    net.meta["multispike"] = dict(meta, max_spikes=max_spikes or meta["levels"])
    _work_in_place(net)
    net.recompile()
    snn = SpikingNetwork(net, timesteps, meta["input_shape"])
    snn.training = net.training  # the wrapper only: the net's modules keep their modes
    return snn


_FRESH_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_PASSING_MODULES = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)  # eval


def _fresh(net: fx.GraphModule, node: Any) -> bool:
    """Whether ``node`` makes a new tensor (a conv, a linear, an addition, or passes one on
    unchanged) that only one node reads: that reader may overwrite it."""
    if not isinstance(node, fx.Node) or len(node.users) != 1:
        return False
    if node.op == "call_module":
        module = get_module(net, node.target)
        if isinstance(module, _PASSING_MODULES):
            return _fresh(net, node.args[0])
        return isinstance(module, _FRESH_MODULES)
    return node.op == "call_function" and node.target in (operator.add, add_into)


def _work_in_place(net: fx.GraphModule) -> None:
    """Let neurons integrate into, and residual joins add into (:func:`add_into`), fresh
    tensors (see :func:`_fresh`), as ``nn.ReLU(inplace=True)`` and ``x += shortcut`` do in
    timm: the same values without a new activation-sized tensor per site. Neurons allocate
    under autograd or when the input's dtype is not the result's (autocast)."""
    for node in net.graph.nodes:
        if node.op == "call_module" and node.args and _fresh(net, node.args[0]):
            module = get_module(net, node.target)
            if isinstance(module, MultiLevelIFNeuron):
                module.inplace = True
        elif node.target is operator.add and not node.kwargs and _fresh(net, node.args[0]):
            node.target = add_into


def qann_of(snn: SpikingNetwork, levels: int | None = None) -> fx.GraphModule:
    """The QANN an SNN was converted from: each neuron back to a quantizer with its λ.

    Args:
        snn: from :func:`~multispike.convert.to_snn` (or a saved model directory).
        levels: ``L`` (default: the levels recorded in the SNN's metadata).
    """
    meta = snn.net.meta["multispike"]
    levels = levels or meta["levels"]
    net = copy.deepcopy(snn.net)
    for path, neuron in neurons(net).items():
        lam = neuron.threshold.detach()
        quant = MultiLevelQuantizer(
            levels, lam.numel() if lam.dim() else None, source=neuron.source
        )
        quant.threshold.data.copy_(lam)
        set_module(net, path, quant.to(lam.device))
    net.recompile()
    qann = fx.GraphModule(net, net.graph, class_name="QuantizedFromSNN")
    qann.meta["multispike"] = {k: v for k, v in meta.items() if k != "max_spikes"}
    return qann.eval()
