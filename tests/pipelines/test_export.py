"""NIR export reads back in snnTorch with multispike's outputs; ONNX matches; CLI export works."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import timm
import torch

import multispike.zoo.nir_cnn  # noqa: F401  (registers ms_nir_nmnist_cnn)
from multispike.convert import calibrate, neurons, to_snn
from multispike.pipelines import save
from multispike.pipelines.cli import main as cli
from multispike.pipelines.export import (
    ExportError,
    export_nir,
    export_onnx,
    reset_snntorch,
    to_snntorch,
)

NAME = "ms_nir_nmnist_cnn"
SHAPE = (2, 34, 34)


@pytest.fixture(scope="module")
def frames() -> torch.Tensor:
    """Event-count-like frames: (T=4, B=3, 2, 34, 34)."""
    return torch.poisson(torch.full((4, 3, *SHAPE), 0.4), torch.Generator().manual_seed(2))


def _qann(frames, per_channel=False, levels=1):
    model = timm.create_model(NAME).eval()
    return calibrate(model, [frames.flatten(0, 1)], levels=levels, per_channel=per_channel,
                     progress=False)  # fmt: skip


def _run_snntorch(reader, frames: torch.Tensor) -> torch.Tensor:
    """(T, B, classes) spikes of the reader, one unbatched sample at a time."""
    outputs = []
    for b in range(frames.shape[1]):
        reset_snntorch(reader)
        outputs.append(torch.stack([reader(frames[t, b])[0] for t in range(frames.shape[0])]))
    return torch.stack(outputs, dim=1)


@pytest.mark.parametrize("per_channel", [False, True])
def test_binary_nir_graph_runs_in_snntorch_like_multispike(tmp_path, frames, per_channel):
    snn = to_snn(_qann(frames, per_channel), max_spikes=1, timesteps=4)
    path = tmp_path / "cnn.nir"
    export_nir(snn, path, output="spikes")
    graph = nir.read(str(path))
    with torch.no_grad():
        expected = snn(frames)
        spikes = _run_snntorch(to_snntorch(graph), frames)
    assert spikes.sum() > 0
    scale = torch.as_tensor(graph.nodes["output"].metadata["scale"])
    assert torch.equal(spikes * scale, expected)


class _TinyResidual(torch.nn.Module):
    """conv-relu-conv + identity shortcut, relu, per-channel scaled pooling, linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Conv2d(2, 4, 3, stride=2, padding=1)
        self.act0 = torch.nn.ReLU()
        self.conv1 = torch.nn.Conv2d(4, 4, 3, padding=1)
        self.act1 = torch.nn.ReLU()
        self.conv2 = torch.nn.Conv2d(4, 4, 3, padding=1)
        self.act2 = torch.nn.ReLU()
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act0(self.stem(x))
        x = self.act2(self.conv2(self.act1(self.conv1(x))) + x)
        return self.fc(torch.flatten(self.pool(x), 1))


def test_residual_sum_of_differently_scaled_streams_runs_in_snntorch(frames):
    x = frames[:, :, :, :8, :8]  # (T=4, B=3, 2, 8, 8)
    qann = calibrate(_TinyResidual().eval(), [x.flatten(0, 1)], levels=1, per_channel=True,
                     progress=False)  # fmt: skip
    snn = to_snn(qann, max_spikes=1, timesteps=4)
    graph = export_nir(snn)  # ends with values: the head is linear, no Scale needed
    incoming = [src for src, dst in graph.edges if dst == "act2"]
    assert len(incoming) == 2 and any(type(graph.nodes[s]).__name__ == "Scale" for s in incoming)
    with torch.no_grad():
        expected = snn(x)
        got = _run_snntorch(to_snntorch(graph), x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)  # folded weights round


def test_nir_graph_structure_folds_quanta_and_sum_pooling(frames):
    snn = to_snn(_qann(frames), max_spikes=1, timesteps=4)
    graph = export_nir(snn)
    kinds = {name: type(node).__name__ for name, node in graph.nodes.items()}
    assert list(kinds.values()).count("IF") == 5 and "Scale" in kinds.values()
    assert kinds["avg_pool2d"] == "AvgPool2d" and kinds["flatten"] == "Flatten"
    act2, conv3 = neurons(snn.net)["act2"], snn.net.conv3
    # conv3 receives act2's unit events through a 2x2 *sum* pool: W' = W·λ·4
    assert np.allclose(graph.nodes["conv3"].weight, (conv3.weight * act2.threshold * 4).detach())
    node = graph.nodes["act1"]
    assert node.metadata["reset"] == "subtract" and node.metadata["max_spikes"] == 1
    assert np.allclose(node.metadata["v_init"], node.v_threshold / 2)


def test_multilevel_neurons_export_quantum_and_spike_count(frames):
    snn = to_snn(_qann(frames, levels=4), max_spikes=4)
    graph = export_nir(snn)
    lam = neurons(snn.net)["act1"].threshold.item()
    node = graph.nodes["act1"]
    assert node.metadata["max_spikes"] == 4
    assert np.allclose(node.v_threshold, lam / 4)


def test_zoo_cifar_resnet_option_a_shortcut_exports_and_runs_in_snntorch():
    """Strided selection + channel padding become 1×1 convs with 0/1 weights; same outputs."""
    import multispike.zoo  # noqa: F401  (registers ms_resnet20)

    x = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    qann = calibrate(timm.create_model("ms_resnet20").eval(), [x], levels=1, per_channel=True,
                     progress=False)  # fmt: skip
    snn = to_snn(qann, max_spikes=1, timesteps=3)
    graph = export_nir(snn)
    pad = graph.nodes["pad"]  # layer2.0's shortcut: 16 → 32 channels, 8 zero channels per side
    assert type(pad).__name__ == "Conv2d" and pad.weight.shape == (32, 16, 1, 1)
    assert set(np.unique(pad.weight)) == {0.0, 1.0} and pad.weight.sum() == 16
    assert np.array_equal(pad.weight[8:24, :, 0, 0], np.eye(16))
    assert tuple(graph.nodes["getitem"].stride) == (2, 2)
    frames = x[:2].expand(3, -1, -1, -1, -1)  # (T=3, B=2, 3, 32, 32)
    with torch.no_grad():
        expected = snn(frames)
        got = _run_snntorch(to_snntorch(graph), frames)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)  # folded weights round
    assert torch.equal(got.argmax(-1), expected.argmax(-1))


class _SliceChannels(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 4, 3, padding=1)
        self.act = torch.nn.ReLU()
        self.fc = torch.nn.Linear(2 * 16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.act(self.conv(x))[:, :2], 1))


def test_nir_export_refuses_channel_slicing_naming_the_node():
    qann = calibrate(_SliceChannels(), [torch.rand(2, 2, 4, 4)], levels=2, progress=False)
    with pytest.raises(ExportError, match="getitem.*channel axis"):
        export_nir(to_snn(qann))


def test_nir_export_names_unsupported_node():
    qann = calibrate(timm.create_model("test_resnet"), [torch.randn(2, 3, 32, 32)], levels=2,
                     progress=False)  # fmt: skip
    with pytest.raises(ExportError, match="maxpool"):
        export_nir(to_snn(qann))


@pytest.mark.parametrize("kind", ["snn", "qann"])
def test_onnx_matches_pytorch(tmp_path, frames, kind):
    ort = pytest.importorskip("onnxruntime")
    qann = _qann(frames, per_channel=True, levels=4)
    model = to_snn(qann, max_spikes=2, timesteps=3) if kind == "snn" else qann
    path = export_onnx(model, tmp_path / "m.onnx")
    x = frames[0]
    (got,) = ort.InferenceSession(str(path)).run(None, {"input": x.numpy()})
    with torch.no_grad():
        expected = model(x, timesteps=1)[0] if kind == "snn" else model(x)
    assert got.shape == tuple(expected.shape)
    # float rounding of conv/linear between runtimes only (no level flips on this data)
    torch.testing.assert_close(torch.from_numpy(got), expected, rtol=1e-5, atol=1e-5)


def test_cli_exports_saved_directory(tmp_path, frames, capsys):
    snn = to_snn(_qann(frames), max_spikes=1, timesteps=3)
    norm = {"mean": [0.5] * snn.input_shape[-3], "std": [0.25] * snn.input_shape[-3]}
    directory = save(snn, tmp_path / "model", model_name=NAME, preprocessing=norm)
    argv = ["export", "--model_dir", str(directory), "--format"]
    assert cli([*argv, "nir", "--output", str(tmp_path / "m.nir")]) == 0
    assert sum(isinstance(n, nir.IF) for n in nir.read(str(tmp_path / "m.nir")).nodes.values()) == 5
    assert cli([*argv, "onnx", "--output", str(tmp_path / "m.onnx")]) == 0
    assert (tmp_path / "m.onnx").stat().st_size > 0
    assert "wrote" in capsys.readouterr().out
    # what a deploying user needs travels in the ONNX file
    import json

    import onnx

    props = {p.key: json.loads(p.value) for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert props["multispike.kind"] == "snn" and props["multispike.timesteps"] == 1
    assert props["multispike.max_spikes"] == 1 and props["multispike.levels"] == snn_levels(snn)
    assert props["multispike.input_shape"] == list(snn.input_shape)
    assert props["multispike.mean"] == norm["mean"] and props["multispike.std"] == norm["std"]
    assert props["multispike.num_classes"] > 0


def test_cli_nir_export_of_multilevel_model_names_what_readers_lose(tmp_path, frames, capsys):
    snn = to_snn(_qann(frames, levels=4), max_spikes=4)
    directory = save(snn, tmp_path / "model", model_name=NAME)
    argv = ["export", "--model_dir", str(directory), "--format", "nir"]
    assert cli([*argv, "--output", str(tmp_path / "m.nir")]) == 0
    err = capsys.readouterr().err
    assert "N = 4" in err and "snnTorch" in err and "max_spikes" in err
    graph = nir.read(str(tmp_path / "m.nir"))
    assert all(n.metadata["max_spikes"] == 4 for n in graph.nodes.values() if isinstance(n, nir.IF))


def test_cli_export_reports_missing_directory(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    argv = ["export", "--model_dir", str(missing), "--format", "nir", "--output"]
    assert cli([*argv, str(tmp_path / "x")]) == 2
    assert "config.json" in capsys.readouterr().err


def _nmnist(folder, listing: str, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3, 2, 34, 34) event-count frames (3 equal time bins) and labels, via tonic."""
    from tonic.io import read_mnist_file
    from tonic.transforms import ToFrame

    dtype = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])
    to_frames = ToFrame(sensor_size=(34, 34, 2), n_time_bins=3)
    rows = [line.split() for line in (folder / listing).read_text().splitlines()[1 : limit + 1]]
    frames = [
        torch.from_numpy(to_frames(read_mnist_file(str(folder / f"{i}.bs2"), dtype=dtype)))
        for i, _ in rows
    ]
    return torch.stack(frames).float(), torch.tensor([int(label) for _, label in rows])


@pytest.mark.slow
def test_nir_paper_cnn_on_real_nmnist(need_data):
    """Paper weights reproduce the reference accuracy; the binary SNN runs identically in NIR."""
    need_data("weights/nir-nmnist-cnn/sinabs-cnn-ann.pth")
    folder = need_data("nmnist")
    test_x, test_y = _nmnist(folder, "test100.txt", 100)
    train_x, _ = _nmnist(folder, "train1K.txt", 100)
    ann = timm.create_model(NAME, pretrained=True).eval()
    with torch.no_grad():
        per_frame = ann(test_x.flatten(0, 1)).argmax(-1).view(-1, 3)
    assert (per_frame == test_y[:, None]).float().mean() >= 0.97  # README: 97.7% per frame
    qann = calibrate(ann, [train_x.flatten(0, 1)], levels=1, percentile=95.0, progress=False)
    snn = to_snn(qann, max_spikes=1, timesteps=3)
    graph = export_nir(snn, output="spikes")
    sample = test_x[:8].transpose(0, 1)  # (T=3, B, 2, 34, 34)
    with torch.no_grad():
        expected = snn(sample)
        spikes = _run_snntorch(to_snntorch(graph), sample)
    assert expected.sum() > 0
    assert torch.equal(spikes * torch.as_tensor(graph.nodes["output"].metadata["scale"]), expected)


def snn_levels(snn) -> int:
    """``L`` of the QANN an SNN was converted from."""
    return snn.net.meta["multispike"]["levels"]
