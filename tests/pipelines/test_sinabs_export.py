"""The SNN in sinabs: bit-identical outputs at every step; saved files load with torch + sinabs."""

from __future__ import annotations

import pytest
import timm
import torch

import multispike.zoo  # noqa: F401  (registers the zoo models)
from multispike.convert import calibrate, neurons, to_snn
from multispike.pipelines import save
from multispike.pipelines.cli import main as cli

sinabs = pytest.importorskip("sinabs", reason="no sinabs: pip install --no-deps sinabs pbr")
from multispike.pipelines.export import export_nir  # noqa: E402
from multispike.pipelines.export.sinabs import (  # noqa: E402
    reset_sinabs,
    run_sinabs,
    sinabs_from_nir,
    to_sinabs,
)


def _snn(name: str, shape, levels: int, max_spikes: int, timesteps: int, per_channel: bool):
    x = torch.randn(6, *shape, generator=torch.Generator().manual_seed(0))
    if name == "ms_nir_nmnist_cnn":
        x = x.abs().round()  # event counts
    qann = calibrate(timm.create_model(name).eval(), [x], levels=levels, per_channel=per_channel,
                     progress=False)  # fmt: skip
    return to_snn(qann, max_spikes=max_spikes, timesteps=timesteps), x[:3]


@pytest.mark.parametrize(
    ("name", "shape"), [("ms_resnet20", (3, 32, 32)), ("ms_nir_nmnist_cnn", (2, 34, 34))]
)
@pytest.mark.parametrize(
    ("levels", "max_spikes", "timesteps", "per_channel"),
    [(4, 4, 1, True), (4, 4, 4, False), (1, 1, 4, True), (4, 2, 3, True)],
)
def test_sinabs_network_is_bit_identical_at_every_step(
    name, shape, levels, max_spikes, timesteps, per_channel
):
    snn, x = _snn(name, shape, levels, max_spikes, timesteps, per_channel)
    net = to_sinabs(snn)
    iafs = [m for m in net.modules() if isinstance(m, sinabs.layers.IAFSqueeze)]
    assert len(iafs) == len(neurons(snn.net))
    assert all(m.spike_fn.max_num_spikes_per_bin == max_spikes for m in iafs)
    frames = x.unsqueeze(0).expand(timesteps, *x.shape)
    with torch.no_grad():
        expected = snn(x)
        got = run_sinabs(net, frames)
    assert expected.abs().sum() > 0
    assert torch.equal(got, expected)


def test_sinabs_membrane_must_start_at_half_a_quantum():
    """Without v(0) = 1/2 (sinabs's own zero start) the outputs differ: the reset matters."""
    snn, x = _snn("ms_resnet20", (3, 32, 32), 4, 4, 1, True)
    net = to_sinabs(snn)
    with torch.no_grad():
        expected = snn(x)[0]
        reset_sinabs(net, x.shape[0])
        for layer in net.modules():
            if isinstance(layer, sinabs.layers.IAFSqueeze):
                layer.v_mem.zero_()
        zero_start = net(x)
    assert not torch.equal(zero_start, expected)


def test_cli_sinabs_file_loads_with_torch_and_sinabs_alone(tmp_path):
    snn, x = _snn("ms_nir_nmnist_cnn", (2, 34, 34), 4, 4, 2, True)
    before = {k: v.clone() for k, v in snn.state_dict().items()}
    directory = save(snn, tmp_path / "model", model_name="ms_nir_nmnist_cnn")
    argv = ["export", "--model_dir", str(directory), "--format", "sinabs"]
    assert cli([*argv, "--output", str(tmp_path / "m.pt")]) == 0
    net = torch.load(tmp_path / "m.pt", weights_only=False)  # our own file: a trusted pickle
    assert all(not type(m).__module__.startswith("multispike") for m in net.modules())
    with torch.no_grad():
        got = run_sinabs(net, x.unsqueeze(0).expand(2, *x.shape))
        assert torch.equal(got, snn(x))
    assert all(torch.equal(v, snn.state_dict()[k]) for k, v in before.items())


def test_cli_sinabs_export_of_a_qann_names_the_fix(tmp_path, capsys):
    snn, _ = _snn("ms_nir_nmnist_cnn", (2, 34, 34), 4, 4, 1, False)
    from multispike.convert import qann_of

    directory = save(qann_of(snn), tmp_path / "qann", model_name="ms_nir_nmnist_cnn")
    argv = ["export", "--model_dir", str(directory), "--format", "sinabs"]
    assert cli([*argv, "--output", str(tmp_path / "m.pt")]) != 0
    assert "quantized ANN" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "shape"), [("ms_nir_nmnist_cnn", (2, 34, 34)), ("ms_resnet20", (3, 32, 32))]
)
@pytest.mark.parametrize(("max_spikes", "timesteps"), [(4, 1), (4, 3), (1, 4)])
def test_nir_read_into_sinabs_restores_the_payload(tmp_path, name, shape, max_spikes, timesteps):
    """NIR → sinabs with MaxSpike(N) and v(0) from the metadata: multispike's outputs up to the
    rounding of quanta folded into weights."""
    snn, x = _snn(name, shape, 4, max_spikes, timesteps, True)
    export_nir(snn, tmp_path / "m.nir")
    net = sinabs_from_nir(tmp_path / "m.nir", timesteps)
    frames = x.unsqueeze(0).expand(timesteps, *x.shape)
    with torch.no_grad():
        expected = snn(x)
        got = run_sinabs(net, frames)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)
    assert torch.equal(got.argmax(-1), expected.argmax(-1))
    if name == "ms_nir_nmnist_cnn":  # its quanta fold into no rounding here: exact
        assert torch.equal(got, expected)
