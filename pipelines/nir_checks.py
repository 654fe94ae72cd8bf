"""Checks on a NIR graph before a reader builds anything from it.

:func:`read_nir` is where :func:`~multispike.pipelines.export.to_snntorch` and
:func:`~multispike.pipelines.sinabs_export.sinabs_from_nir` start. A file is first scanned as
HDF5 without reading any data (declared sizes, links, nesting), then read by ``nir.read`` and
checked by :func:`validate_nir_graph`, as is a graph passed in memory. A graph that passes has
one Input and one Output node, edges between its own nodes only, no cycle, only node types
the readers map, finite numeric arrays of bounded size, positive thresholds, a valid
multispike payload (``max_spikes``, ``v_init``, ``reset``) and shapes that agree along every
edge: the readers neither loop nor allocate without bound, and what they build runs on the
Input node's shape. Every refusal is an :class:`~multispike.pipelines.export.ExportError`
naming the file (or "NIR graph") and the node or edge at fault.
"""

from __future__ import annotations

import keyword
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import nir
import numpy as np

from .export import ExportError
from .folder_schema import MAX_COUNT

__all__ = [
    "MAX_BYTES",
    "MAX_DIM",
    "MAX_EDGES",
    "MAX_ELEMENTS",
    "MAX_NODES",
    "read_nir",
    "validate_nir_graph",
]

MAX_ELEMENTS = 2**28  # one array, or one node's output for one sample (1 GiB of float32)
MAX_BYTES = 2**31  # all arrays of one graph together
MAX_DIM = 2**20  # one dimension of a shape, a kernel, a stride or a padding
MAX_NODES = 10_000
MAX_EDGES = 100_000
_MAX_LINKS = 16 * MAX_NODES  # HDF5 groups and datasets walked in one file
_MAX_DEPTH = 16  # HDF5 group nesting (a flat NIR graph uses 5)
_MAX_STRINGS = 2 * MAX_EDGES  # elements of one string dataset (the edge list)
_MAX_STRING_BYTES = 2**24
_NAME = re.compile(r"[A-Za-z0-9_]{1,200}")

Shape = tuple[int, ...]


def read_nir(graph: nir.NIRGraph | str | Path) -> nir.NIRGraph:
    """``graph`` itself or read from a file, checked by :func:`validate_nir_graph`.

    Raises:
        FileNotFoundError: no such file.
        ExportError: a file that is not a readable NIR graph, or a graph that fails a check;
            names the file and the node or edge.
    """
    if isinstance(graph, nir.NIRGraph):
        validate_nir_graph(graph)
        return graph
    if not isinstance(graph, str | Path):
        raise TypeError(f"expected a nir.NIRGraph or a NIR file path, got {type(graph).__name__}")
    path = Path(graph)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: pass a NIR file (multispike export --format nir)"
        )
    _scan_file(path)
    try:
        read = nir.read(str(path), type_check=False)
    except Exception as err:  # nir meets damage with asserts, KeyErrors, h5py errors, ...
        raise ExportError(
            f"{path} is not a readable NIR graph ({_brief(err)}): the file is corrupt or not NIR"
        ) from err
    validate_nir_graph(read, path)
    return read


def validate_nir_graph(graph: nir.NIRGraph, source: str | Path | None = None) -> None:
    """Check ``graph`` before anything is built from it (see the module docstring).

    Args:
        graph: the graph, as ``nir.read`` returns it or built in memory.
        source: the file it was read from, named in errors.

    Raises:
        ExportError: the first problem found, naming ``source`` and the node or edge.
    """
    where = str(source) if source is not None else "NIR graph"
    if not isinstance(graph, nir.NIRGraph):
        raise ExportError(f"{where} holds a {type(graph).__name__}, not a nir.NIRGraph")
    order, inputs_of = _structure(graph, where)
    budget = _Budget(where)
    shapes: dict[str, Shape] = {}
    for name in order:
        node = graph.nodes[name]
        what = f"{where}: node {name!r} ({type(node).__name__})"
        _check_fields(node, what, budget)
        fed = {shapes[src] for src in inputs_of[name]}
        if len(fed) > 1:
            raise ExportError(f"{what} sums inputs of different shapes {sorted(fed)}")
        shapes[name] = _SHAPE_RULES[type(node)](node, next(iter(fed), None), what)


# --------------------------------------------------------------------------- the file


@dataclass
class _Budget:
    """What one file or graph may hold in total."""

    where: str
    links: int = 0
    bytes: int = 0

    def add(self, nbytes: int, links: int = 0) -> None:
        self.bytes, self.links = self.bytes + nbytes, self.links + links
        if self.bytes > MAX_BYTES:
            raise ExportError(f"{self.where} holds more than {MAX_BYTES} bytes: too large to read")
        if self.links > _MAX_LINKS:
            raise ExportError(f"{self.where} holds more than {_MAX_LINKS} HDF5 objects: not NIR")


def _brief(err: BaseException) -> str:
    return f"{type(err).__name__}: " + " ".join(str(err).split())[:200]


def _scan_file(path: Path) -> None:
    """Refuse what ``nir.read`` would read without bound, before it reads anything."""
    try:
        with h5py.File(path, "r") as file:
            _scan_group(file, path, 0, _Budget(str(path)))
            _refuse_nested_graphs(file, path)
    except ExportError:
        raise
    except Exception as err:  # h5py meets damage with OSError, KeyError, RuntimeError, ...
        raise ExportError(
            f"{path} is not a readable NIR (HDF5) file ({_brief(err)}): the file is corrupt"
        ) from err


def _scan_group(group: h5py.Group, path: Path, depth: int, budget: _Budget) -> None:
    if depth > _MAX_DEPTH:
        raise ExportError(f"{path}: {group.name} is nested over {_MAX_DEPTH} deep: not NIR")
    for key in group:
        link = group.get(key, getlink=True)
        if not isinstance(link, h5py.HardLink):
            raise ExportError(
                f"{path}: {group.name}/{key} is a {type(link).__name__}: NIR files hold plain "
                "groups and datasets (a link can reach another file)"
            )
        budget.add(0, links=1)
        item = group[key]
        if isinstance(item, h5py.Group):
            _scan_group(item, path, depth + 1, budget)
        elif isinstance(item, h5py.Dataset):
            _scan_dataset(item, path, budget)


def _scan_dataset(data: h5py.Dataset, path: Path, budget: _Budget) -> None:
    if data.is_virtual or data.external:
        raise ExportError(f"{path}: dataset {data.name} keeps its data in other files: refused")
    kind, size = data.dtype.kind, data.size or 0
    numeric = kind in "biuf"
    if not numeric and kind not in "OS":
        raise ExportError(f"{path}: dataset {data.name} has type {data.dtype}: not NIR")
    nbytes = size * data.dtype.itemsize
    limit = MAX_ELEMENTS if numeric else _MAX_STRINGS
    if size > limit or (not numeric and nbytes > _MAX_STRING_BYTES):
        raise ExportError(
            f"{path}: dataset {data.name} holds {size} elements, more than {limit}: the file is "
            "corrupt or too large to read"
        )
    budget.add(nbytes)


def _refuse_nested_graphs(file: h5py.File, path: Path) -> None:
    """``nir.read`` type-checks nested graphs whatever it is told; the readers take flat ones."""
    nodes = file.get("node/nodes")
    for name, node in nodes.items() if isinstance(nodes, h5py.Group) else ():
        kind = node.get("type") if isinstance(node, h5py.Group) else None
        nested = isinstance(kind, h5py.Dataset) and kind.shape == ()
        if nested and kind[()] in (b"NIRGraph", "NIRGraph"):
            raise ExportError(
                f"{path}: node {name!r} is a nested NIR graph: the readers take flat graphs, as "
                "export_nir writes them"
            )


# --------------------------------------------------------------------------- the graph


def _structure(graph: nir.NIRGraph, where: str) -> tuple[list[str], dict[str, list[str]]]:
    """A topological order of the nodes and each node's sources, once the names, node types,
    Input/Output nodes and edges are checked."""
    nodes, edges = graph.nodes, graph.edges
    if not isinstance(nodes, dict) or not isinstance(edges, list | tuple):
        raise ExportError(f"{where}: nodes must be a mapping and edges a list")
    if len(nodes) > MAX_NODES or len(edges) > MAX_EDGES:
        raise ExportError(
            f"{where} has {len(nodes)} nodes and {len(edges)} edges: at most {MAX_NODES} and "
            f"{MAX_EDGES} are read"
        )
    _check_nodes(nodes, where)
    inputs_of: dict[str, list[str]] = {name: [] for name in nodes}
    outputs_of: dict[str, list[str]] = {name: [] for name in nodes}
    for edge in edges:
        src, dst = _edge(edge, nodes, where)
        if src in inputs_of[dst]:
            raise ExportError(f"{where}: edge ({src!r}, {dst!r}) is listed twice")
        inputs_of[dst].append(src)
        outputs_of[src].append(dst)
    for name, node in nodes.items():
        if isinstance(node, nir.Input) and inputs_of[name]:
            raise ExportError(f"{where}: edge ({inputs_of[name][0]!r}, {name!r}) feeds the Input")
        if not isinstance(node, nir.Input) and not inputs_of[name]:
            raise ExportError(
                f"{where}: node {name!r} has no incoming edge: every node but the Input is fed"
            )
        if isinstance(node, nir.Output) and outputs_of[name]:
            raise ExportError(
                f"{where}: edge ({name!r}, {outputs_of[name][0]!r}) leaves the Output"
            )
    return _topological_order(inputs_of, outputs_of, where), inputs_of


def _check_nodes(nodes: dict, where: str) -> None:
    renamed = set()  # nirtorch renames Python keywords: names must stay distinct
    for name, node in nodes.items():
        if not (isinstance(name, str) and _NAME.fullmatch(name)):
            raise ExportError(
                f"{where}: node name {str(name)[:60]!r}: 1 to 200 letters, digits or _ "
                "('node.port' names are not read)"
            )
        key = f"nir_node_{name}" if keyword.iskeyword(name) else name
        if key in renamed:
            raise ExportError(f"{where}: node names {name!r} and {key!r} collide in the reader")
        renamed.add(key)
        if type(node) not in _SHAPE_RULES:
            readable = ", ".join(kind.__name__ for kind in _SHAPE_RULES)
            raise ExportError(
                f"{where}: node {name!r} is a {type(node).__name__}, which is not read here "
                f"(readable: {readable}; nested graphs are not)"
            )
    for kind in (nir.Input, nir.Output):
        found = [name for name, node in nodes.items() if isinstance(node, kind)]
        if len(found) != 1:
            raise ExportError(
                f"{where} has {len(found)} {kind.__name__} nodes {found[:5]}: exactly one is read"
            )


def _edge(edge: Any, nodes: dict, where: str) -> tuple[str, str]:
    if not (
        isinstance(edge, tuple | list) and len(edge) == 2 and all(isinstance(e, str) for e in edge)
    ):
        raise ExportError(f"{where}: edge {str(edge)[:80]}: a (source, target) pair of node names")
    for end in edge:
        if end not in nodes:
            raise ExportError(
                f"{where}: edge ({edge[0]!r}, {edge[1]!r}) names {end!r}, which is not a node of "
                "the graph (deleted, or a 'node.port' name, which is not read): the file is "
                "corrupt or was edited"
            )
    return edge[0], edge[1]


def _topological_order(
    inputs_of: dict[str, list[str]], outputs_of: dict[str, list[str]], where: str
) -> list[str]:
    pending = {name: len(sources) for name, sources in inputs_of.items()}
    ready = [name for name, count in pending.items() if count == 0]
    order = []
    while ready:
        name = ready.pop()
        order.append(name)
        for target in outputs_of[name]:
            pending[target] -= 1
            if pending[target] == 0:
                ready.append(target)
    if len(order) < len(pending):
        cycle = _on_cycles(set(pending) - set(order), inputs_of, outputs_of)
        raise ExportError(
            f"{where}: edges form a cycle through {cycle[:5]}{' ...' if len(cycle) > 5 else ''}:"
            " the readers take feed-forward graphs"
        )
    return order


def _on_cycles(
    stuck: set[str], inputs_of: dict[str, list[str]], outputs_of: dict[str, list[str]]
) -> list[str]:
    """The nodes of ``stuck`` (never ready) that also lead back into a cycle: those on one."""
    ahead = {name: sum(t in stuck for t in outputs_of[name]) for name in stuck}
    done = [name for name, count in ahead.items() if count == 0]
    while done:
        name = done.pop()
        stuck.discard(name)
        for source in inputs_of[name]:
            if source in stuck:
                ahead[source] -= 1
                if ahead[source] == 0:
                    done.append(source)
    return sorted(stuck)


# --------------------------------------------------------------------------- values


def _numbers(value: Any, label: str, budget: _Budget | None = None) -> np.ndarray:
    """``value`` as a numeric array of at most :data:`MAX_ELEMENTS` (counted in ``budget``)."""
    if isinstance(value, np.ndarray):
        array = value
    elif isinstance(value, int | float | np.number | list | tuple):
        try:
            array = np.asarray(value)
        except (ValueError, OverflowError) as err:
            raise ExportError(f"{label}: not a numeric array ({_brief(err)})") from err
    else:
        raise ExportError(f"{label}: a number or numeric array, got {type(value).__name__}")
    if array.dtype.kind not in "biuf":
        raise ExportError(f"{label}: numbers, got dtype {array.dtype}")
    if array.size > MAX_ELEMENTS:
        raise ExportError(f"{label} has {array.size} elements, more than {MAX_ELEMENTS}")
    if budget is not None:
        budget.add(array.nbytes)
    return array


def _finite(array: np.ndarray, label: str) -> None:
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = int(array.size - np.isfinite(array).sum())
        raise ExportError(f"{label} holds {bad} NaN or infinite values")


def _check_fields(node: nir.NIRNode, what: str, budget: _Budget) -> None:
    """Every array and number of the node finite and bounded; the metadata bounded."""
    for field, value in vars(node).items():
        if field in ("input_type", "output_type", "metadata"):  # shapes: the shape rules
            continue
        if value is not None and not isinstance(value, str):
            _finite(_numbers(value, f"{what}: {field}", budget), f"{what}: {field}")
    _check_metadata(node, getattr(node, "metadata", None), what, budget)


def _check_metadata(node: nir.NIRNode, metadata: Any, what: str, budget: _Budget) -> None:
    if metadata is None:
        return
    if not isinstance(metadata, dict):
        raise ExportError(f"{what}: metadata must be a mapping, got {type(metadata).__name__}")
    for key, value in metadata.items():
        if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
            _numbers(value, f"{what}: metadata {key}", budget)
    if isinstance(node, nir.IF):
        _check_payload(node, metadata, what)
    if isinstance(node, nir.Output) and "scale" in metadata:
        _finite(_numbers(metadata["scale"], f"{what}: metadata scale"), f"{what}: metadata scale")


def _check_payload(node: nir.IF, metadata: dict, what: str) -> None:
    """multispike's IF payload: ``max_spikes``, ``v_init`` and ``reset``."""
    spikes = metadata.get("max_spikes", 1)
    if not (_is_integer(spikes) and 1 <= spikes <= MAX_COUNT):
        raise ExportError(
            f"{what}: metadata max_spikes must be an integer from 1 to {MAX_COUNT}, got "
            f"{str(spikes)[:40]}"
        )
    if "v_init" in metadata:
        label = f"{what}: metadata v_init"
        v_init = _numbers(metadata["v_init"], label)
        _finite(v_init, label)
        _broadcasts(v_init, np.shape(node.v_threshold), label)
    reset = metadata.get("reset", "subtract")
    if not (isinstance(reset, str | bytes) and reset in ("subtract", b"subtract")):
        raise ExportError(
            f"{what}: metadata reset {str(reset)[:40]!r}: the readers reset by subtraction only"
        )


def _is_integer(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _integer(value: Any, label: str, low: int, high: int = MAX_DIM) -> int:
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if not (_is_integer(value) and low <= value <= high):
        raise ExportError(f"{label}: an integer from {low} to {high}, got {str(value)[:40]}")
    return int(value)


def _pair(value: Any, label: str, low: int) -> tuple[int, int]:
    array = np.asarray(value) if value is not None else np.array([])
    if array.shape != (2,) or array.dtype.kind not in "iu":
        raise ExportError(f"{label}: a pair of integers, got {str(value)[:40]}")
    return _integer(array[0], label, low), _integer(array[1], label, low)


def _broadcasts(array: np.ndarray, shape: Shape, label: str) -> None:
    try:
        fits = np.broadcast_shapes(array.shape, shape) == tuple(shape)
    except ValueError:
        fits = False
    if not fits:
        raise ExportError(f"{label} has shape {array.shape}, which does not fit {tuple(shape)}")


# --------------------------------------------------------------------------- shapes


def _bounded(shape: Shape, what: str) -> Shape:
    if math.prod(shape) > MAX_ELEMENTS:
        raise ExportError(f"{what}: shape {shape} has more than {MAX_ELEMENTS} elements")
    return shape


def _declared(types: Any, label: str) -> Shape:
    """The one shape of an Input/Output node's type mapping."""
    if not (isinstance(types, dict) and len(types) == 1 and _NAME.fullmatch(str(*types))):
        raise ExportError(f"{label}: one named shape, got {str(types)[:80]}")
    array = _numbers(next(iter(types.values())), label)
    if array.ndim != 1 or not 1 <= array.size <= 8 or array.dtype.kind not in "iu":
        raise ExportError(f"{label}: 1 to 8 integer dimensions, got {str(array)[:80]}")
    return _bounded(tuple(_integer(d, label, 1) for d in array), label)


def _needs(fed: Shape | None, rank: int, what: str) -> Shape:
    if fed is None or len(fed) != rank:
        raise ExportError(f"{what} takes inputs of {rank} dimensions, gets {fed}")
    return fed


def _input(node: nir.Input, fed: Shape | None, what: str) -> Shape:
    shape = _declared(node.input_type, f"{what}: input_type")
    if _declared(node.output_type, f"{what}: output_type") != shape:
        raise ExportError(f"{what}: input_type and output_type differ")
    return shape


def _output(node: nir.Output, fed: Shape | None, what: str) -> Shape:
    declared = _declared(node.output_type, f"{what}: output_type")
    _declared(node.input_type, f"{what}: input_type")
    if fed != declared:
        raise ExportError(f"{what} declares shape {declared}, its input has {fed}")
    return declared


def _conv2d(node: nir.Conv2d, fed: Shape | None, what: str) -> Shape:
    weight = np.asarray(node.weight)
    if weight.ndim != 4 or weight.size == 0:
        raise ExportError(f"{what}: weight (out, in/groups, kh, kw), got shape {weight.shape}")
    out, per_group, *kernel = weight.shape
    _vector(node.bias, out, f"{what}: bias")
    stride = _pair(node.stride, f"{what}: stride", 1)
    padding = _pair(node.padding, f"{what}: padding", 0)
    dilation = _pair(node.dilation, f"{what}: dilation", 1)
    groups = _integer(node.groups, f"{what}: groups", 1, out)
    channels, *size = _needs(fed, 3, what)
    if out % groups or channels != per_group * groups:
        raise ExportError(
            f"{what}: weight {weight.shape} with groups {groups} does not take the "
            f"{channels} channels of its input"
        )
    size = [
        (n + 2 * p - d * (k - 1) - 1) // s + 1
        for n, k, s, p, d in zip(size, kernel, stride, padding, dilation, strict=True)
    ]
    if min(size) < 1:
        raise ExportError(f"{what}: its {fed} input is smaller than the kernel")
    return _bounded((out, *size), what)


def _vector(array: Any, length: int, label: str) -> None:
    if np.shape(array) != (length,):
        raise ExportError(f"{label}: shape ({length},), got {np.shape(array)}")


def _affine(node: nir.Affine | nir.Linear, fed: Shape | None, what: str) -> Shape:
    weight = np.asarray(node.weight)
    if weight.ndim != 2 or weight.size == 0:
        raise ExportError(f"{what}: weight (out, in), got shape {weight.shape}")
    if isinstance(node, nir.Affine):
        _vector(node.bias, weight.shape[0], f"{what}: bias")
    if fed != (weight.shape[1],):
        raise ExportError(f"{what}: weight takes ({weight.shape[1]},) inputs, gets {fed}")
    return (weight.shape[0],)


def _avgpool2d(node: nir.AvgPool2d, fed: Shape | None, what: str) -> Shape:
    kernel = _pair(node.kernel_size, f"{what}: kernel_size", 1)
    stride = _pair(node.stride, f"{what}: stride", 1)
    padding = _pair(node.padding, f"{what}: padding", 0)
    if any(2 * p > k for p, k in zip(padding, kernel, strict=True)):
        raise ExportError(f"{what}: padding {padding} is over half the kernel {kernel}")
    channels, *size = _needs(fed, 3, what)
    size = [
        (n + 2 * p - k) // s + 1 for n, k, s, p in zip(size, kernel, stride, padding, strict=True)
    ]
    if min(size) < 1:
        raise ExportError(f"{what}: its {fed} input is smaller than the kernel")
    return _bounded((channels, *size), what)


def _flatten(node: nir.Flatten, fed: Shape | None, what: str) -> Shape:
    if not fed:
        raise ExportError(f"{what} has no input")
    rank = len(fed)
    start = _integer(node.start_dim, f"{what}: start_dim", -MAX_DIM)
    end = _integer(node.end_dim, f"{what}: end_dim", -MAX_DIM)
    if (start + rank if start < 0 else start, end + rank if end < 0 else end) != (0, rank - 1):
        raise ExportError(
            f"{what}: start_dim {start}, end_dim {end} on a {fed} input: the readers flatten a "
            "whole sample (start_dim 0, end_dim -1)"
        )
    return (math.prod(fed),)


def _if(node: nir.IF, fed: Shape | None, what: str) -> Shape:
    threshold = np.asarray(node.v_threshold)
    if threshold.shape != fed:
        raise ExportError(f"{what}: v_threshold has shape {threshold.shape}, its input {fed}")
    if not (threshold > 0).all():
        raise ExportError(
            f"{what}: v_threshold must be > 0, its least is {threshold.min()}: a neuron with "
            "threshold <= 0 fires without bound"
        )
    _broadcasts(np.asarray(node.v_reset), fed, f"{what}: v_reset")
    r = np.asarray(node.r)
    _broadcasts(r, fed, f"{what}: r")
    if not (r == 1).all():
        raise ExportError(f"{what}: r must be 1 (the readers integrate v += x), got {r.min()}")
    return fed


def _scale(node: nir.Scale, fed: Shape | None, what: str) -> Shape:
    if fed is None:
        raise ExportError(f"{what} has no input")
    _broadcasts(np.asarray(node.scale), fed, f"{what}: scale")
    return fed


_SHAPE_RULES = {
    nir.Input: _input,
    nir.Output: _output,
    nir.Conv2d: _conv2d,
    nir.Affine: _affine,
    nir.Linear: _affine,
    nir.AvgPool2d: _avgpool2d,
    nir.Flatten: _flatten,
    nir.IF: _if,
    nir.Scale: _scale,
}
