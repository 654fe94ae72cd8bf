"""Read a NIR graph back into snnTorch (IF nodes as non-leaky neurons with subtractive reset)."""

from __future__ import annotations

from pathlib import Path

import nir
import numpy as np
import torch
from torch import Tensor, nn

from .nir_read import read_nir

__all__ = ["ElementwiseScale", "reset_snntorch", "to_snntorch"]

# --------------------------------------------------------------------------- reading back


def to_snntorch(graph: nir.NIRGraph | str | Path) -> nn.Module:
    """Read a NIR graph into snnTorch, IF nodes as snnTorch IF neurons with subtractive reset.

    Every node but ``nir.IF`` and ``nir.Scale`` (which snnTorch does not map; here a
    product) goes through snnTorch's own ``import_from_nir`` mapping.
    snnTorch 1.0's mapping of ``nir.IF`` is a leaky neuron (``beta=0.9``) that returns a
    ``(spikes, membrane)`` tuple the graph cannot pass on; here it is ``snntorch.Leaky`` with
    ``beta=1`` (no leak, the NIR IF), ``threshold=v_threshold`` and subtractive reset. The
    membranes start at the nodes' ``metadata["v_init"]`` (multispike's ``q/2``) after
    :func:`reset_snntorch`.

    The returned module is nirtorch's graph executor: call it once per step with one
    unbatched sample ``(C, H, W)``; it returns ``(output, state)``.

    The graph is checked before anything is built
    (:func:`~multispike.pipelines.export.validate_nir_graph`).

    Raises:
        FileNotFoundError: no file at ``graph``.
        ExportError: a corrupt file or a malformed graph (a dangling edge, a cycle, a
            threshold <= 0, a non-finite or oversized array, ...), naming the file and node.
    """
    try:
        import nirtorch
        import snntorch
        from snntorch.import_nir import _nir_to_snntorch_module
    except ImportError as err:  # snnTorch is a test-only (dev) dependency
        raise ImportError("to_snntorch needs snntorch: pip install 'multispike[dev]'") from err

    graph = read_nir(graph)

    def if_neuron(node: nir.IF) -> nn.Module:
        neuron = snntorch.Leaky(
            beta=1.0,
            threshold=torch.as_tensor(node.v_threshold, dtype=torch.float32),
            reset_mechanism="subtract",
            init_hidden=True,
            reset_delay=True,  # v(t) = v(t-1) - θ·s(t-1) + x(t): multispike's order
        )
        neuron.v_init = torch.as_tensor(node.metadata.get("v_init", 0.0), dtype=torch.float32)
        return neuron

    node_map = {
        kind: lambda n: _nir_to_snntorch_module(n, init_hidden=True)
        for kind in (nir.Affine, nir.Linear, nir.Conv2d, nir.Flatten, nir.AvgPool2d)
    }
    node_map[nir.IF] = if_neuron
    node_map[nir.Scale] = lambda n: ElementwiseScale(n.scale)
    module = nirtorch.nir_to_torch(graph, node_map)
    reset_snntorch(module)
    return module


class ElementwiseScale(nn.Module):
    """``nir.Scale`` (snnTorch has no mapping for it): ``x ⊙ s``."""

    def __init__(self, scale: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


def reset_snntorch(module: nn.Module) -> None:
    """Put every IF membrane of a :func:`to_snntorch` module back to its initial value."""
    for neuron in module.modules():
        if hasattr(neuron, "v_init"):
            neuron.mem = neuron.v_init.clone()
