"""Export a converted model, one format per file, and read NIR graphs back.

- :mod:`.onnx`: the network at ``T = 1`` as ONNX, with its metadata;
- :mod:`.nir`: the spiking graph as NIR (what a reader reproduces is in its docstring);
- :mod:`.sinabs`: the SNN in sinabs (bit-identical), and a NIR graph read into sinabs;
- :mod:`.snntorch`: a NIR graph read into snnTorch;
- :mod:`.nir_read` and :mod:`.nir_rules`: the checks a NIR graph passes before a reader
  builds anything from it.
"""

from .errors import ExportError
from .nir import export_nir, graph_with_shapes
from .nir_read import read_nir, validate_nir_graph
from .onnx import export_onnx
from .sinabs import reset_sinabs, run_sinabs, save_sinabs, sinabs_from_nir, to_sinabs
from .snntorch import ElementwiseScale, reset_snntorch, to_snntorch

__all__ = [
    "ElementwiseScale",
    "ExportError",
    "export_nir",
    "export_onnx",
    "graph_with_shapes",
    "read_nir",
    "reset_sinabs",
    "reset_snntorch",
    "run_sinabs",
    "save_sinabs",
    "sinabs_from_nir",
    "to_sinabs",
    "to_snntorch",
    "validate_nir_graph",
]
