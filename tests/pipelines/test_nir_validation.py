"""Files read back are checked before anything is built. Each class of bad NIR graph is one
ExportError naming the file (or "NIR graph") and the node or edge, raised at once: no reader
loops or allocates first. Model configs are bounded the same way (ModelFileError)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import h5py
import nir
import numpy as np
import pytest
import timm
import torch
from torch import nn

import multispike.zoo  # noqa: F401  (registers ms_resnet20)
from multispike.convert import calibrate, neurons, to_snn
from multispike.pipelines import load, save
from multispike.pipelines.export import ExportError, export_nir, to_snntorch
from multispike.pipelines.export.nir_read import validate_nir_graph
from multispike.pipelines.folder.schema import ModelFileError

NO_SINABS = "no sinabs: pip install --no-deps sinabs pbr (it pins an older nir)"
HAS_SINABS = importlib.util.find_spec("sinabs") is not None


class _Tiny(nn.Module):
    """conv, neuron, conv + residual, neuron, pooling, flatten, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.act1 = nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()
        self.conv2, self.act2 = nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()
        self.pool, self.fc = nn.AvgPool2d(2), nn.Linear(64, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.conv1(x))
        x = self.act2(self.conv2(x) + x)
        return self.fc(torch.flatten(self.pool(x), 1))


@pytest.fixture(scope="module")
def nir_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    qann = calibrate(_Tiny().eval(), [torch.rand(8, 1, 8, 8)], levels=2, progress=False)
    path = tmp_path_factory.mktemp("nir") / "tiny.nir"
    export_nir(to_snn(qann, max_spikes=2, timesteps=2), path)
    return path


def _sinabs(graph):
    from multispike.pipelines.export.sinabs import sinabs_from_nir

    return sinabs_from_nir(graph, 2)


READERS = [
    pytest.param(to_snntorch, id="snntorch"),
    pytest.param(_sinabs, id="sinabs", marks=pytest.mark.skipif(not HAS_SINABS, reason=NO_SINABS)),
]


def _set(node: str, field: str, index: tuple, value: float):
    def edit(graph: nir.NIRGraph) -> None:
        array = getattr(graph.nodes[node], field).copy()
        array[index] = value
        setattr(graph.nodes[node], field, array)

    return edit


def _metadata(node: str, key: str, value):
    return lambda graph: graph.nodes[node].metadata.__setitem__(key, value)


# (case, edit of the graph read back, words the message must hold)
GRAPH_CASES = [
    ("deleted node, edges kept", lambda g: g.nodes.pop("conv2"), ["'conv2'", "edge"]),
    ("edge to a missing node", lambda g: g.edges.append(("act1", "ghost")), ["'ghost'"]),
    ("cycle", lambda g: g.edges.append(("act2", "conv2")), ["cycle", "'act2'", "'conv2'"]),
    ("zero threshold", _set("act1", "v_threshold", (0, 0, 0), 0.0), ["'act1'", "v_threshold"]),
    ("negative threshold", _set("act2", "v_threshold", (1, 2, 3), -1.0), ["'act2'", "> 0"]),
    ("max_spikes -1", _metadata("act1", "max_spikes", -1), ["'act1'", "max_spikes", "-1"]),
    ("NaN v_init", _metadata("act2", "v_init", np.float32("nan")), ["'act2'", "v_init", "NaN"]),
    ("NaN weight", _set("fc", "weight", (0, 0), np.nan), ["'fc'", "weight", "NaN"]),
    ("infinite bias", _set("conv1", "bias", (1,), np.inf), ["'conv1'", "bias"]),
    (
        "oversized input shape",
        lambda g: g.nodes["input"].input_type.__setitem__("input", np.array([1, 30000, 30000])),
        ["'input'", "more than"],
    ),
]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("as_file", [True, False], ids=["file", "memory"])
@pytest.mark.parametrize(("case", "edit", "words"), GRAPH_CASES, ids=[c[0] for c in GRAPH_CASES])
def test_a_bad_nir_graph_is_refused_at_once_naming_file_and_node(
    nir_file, tmp_path, reader, as_file, case, edit, words
):
    graph = nir.read(str(nir_file), type_check=False)
    edit(graph)
    source, name = graph, "NIR graph"
    if as_file:
        source = name = tmp_path / "bad.nir"
        nir.write(str(source), graph)
    with pytest.raises(ExportError) as err:
        reader(source)
    message = str(err.value)
    assert message.startswith(str(name)) and "\n" not in message
    assert all(word in message for word in words), message


def _bomb(path: Path) -> None:
    """fc's weight declared 2**29 float32 elements (2 GiB once read), stored in no bytes."""
    with h5py.File(path, "a") as f:
        del f["node/nodes/fc/weight"]
        f["node/nodes/fc"].create_dataset(
            "weight", shape=(2**15, 2**14), dtype="float32", chunks=(256, 256), compression="gzip"
        )


def _external_link(path: Path) -> None:
    with h5py.File(path, "a") as f:
        f["node/nodes/fc/extra"] = h5py.ExternalLink("/etc/hostname", "/x")


def _nested(path: Path) -> None:
    graph = nir.read(str(path), type_check=False)
    graph.nodes["pool"] = nir.NIRGraph(
        nodes={"a": nir.Input(np.array([4, 8, 8])), "b": nir.Output(np.array([4, 8, 8]))},
        edges=[("a", "b")],
    )
    nir.write(str(path), graph)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:5000])


# (case, edit of the file, words the message must hold)
FILE_CASES = [
    ("compressed 2 GiB array", _bomb, ["/node/nodes/fc/weight", "elements"]),
    ("external link", _external_link, ["/node/nodes/fc/extra", "ExternalLink"]),
    ("nested graph", _nested, ["'pool'", "nested"]),
    ("truncated", _truncate, ["not a readable NIR"]),
    ("not HDF5", lambda p: p.write_text("hello"), ["not a readable NIR"]),
]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize(("case", "edit", "words"), FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_a_hostile_nir_file_is_refused_before_it_is_read(
    nir_file, tmp_path, reader, case, edit, words
):
    path = Path(shutil.copy(nir_file, tmp_path / "bad.nir"))
    edit(path)
    with pytest.raises(ExportError) as err:
        reader(path)
    message = str(err.value)
    assert message.startswith(str(path)) and "\n" not in message
    assert all(word in message for word in words), message


@pytest.mark.parametrize("reader", READERS)
def test_a_missing_nir_file_is_named(tmp_path, reader):
    with pytest.raises(FileNotFoundError, match="missing.nir"):
        reader(tmp_path / "missing.nir")


@pytest.mark.skipif(not HAS_SINABS, reason=NO_SINABS)
@pytest.mark.parametrize("timesteps", [0, 5000, 2.0])
def test_sinabs_reader_checks_its_timesteps(nir_file, timesteps):
    from multispike.pipelines.export.sinabs import sinabs_from_nir

    with pytest.raises(ValueError, match="timesteps: an integer from 1 to 4096"):
        sinabs_from_nir(nir_file, timesteps)


def test_the_exported_graph_passes_in_memory_and_from_its_file(nir_file):
    graph = nir.read(str(nir_file), type_check=False)
    validate_nir_graph(graph, nir_file)
    with torch.no_grad():
        file_out = to_snntorch(nir_file)(torch.ones(1, 8, 8))[0]
        memory_out = to_snntorch(graph)(torch.ones(1, 8, 8))[0]
    assert torch.equal(file_out, memory_out)


# --------------------------------------------------------------------------- model folders


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    kwargs = {"in_chans": 1, "num_classes": 4}
    ann = timm.create_model("ms_resnet20", **kwargs).eval()
    qann = calibrate(ann, [torch.rand(4, 1, 8, 8)], levels=2, progress=False)
    path = tmp_path_factory.mktemp("folder") / "snn"
    return save(to_snn(qann, max_spikes=2, timesteps=2), path, model_name="ms_resnet20",
                model_kwargs=kwargs)  # fmt: skip


def _kwarg(key: str, value):
    return lambda config: config["architecture"]["model_kwargs"].__setitem__(key, value)


# (case, edit of config.json, words the message must hold)
CONFIG_CASES = [
    ("3x30000x30000 input", lambda c: c.__setitem__("input_shape", [3, 30000, 30000]),
     ["input_shape: at most 16384 per dimension", "[3, 30000, 30000]"]),
    ("too many elements", lambda c: c.__setitem__("input_shape", [4, 4096, 4096]),
     ["input_shape", "16777216 elements"]),
    ("versions number", lambda c: c["versions"].__setitem__("torch", 2.4), ["versions.torch"]),
    ("versions list", lambda c: c.__setitem__("versions", {"timm": ["1"]}), ["versions.timm"]),
    ("num_classes text", _kwarg("num_classes", "ten"),
     ["architecture.model_kwargs.num_classes: an integer >= 1, got 'ten'"]),
    ("num_classes negative", _kwarg("num_classes", -3), ["model_kwargs.num_classes", "-3"]),
    ("num_classes huge", _kwarg("num_classes", 10**9), ["model_kwargs.num_classes: at most"]),
    ("in_chans float", _kwarg("in_chans", 1.0), ["model_kwargs.in_chans"]),
    ("depth option huge", _kwarg("layers", [3, 3, 10**6]), ["model_kwargs.layers"]),
    ("drop_rate text", _kwarg("drop_rate", "x"), ["model_kwargs.drop_rate: a number from 0"]),
    ("option the model refuses", _kwarg("bogus_option", 1),
     ["cannot be built (TypeError", "bogus_option", "fix architecture.model_kwargs"]),
    ("levels huge", lambda c: c.__setitem__("levels", 70000), ["levels: at most 65535"]),
    ("timesteps huge", lambda c: c.__setitem__("timesteps", 5000), ["timesteps: at most 4096"]),
    ("layer max_spikes huge", lambda c: c["layers"]["act1"].__setitem__("max_spikes", 70000),
     ["layers.act1.max_spikes: at most 65535"]),
]  # fmt: skip


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("case", "edit", "words"), CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_a_config_beyond_the_bounds_is_one_line_naming_the_field(
    folder, tmp_path, case, edit, words
):
    copy = Path(shutil.copytree(folder, tmp_path / "edited"))
    config = json.loads((copy / "config.json").read_text())
    edit(config)
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFileError) as err:
        load(copy)
    message = str(err.value)
    assert "config.json" in message and "\n" not in message
    assert all(word in message for word in words), message


def test_per_layer_counts_may_differ_from_the_top_level_within_bounds(folder, tmp_path):
    copy = Path(shutil.copytree(folder, tmp_path / "edited"))
    config = json.loads((copy / "config.json").read_text())
    config["layers"]["act1"]["max_spikes"] = 65535
    (copy / "config.json").write_text(json.dumps(config))
    assert neurons(load(copy).net)["act1"].max_spikes == 65535
