"""Checks on a NIR graph before a reader builds anything from it.

:func:`read_nir` is where :func:`~multispike.pipelines.export.to_snntorch` and
:func:`~multispike.pipelines.export.sinabs.sinabs_from_nir` start. A file is first scanned as
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
from pathlib import Path
from typing import Any

import h5py
import nir

from .errors import ExportError
from .nir_rules import (
    MAX_DEPTH,
    MAX_EDGES,
    MAX_ELEMENTS,
    MAX_NODES,
    MAX_STRING_BYTES,
    MAX_STRINGS,
    NAME,
    SHAPE_RULES,
    Budget,
    Shape,
    brief,
    check_fields,
)

__all__ = ["read_nir", "validate_nir_graph"]


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
            f"{path} is not a readable NIR graph ({brief(err)}): the file is corrupt or not NIR"
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
    budget = Budget(where)
    shapes: dict[str, Shape] = {}
    for name in order:
        node = graph.nodes[name]
        what = f"{where}: node {name!r} ({type(node).__name__})"
        check_fields(node, what, budget)
        fed = {shapes[src] for src in inputs_of[name]}
        if len(fed) > 1:
            raise ExportError(f"{what} sums inputs of different shapes {sorted(fed)}")
        shapes[name] = SHAPE_RULES[type(node)](node, next(iter(fed), None), what)


# --------------------------------------------------------------------------- the file


def _scan_file(path: Path) -> None:
    """Refuse what ``nir.read`` would read without bound, before it reads anything."""
    try:
        with h5py.File(path, "r") as file:
            _scan_group(file, path, 0, Budget(str(path)))
            _refuse_nested_graphs(file, path)
    except ExportError:
        raise
    except Exception as err:  # h5py meets damage with OSError, KeyError, RuntimeError, ...
        raise ExportError(
            f"{path} is not a readable NIR (HDF5) file ({brief(err)}): the file is corrupt"
        ) from err


def _scan_group(group: h5py.Group, path: Path, depth: int, budget: Budget) -> None:
    if depth > MAX_DEPTH:
        raise ExportError(f"{path}: {group.name} is nested over {MAX_DEPTH} deep: not NIR")
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


def _scan_dataset(data: h5py.Dataset, path: Path, budget: Budget) -> None:
    if data.is_virtual or data.external:
        raise ExportError(f"{path}: dataset {data.name} keeps its data in other files: refused")
    kind, size = data.dtype.kind, data.size or 0
    numeric = kind in "biuf"
    if not numeric and kind not in "OS":
        raise ExportError(f"{path}: dataset {data.name} has type {data.dtype}: not NIR")
    nbytes = size * data.dtype.itemsize
    limit = MAX_ELEMENTS if numeric else MAX_STRINGS
    if size > limit or (not numeric and nbytes > MAX_STRING_BYTES):
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
        if not (isinstance(name, str) and NAME.fullmatch(name)):
            raise ExportError(
                f"{where}: node name {str(name)[:60]!r}: 1 to 200 letters, digits or _ "
                "('node.port' names are not read)"
            )
        key = f"nir_node_{name}" if keyword.iskeyword(name) else name
        if key in renamed:
            raise ExportError(f"{where}: node names {name!r} and {key!r} collide in the reader")
        renamed.add(key)
        if type(node) not in SHAPE_RULES:
            readable = ", ".join(kind.__name__ for kind in SHAPE_RULES)
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
