"""Seeded fuzzing of what multispike reads back: a model folder and a NIR file go through a
few hundred random mutations. Every load either gives the original's outputs exactly
(``torch.equal`` on a fixed input) or raises the project's error for that file
(``ModelFileError`` / ``ExportError`` / ``FileNotFoundError``, all among the CLI's user error
types): never another exception, never a hang, never unbounded memory. Each fuzz body runs in
a child process (this file run as a script) under an address-space limit and a time limit.

Some edits make a valid file of a *different* model rather than a corrupt one, and may load as
such (the model must then still run on the fixed input): byte flips in ``config.json``, which
has no checksum (a flipped digit can be another valid spike count), weights rewritten together
with their recorded SHA-256, and edits of a NIR file's bytes or edges (NIR has no checksum;
a residual sum without one of its edges is still a valid graph).
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import random
import resource
import shutil
import subprocess
import sys
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import nir
import numpy as np
import pytest
import torch
from torch import Tensor, nn

SEED = 0
FOLDER_MUTATIONS = 150
NIR_MUTATIONS = 200
CHILD_SECONDS = 50
MEMORY_HEADROOM = 4 << 30  # address space the child may add to what it holds after imports

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS and /proc: Linux")


def _run_child(kind: str, work: Path) -> str:
    """Run this file's ``kind`` fuzz in a child process; its report, or fail the test."""
    try:
        done = subprocess.run(
            [sys.executable, __file__, kind, str(work)],
            capture_output=True, text=True, timeout=CHILD_SECONDS,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail(f"the {kind} fuzz hung: no result within {CHILD_SECONDS} s")
    assert done.returncode == 0, f"{kind} fuzz failed:\n{done.stdout[-2000:]}{done.stderr[-4000:]}"
    return done.stdout


@pytest.mark.timeout(60)
def test_mutated_model_folders_load_exactly_or_raise_a_model_file_error(tmp_path):
    report = _run_child("folder", tmp_path)
    assert f"{FOLDER_MUTATIONS} mutations" in report


@pytest.mark.timeout(60)
def test_mutated_nir_graphs_read_exactly_or_raise_an_export_error(tmp_path):
    report = _run_child("nir", tmp_path)
    assert f"{NIR_MUTATIONS} mutations" in report


# --------------------------------------------------------------------------- the child


def _cap_memory(headroom: int) -> None:
    """Limit the address space to what the process holds now plus ``headroom``."""
    held = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = held + headroom if hard == resource.RLIM_INFINITY else min(held + headroom, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _outcome(
    run: Callable[[], Tensor],
    reference: Tensor,
    refusals: tuple[type[BaseException], ...],
    may_change: bool,
    what: str,
) -> str:
    """``refused``, ``same`` or (where ``may_change``) ``changed``; anything else raises."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. a version mismatch, warned and checked
            with torch.no_grad():
                out = run()
    except refusals as err:
        assert "\n" not in str(err), f"{what}: a message of several lines: {err}"
        return "refused"
    except BaseException as err:
        raise AssertionError(f"{what}: {type(err).__name__}: {err}") from err
    if out.shape == reference.shape and torch.equal(out, reference):
        return "same"
    assert may_change, f"{what}: loaded a model that computes something else"
    return "changed"


def _flip(data: bytes, rng: random.Random, count: int) -> bytes:
    out = bytearray(data)
    for _ in range(count):
        out[rng.randrange(len(out))] ^= rng.randrange(1, 256)
    return bytes(out)


def _damage(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """Flipped, truncated, extended or zeroed bytes."""
    kind = rng.choice(["flip", "flip", "truncate", "append", "zero"])
    if kind == "flip":
        return "flip bytes", _flip(data, rng, rng.randint(1, 8))
    if kind == "truncate":
        return "truncate", data[: rng.randrange(len(data))]
    if kind == "append":
        return "append bytes", data + rng.randbytes(rng.randint(1, 64))
    start = rng.randrange(len(data))
    return "zero 64 bytes", data[:start] + bytes(64) + data[start + 64 :]


# --------------------------------------------------------------------------- model folders

_ODD_VALUES = [None, True, "x", "", 1.5, [], {}, -1, 0, float("nan"), float("inf"), 2**63, 1e308]


def _make_folder(path: Path) -> Path:
    import timm

    import multispike.zoo  # noqa: F401  (registers ms_resnet20)
    from multispike.convert import calibrate, to_snn
    from multispike.pipelines import save

    torch.manual_seed(0)
    kwargs = {"in_chans": 1, "num_classes": 4}
    ann = timm.create_model("ms_resnet20", **kwargs).eval()
    qann = calibrate(ann, [torch.rand(8, 1, 8, 8)], levels=2, progress=False)
    snn = to_snn(qann, max_spikes=2, timesteps=2)
    return save(snn, path, model_name="ms_resnet20", model_kwargs=kwargs)


def _paths(node: object, prefix: tuple = ()) -> list[tuple]:
    """Every key or index path inside a parsed JSON value."""
    if isinstance(node, dict):
        items = list(node.items())
    elif isinstance(node, list):
        items = list(enumerate(node))
    else:
        return []
    return [p for key, child in items for p in [(*prefix, key), *_paths(child, (*prefix, key))]]


def _edit_config(config: dict, rng: random.Random) -> str:
    """Delete, retype or spoil one random value of ``config`` in place; what it did."""
    *parents, leaf = rng.choice(_paths(config))
    holder = config
    for key in parents:
        holder = holder[key]
    old = holder[leaf]
    op = rng.choice(["delete", "retype", "retype", "number"])
    if op == "delete":
        del holder[leaf]
    elif op == "retype":
        holder[leaf] = rng.choice([*_ODD_VALUES, [old], {"v": old}, str(old)])
    else:
        numbers = [-old, 0, 2**31, 10**30, float("nan"), -float("inf")] if _number(old) else [7]
        holder[leaf] = rng.choice(numbers)
    return f"config {op} {'.'.join(map(str, (*parents, leaf)))}"


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _hostile_configs(config: dict) -> list[tuple[str, str]]:
    """Named config.json texts aimed at memory, time and type checks."""

    def edited(path: str, value: object) -> str:
        changed = copy.deepcopy(config)
        *parents, leaf = path.split(".")
        holder = changed
        for key in parents:
            holder = holder[key]
        holder[leaf] = value
        return json.dumps(changed)

    layer = next(iter(config["layers"]))
    text = json.dumps(config)
    return [
        ("input_shape 3x30000x30000", edited("input_shape", [3, 30000, 30000])),
        ("input_shape 16385 wide", edited("input_shape", [1, 1, 16385])),
        ("num_classes 'ten'", edited("architecture.model_kwargs.num_classes", "ten")),
        ("num_classes -3", edited("architecture.model_kwargs.num_classes", -3)),
        ("num_classes 10**9", edited("architecture.model_kwargs.num_classes", 10**9)),
        ("in_chans 1.0", edited("architecture.model_kwargs.in_chans", 1.0)),
        ("a depth option 10**6", edited("architecture.model_kwargs.layers", [3, 3, 10**6])),
        ("drop_rate 'x'", edited("architecture.model_kwargs.drop_rate", "x")),
        ("versions.torch 3", edited("versions.torch", 3)),
        ("levels 70000", edited("levels", 70000)),
        ("max_spikes -1", edited("max_spikes", -1)),
        ("timesteps 10**6", edited("timesteps", 10**6)),
        ("layer max_spikes 70000", edited(f"layers.{layer}.max_spikes", 70000)),
        ("layer threshold NaN", edited(f"layers.{layer}.threshold", float("nan"))),
        ("a key twice, junk first", text.replace('"levels": ', '"levels": "junk", "levels": ')),
        ("a 5000-digit integer", text.replace('"levels": 2', '"levels": ' + "9" * 5000)),
        ("nesting 100000 deep", "[" * 100_000 + "]" * 100_000),
        ("empty", ""),
        ("a list", "[]"),
    ]


def _fuzz_folder(work: Path, rng: random.Random) -> Counter:
    from multispike.pipelines import load
    from multispike.pipelines.folder import CONFIG_FILE, WEIGHTS_FILE, ModelFileError

    original = _make_folder(work / "original")
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = load(original)(x)
    config_text = (original / CONFIG_FILE).read_text()
    weights = (original / WEIGHTS_FILE).read_bytes()
    folder = Path(shutil.copytree(original, work / "mutated"))
    hostile = _hostile_configs(json.loads(config_text))
    counts: Counter = Counter()
    for i in range(FOLDER_MUTATIONS):
        (folder / CONFIG_FILE).write_text(config_text)
        (folder / WEIGHTS_FILE).write_bytes(weights)
        if i < len(hostile):
            what, text = hostile[i]
            (folder / CONFIG_FILE).write_text(text)
            may_change = False
        elif i == len(hostile):
            what, may_change = "a 65 MiB config.json", False
            with (folder / CONFIG_FILE).open("r+b") as f:
                f.truncate(65 << 20)  # sparse: costs no disk
        else:
            what, may_change = _mutate_folder(folder, rng, json.loads(config_text), weights)
        outcome = _outcome(
            lambda: load(folder)(x), reference, (ModelFileError, FileNotFoundError), may_change,
            f"folder mutation {i} ({what})",
        )  # fmt: skip
        counts[outcome] += 1
    return counts


def _mutate_folder(folder: Path, rng: random.Random, config: dict, weights: bytes):
    """One random mutation of the folder's files; what it did and whether it may change the
    model validly."""
    from multispike.pipelines.folder import CONFIG_FILE, WEIGHTS_FILE, sha256_of

    target = rng.choice(["config", "config", "config text", "weights", "weights rehashed"])
    if target == "config":
        what = _edit_config(config, rng)
        (folder / CONFIG_FILE).write_text(json.dumps(config))
        return what, False
    if target == "config text":
        what, data = _damage((folder / CONFIG_FILE).read_bytes(), rng)
        (folder / CONFIG_FILE).write_bytes(data)
        return f"config.json {what}", True
    what, data = _damage(weights, rng)
    (folder / WEIGHTS_FILE).write_bytes(data)
    if target == "weights rehashed":  # past the hash: the safetensors reader itself
        config["weights"]["sha256"] = sha256_of(folder / WEIGHTS_FILE)
        (folder / CONFIG_FILE).write_text(json.dumps(config))
    return f"{target} {what}", target == "weights rehashed"


# --------------------------------------------------------------------------- NIR graphs


class _Tiny(nn.Module):
    """conv, neuron, conv + residual, neuron, pooling, flatten, linear: every node kind."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.act1 = nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()
        self.conv2, self.act2 = nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()
        self.pool, self.fc, self.act3 = nn.AvgPool2d(2), nn.Linear(64, 5), nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        x = self.act1(self.conv1(x))
        x = self.act2(self.conv2(x) + x)
        return self.act3(self.fc(torch.flatten(self.pool(x), 1)))


def _make_nir(path: Path) -> nir.NIRGraph:
    from multispike.convert import calibrate, to_snn
    from multispike.pipelines.export import export_nir

    torch.manual_seed(0)
    qann = calibrate(_Tiny().eval(), [torch.rand(8, 1, 8, 8)], levels=2, progress=False)
    return export_nir(to_snn(qann, max_spikes=2, timesteps=2), path)


def _readers() -> dict[str, Callable[[object, Tensor], Tensor]]:
    """Each NIR reader as ``run(graph or path, frames (T, C, H, W)) -> (T, classes)``."""
    from multispike.pipelines.export import reset_snntorch, to_snntorch

    def snntorch(graph, frames: Tensor) -> Tensor:
        module = to_snntorch(graph)
        reset_snntorch(module)
        return torch.stack([module(frame)[0] for frame in frames])

    def in_sinabs(graph, frames: Tensor) -> Tensor:
        return run_sinabs(sinabs_from_nir(graph, len(frames)), frames.unsqueeze(1))[:, 0]

    if importlib.util.find_spec("sinabs") is None:
        return {"snntorch": snntorch}
    import sinabs.layers  # noqa: F401  (imported now, before the address space is capped)

    from multispike.pipelines.export.sinabs import run_sinabs, sinabs_from_nir

    return {"snntorch": snntorch, "sinabs": in_sinabs}


def _edit_graph(graph: nir.NIRGraph, rng: random.Random) -> tuple[str, bool]:
    """One random structural or numeric edit in place; what it did and whether the result may
    be a valid, different graph."""
    nodes, edges = graph.nodes, graph.edges
    name = rng.choice(sorted(nodes))
    node = nodes[name]
    arrays = [f for f, v in vars(node).items() if isinstance(v, np.ndarray) and v.size]
    op = rng.choice(
        ["delete node", "rename node", "delete edge", "duplicate edge", "cycle", "dangling edge",
         "bad value", "bad value", "reshape", "huge array", "max_spikes", "v_init", "retype",
         "scalar field", "input shape"]
    )  # fmt: skip
    may_change = False
    if op == "delete node":
        del nodes[name]
    elif op == "rename node":
        nodes[f"{name}_renamed"] = nodes.pop(name)
    elif op == "delete edge":
        edges.pop(rng.randrange(len(edges)))
        may_change = True  # a residual sum without one input is a valid graph
    elif op == "duplicate edge":
        edges.append(rng.choice(edges))
    elif op == "cycle":
        src, dst = rng.choice(edges)
        edges.append((dst, src) if rng.random() < 0.8 else (dst, dst))
    elif op == "dangling edge":
        edges.append(rng.choice([(name, "ghost"), ("ghost", name), (name, "a.b"), (name, 3)]))
    elif op == "bad value" and arrays:
        field, value = rng.choice(arrays), rng.choice([np.nan, np.inf, -np.inf, 0.0, -1.0])
        array = getattr(node, field).astype(np.float64)
        array.flat[rng.randrange(array.size)] = value
        setattr(node, field, array)
        # a finite value is valid in a weight (not in a threshold, nor an r other than 1)
        return f"{value} in {name}.{field}", bool(np.isfinite(value)) and field not in (
            "v_threshold", "r"
        )  # fmt: skip
    elif op == "reshape" and arrays:
        field = rng.choice(arrays)
        shape = list(getattr(node, field).shape)
        shape[rng.randrange(len(shape))] += 1
        setattr(node, field, np.ones(shape, dtype=getattr(node, field).dtype))
        op = f"reshape {name}.{field}"
    elif op == "huge array" and arrays:  # a broadcast view: no memory, 2**29 elements
        setattr(node, rng.choice(arrays), np.broadcast_to(np.float32(1), (2**15, 2**14)))
    elif op == "max_spikes":
        node.metadata["max_spikes"] = rng.choice([-1, 0, 70000, 2.5, "two", True, None])
        may_change = not isinstance(node, nir.IF)  # metadata of other nodes is not read
    elif op == "v_init":
        node.metadata["v_init"] = rng.choice([np.float32(np.nan), np.ones((9, 9)), "half"])
        may_change = not isinstance(node, nir.IF)
    elif op == "retype":
        nodes[name] = rng.choice(
            [nir.LIF(np.ones(1), np.ones(1), np.zeros(1), v_threshold=-np.ones(1)),
             nir.NIRGraph(nodes={}, edges=[], type_check=False), nir.Threshold(np.ones(1))]
        )  # fmt: skip
    elif op == "scalar field":
        fields = [f for f, v in vars(node).items() if isinstance(v, int | np.integer)]
        if fields:  # groups, start_dim, end_dim
            setattr(node, rng.choice(fields), rng.choice([0, -5, 2, 7, 2**40]))
    elif op == "input shape":
        name = "input"
        nodes[name].input_type["input"] = np.array(
            rng.choice([[1, 30000, 30000], [1, 8], [0, 8, 8], [1, 8, 8, 8]])
        )
    return f"{op} ({name})", may_change


def _fuzz_nir(work: Path, rng: random.Random) -> Counter:
    from multispike.pipelines.export import ExportError

    path = work / "tiny.nir"
    _make_nir(path)
    template = nir.read(str(path), type_check=False)
    original = path.read_bytes()
    frames = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1)).round()
    readers = _readers()
    with torch.no_grad():
        reference = {name: read(path, frames) for name, read in readers.items()}
    refusals = (ExportError, FileNotFoundError)
    counts: Counter = Counter()
    for i in range(NIR_MUTATIONS):
        source, what, may_change = _mutate_nir(work, rng, template, original)
        for name, read in readers.items():
            outcome = _outcome(
                functools.partial(read, source, frames), reference[name], refusals, may_change,
                f"NIR mutation {i} ({what}) read by {name}",
            )  # fmt: skip
            counts[outcome] += 1
    return Counter({k: v // len(readers) for k, v in counts.items()})


def _mutate_nir(work: Path, rng: random.Random, template: nir.NIRGraph, original: bytes):
    """A mutated graph, in memory or as a file; what was done; whether it may validly change."""
    path = work / "mutated.nir"
    if rng.random() < 0.3:
        what, data = _damage(original, rng)
        path.write_bytes(data)
        return path, f"file {what}", True
    graph = copy.deepcopy(template)
    what, may_change = _edit_graph(graph, rng)
    if rng.random() < 0.5 and "huge" not in what:
        try:
            nir.write(str(path), graph)
            return path, f"{what}, as a file", may_change
        except Exception:  # noqa: BLE001  (nir cannot write every broken graph: read it in memory)
            pass
    return graph, what, may_change


if __name__ == "__main__":
    kind, work = sys.argv[1], Path(sys.argv[2])
    torch.set_num_threads(1)
    _readers()  # import what the readers need before the address space is capped
    _cap_memory(MEMORY_HEADROOM)
    counts = {"folder": _fuzz_folder, "nir": _fuzz_nir}[kind](work, random.Random(SEED))
    print(f"{kind}: {sum(counts.values())} mutations, {dict(counts)}")
