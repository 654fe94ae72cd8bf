"""The bounds and the per-node rules :func:`~.nir_read.validate_nir_graph` applies: numeric
arrays finite and of bounded size, positive thresholds, a valid multispike payload
(``max_spikes``, ``v_init``, ``reset``), and each node type's output shape from its input's.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import nir
import numpy as np

from ..folder.schema import MAX_COUNT
from .errors import ExportError

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_DIM",
    "MAX_EDGES",
    "MAX_ELEMENTS",
    "MAX_LINKS",
    "MAX_NODES",
    "MAX_STRINGS",
    "MAX_STRING_BYTES",
    "NAME",
    "SHAPE_RULES",
    "Budget",
    "Shape",
    "brief",
    "check_fields",
]

MAX_ELEMENTS = 2**28  # one array, or one node's output for one sample (1 GiB of float32)
MAX_BYTES = 2**31  # all arrays of one graph together
MAX_DIM = 2**20  # one dimension of a shape, a kernel, a stride or a padding
MAX_NODES = 10_000
MAX_EDGES = 100_000
MAX_LINKS = 16 * MAX_NODES  # HDF5 groups and datasets walked in one file
MAX_DEPTH = 16  # HDF5 group nesting (a flat NIR graph uses 5)
MAX_STRINGS = 2 * MAX_EDGES  # elements of one string dataset (the edge list)
MAX_STRING_BYTES = 2**24
NAME = re.compile(r"[A-Za-z0-9_]{1,200}")

Shape = tuple[int, ...]


@dataclass
class Budget:
    """What one file or graph may hold in total."""

    where: str
    links: int = 0
    bytes: int = 0

    def add(self, nbytes: int, links: int = 0) -> None:
        self.bytes, self.links = self.bytes + nbytes, self.links + links
        if self.bytes > MAX_BYTES:
            raise ExportError(f"{self.where} holds more than {MAX_BYTES} bytes: too large to read")
        if self.links > MAX_LINKS:
            raise ExportError(f"{self.where} holds more than {MAX_LINKS} HDF5 objects: not NIR")


# --------------------------------------------------------------------------- values


def _numbers(value: Any, label: str, budget: Budget | None = None) -> np.ndarray:
    """``value`` as a numeric array of at most :data:`MAX_ELEMENTS` (counted in ``budget``)."""
    if isinstance(value, np.ndarray):
        array = value
    elif isinstance(value, int | float | np.number | list | tuple):
        try:
            array = np.asarray(value)
        except (ValueError, OverflowError) as err:
            raise ExportError(f"{label}: not a numeric array ({brief(err)})") from err
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


def check_fields(node: nir.NIRNode, what: str, budget: Budget) -> None:
    """Every array and number of the node finite and bounded; the metadata bounded."""
    for field, value in vars(node).items():
        if field in ("input_type", "output_type", "metadata"):  # shapes: the shape rules
            continue
        if value is not None and not isinstance(value, str):
            _finite(_numbers(value, f"{what}: {field}", budget), f"{what}: {field}")
    _check_metadata(node, getattr(node, "metadata", None), what, budget)


def _check_metadata(node: nir.NIRNode, metadata: Any, what: str, budget: Budget) -> None:
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


def brief(err: BaseException) -> str:
    return f"{type(err).__name__}: " + " ".join(str(err).split())[:200]


# --------------------------------------------------------------------------- shapes


def _bounded(shape: Shape, what: str) -> Shape:
    if math.prod(shape) > MAX_ELEMENTS:
        raise ExportError(f"{what}: shape {shape} has more than {MAX_ELEMENTS} elements")
    return shape


def _declared(types: Any, label: str) -> Shape:
    """The one shape of an Input/Output node's type mapping."""
    if not (isinstance(types, dict) and len(types) == 1 and NAME.fullmatch(str(*types))):
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


SHAPE_RULES = {
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
