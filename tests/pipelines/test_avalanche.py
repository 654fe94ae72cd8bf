"""Avalanche measurement: stream counters against spike counts worked out by hand, JSON/PNG, CLI."""

import functools
import json

import pytest
import torch
from torch import nn

from multispike.convert import build_qann, quantizers, to_snn
from multispike.convert.residual import rewire_residual
from multispike.pipelines.evaluation.avalanche import avalanche, measure_streams, save_avalanche


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 1, 1, bias=False)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(1, 1, 1, bias=False)
        self.act2 = nn.ReLU()

    def forward(self, x):
        return self.act2(self.conv2(self.act1(self.conv1(x))) + x)


class _TinyResNet(nn.Module):
    """1 channel, 1×3 pixels, every conv weight 1: stem, two post-activation blocks, head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 1, 1, bias=False)
        self.act = nn.ReLU()
        self.block1, self.block2 = _Block(), _Block()
        self.fc = nn.Linear(3, 2)
        for conv in self.modules():
            if isinstance(conv, nn.Conv2d):
                nn.init.ones_(conv.weight)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(self.block2(self.block1(self.act(self.stem(x)))).flatten(1))


# λ per quantizer, L = N = 4: quantum 1 everywhere except after the joins (quantum 2)
THRESHOLDS = {"act": 4.0, "block1.act1": 4.0, "block1.act2": 8.0, "block2.act1": 4.0,
              "block2.act2": 8.0, "block1.join_in0": 4.0, "block2.join_in0": 4.0}  # fmt: skip
X = torch.tensor([0.2, 1.0, 3.0]).view(1, 1, 1, 3)
LABEL = torch.tensor([1])  # the head's larger output is the last pixel's


def _form(mode: str):
    qann = rewire_residual(build_qann(_TinyResNet(), 4, input_shape=(1, 1, 3)), mode)
    with torch.no_grad():
        for path, quant in quantizers(qann).items():
            quant.threshold.fill_(THRESHOLDS[path])
    return to_snn(qann)


def _check(stream: dict, events: float, spikes: float, silent: float) -> None:
    assert stream["events_per_neuron_step"] == pytest.approx(events / 3)
    assert stream["spikes_per_neuron_step"] == pytest.approx(spikes / 3)
    assert stream["mean_payload"] == pytest.approx(spikes / events)
    assert stream["silent_fraction"] == pytest.approx(silent / 3)
    assert stream["events_per_sample"] == pytest.approx(events)
    assert stream["neurons"] == 3


def test_sparse_streams_are_the_barrier_spike_counts():
    # stem counts [0,1,3]; join1 = [0,2,6] -> barrier (q=2) [0,1,3];
    # block2: act1 [0,2,4]; join2 = [0,4,10] -> barrier [0,2,4] (clipped at N=4)
    result = measure_streams(_form("sparse"), [(X, LABEL)], progress=False)
    first, second = result["joins"]
    assert (first["kind"], second["kind"]) == ("neuron", "neuron")
    _check(first, events=2, spikes=1 + 3, silent=1)
    _check(second, events=2, spikes=2 + 4, silent=1)
    assert first["quantum"] == pytest.approx(2.0)
    assert result["totals"]["neuron_events"] == pytest.approx(5 * 2)  # 5 neurons, 2 events each
    assert result["totals"]["stream_events"] == 0
    assert result["accuracy"] == 1.0


def test_sew_streams_carry_the_sum_of_spike_counts():
    # join1 = join_in0 [0,1,3] + stem [0,1,3] = [0,2,6] spikes;
    # join2 = join_in0 [0,2,4] + join1 [0,2,6] = [0,4,10] spikes: the avalanche
    result = measure_streams(_form("sew"), [(X, LABEL)], progress=False)
    first, second = result["joins"]
    assert (first["kind"], second["kind"]) == ("spike-sum", "spike-sum")
    _check(first, events=2, spikes=2 + 6, silent=1)
    _check(second, events=2, spikes=4 + 10, silent=1)
    assert result["totals"]["neuron_events"] == pytest.approx(10)
    assert result["totals"]["stream_events"] == pytest.approx(4)
    assert result["totals"]["total_events"] == pytest.approx(14)


def test_analog_streams_count_in_reference_quanta():
    snn = _form("analog")
    with pytest.raises(ValueError, match="reference quanta"):
        measure_streams(snn, [X], progress=False)
    # join1 stays the real sum [0,2,6]: in quanta of 2 that is [0,1,3]
    result = measure_streams(snn, [X], reference_quanta=[torch.tensor(2.0), None], progress=False)
    first, second = result["joins"]
    assert (first["kind"], second["kind"]) == ("analog", "neuron")
    _check(first, events=2, spikes=1 + 3, silent=1)
    _check(second, events=2, spikes=2 + 4, silent=1)
    assert result["accuracy"] is None  # no labels given


def test_sew_sum_equals_neuron_spikes_over_several_steps():
    snn = _form("sew")
    snn.timesteps = 3
    inputs = torch.rand(5, 1, 1, 3) * 4
    counted = {"act": 0.0, "block1.join_in0": 0.0}

    def hook(name):
        def record(module, args, out):
            counted[name] += float(torch.round(out / module.quantum.detach()).sum())

        return record

    for name in counted:
        snn.net.get_submodule(name).register_forward_hook(hook(name))
    result = measure_streams(snn, [inputs], progress=False)
    assert result["timesteps"] == 3
    spikes = result["joins"][0]["spikes_per_neuron_step"] * 3 * 3 * 5  # neurons·T·samples
    assert spikes == pytest.approx(counted["act"] + counted["block1.join_in0"])
    assert spikes > 0


def test_avalanche_three_forms_json_and_png(tmp_path):
    qann = build_qann(_TinyResNet(), 4, input_shape=(1, 1, 3))
    data = [(torch.rand(8, 1, 1, 3) * 4, torch.randint(0, 2, (8,))) for _ in range(2)]
    result = avalanche(qann, data, timesteps=2, progress=False)
    assert list(result["forms"]) == ["sparse", "sew", "analog"]
    assert result["timesteps"] == 2 and result["max_spikes"] == 4
    for form in result["forms"].values():
        assert [j["index"] for j in form["joins"]] == [0, 1]
        assert form["samples"] == 16
    json_path, png_path = save_avalanche(result, tmp_path)
    assert json.loads(json_path.read_text())["forms"]["sew"]["joins"][1]["kind"] == "spike-sum"
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="unknown mode"):
        avalanche(qann, data, modes=("sparse", "dense"), progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("calibration", ["percentile", "mse"])
def test_cli_writes_json_and_plot(tmp_path, capsys, calibration):
    from multispike.pipelines.cli import main

    argv = [
        "avalanche", "--model", "ms_resnet20", "--data", "RandomDataModule",
        "--data.batch_size", "2", "--data.num_samples", "8", "--data.num_test_samples", "2",
        "--calibration_images", "2", "--calibration", calibration, "--progress", "false",
        "--output", str(tmp_path),
    ]  # fmt: skip
    assert main(argv) == 0
    result = json.loads((tmp_path / "avalanche.json").read_text())
    assert set(result["forms"]) == {"sparse", "sew", "analog"}
    assert len(result["forms"]["sparse"]["joins"]) == 9 and result["split"] == "test"
    assert (tmp_path / "avalanche.png").stat().st_size > 0
    capsys.readouterr()
    assert main([*argv, "--modes", "[sparse, dense]"]) == 2
    assert "modes" in capsys.readouterr().err


def test_cli_takes_the_calibration_options_of_convert(tmp_path, monkeypatch, capsys):
    """``--calibration mse`` (or reconstruct) and ``--percentile`` as ``multispike convert``
    reads them, into one :class:`CalibrationOptions`."""
    from multispike.convert import CalibrationOptions
    from multispike.pipelines.commands import avalanche as command

    seen = {}

    @functools.wraps(command.avalanche)
    def record(**kwargs):
        seen.update(kwargs)

    monkeypatch.setattr(command, "avalanche", record)
    argv = ["--model", "ms_resnet20", "--data", "RandomDataModule", "--output", str(tmp_path),
            "--levels", "2", "--calibration", "mse", "--calibration_images", "8"]  # fmt: skip
    assert command.main(argv) == 0
    assert seen["calibration"] == CalibrationOptions(levels=2, calibration="mse",
                                                     calibration_images=8)  # fmt: skip
    assert command.main([*argv[:-4], "--percentile", "99"]) == 0
    assert seen["calibration"] == CalibrationOptions(levels=2, percentile=99.0)
    assert command.main([*argv, "--calibration", "max"]) == 2
    assert "calibration" in capsys.readouterr().err
