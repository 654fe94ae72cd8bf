"""The evaluation: accuracy summary, latency, binary vs multi-level, report files, CLI."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from multispike.convert import calibrate, qann_of, to_snn
from multispike.pipelines.cli import main as cli
from multispike.pipelines.evaluation import (
    SNNConfig,
    accuracy_summary,
    evaluate,
    latency,
    matched_energy_ratio,
    robustness,
    write_report,
)


def _net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    )  # fmt: skip


@pytest.fixture
def setup():
    torch.manual_seed(0)
    ann = _net().eval()
    x = torch.randn(24, 3, 8, 8)
    y = ann(x).argmax(1)  # labels the ANN mostly gets right
    y[::4] = (y[::4] + 1) % 4
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    qann = calibrate(ann, [x], levels=4, progress=False)
    return ann, qann, loader


def test_accuracy_summary_is_exact_at_one_step(setup):
    ann, qann, loader = setup
    summary = accuracy_summary(ann, qann, to_snn(qann), loader, progress=False)
    assert summary["ann.top1"] == pytest.approx(18 / 24)
    assert summary["snn.top1_at_t"] == {1: summary["qann.top1"]}
    assert summary["snn.agreement_with_qann"] == 1.0
    assert summary["snn.max_abs_logit_diff"] == 0.0
    longer = accuracy_summary(None, qann, to_snn(qann, 2, 3), loader, progress=False)
    assert "ann.top1" not in longer and list(longer["snn.top1_at_t"]) == [1, 2, 3]
    assert 0 <= longer["snn.agreement_with_qann"] <= 1


def test_latency_is_the_first_step_of_the_final_decision():
    # cumulative-mean argmax per image: [0,1,1], [1,1,1], [0,0,1]
    outputs = torch.tensor(
        [
            [[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]],
            [[0.0, 6.0], [0.0, 1.0], [1.0, 0.0]],
            [[0.0, 1.0], [0.0, 1.0], [0.0, 9.0]],
        ]
    )
    assert latency(outputs).tolist() == [2, 1, 3]
    assert latency(outputs[:1]).tolist() == [1, 1, 1]


def test_qann_of_inverts_to_snn(setup):
    _, qann, loader = setup
    x = next(iter(loader))[0]
    assert torch.equal(qann_of(to_snn(qann, 2, 5))(x), qann(x))


def test_binary_and_multilevel_differ_as_the_math_says(setup):
    ann, qann, loader = setup
    metrics = evaluate(ann, qann, loader, binary_timesteps=4, noise=(), progress=False)
    multi, binary = metrics["snn"]["activity"], metrics["binary"]["activity"]
    # one membrane update per neuron per step: T_binary / T_multi = 4 times as many
    assert binary["total"]["membrane_updates"] == 4 * multi["total"]["membrane_updates"]
    # the analog first layer sees the same image at every step: computed once in both
    assert binary["synapses"]["0"]["macs"] == multi["synapses"]["0"]["macs"] > 0
    # binary events carry one spike; multi-level payloads lie in 1..N = 1..4
    assert binary["total"]["mean_payload"] == 1.0
    assert 1.0 <= multi["total"]["mean_payload"] <= 4.0
    for layer in multi["neurons"].values():
        assert layer["events_per_neuron_step"] * 4 >= layer["spikes_per_neuron_step"]
    # T = 1, N = L equals the QANN; energy = counts × table
    assert metrics["snn.max_abs_logit_diff"] == 0.0
    e = metrics["snn"]["energy"]
    assert e["total"] == pytest.approx(e["ops"] + e["memory"])
    assert metrics["sweep"][0]["label"] == "N=4,T=1" and metrics["sweep"][1]["label"] == "N=1,T=4"


def test_matched_energy_ratio_picks_the_cheapest_binary_that_reaches():
    multi = {"label": "N=4,T=1", "top1": 0.90, "energy": {"total": 10.0, "ops": 2.0}}
    binaries = [
        {"label": "N=1,T=2", "top1": 0.70, "energy": {"total": 15.0, "ops": 3.0}},
        {"label": "N=1,T=8", "top1": 0.899, "energy": {"total": 40.0, "ops": 5.0}},
        {"label": "N=1,T=16", "top1": 0.91, "energy": {"total": 80.0, "ops": 9.0}},
    ]
    result = matched_energy_ratio(multi, binaries)
    assert result["binary"] == "N=1,T=8" and result["ratio"] == 4.0 and result["ratio_ops"] == 2.5
    assert matched_energy_ratio(multi, binaries[:1])["ratio"] is None


def test_robustness_without_noise_is_clean_accuracy(setup):
    ann, qann, loader = setup
    result = robustness({"ann": ann, "snn": to_snn(qann)}, loader, [0.0, 1.0], progress=False)
    assert result["ann"][0.0] == pytest.approx(18 / 24)
    assert set(result["snn"]) == {0.0, 1.0}


@pytest.mark.slow
def test_report_files_and_valid_pngs(setup, tmp_path):
    ann, qann, loader = setup
    metrics = evaluate(
        ann, qann, loader, max_spikes=2, timesteps=2, binary_timesteps=3,
        sweep=[SNNConfig.parse("1x1"), SNNConfig(2, 1)], noise=(0.0, 0.5), progress=False,
    )  # fmt: skip
    write_report(metrics, tmp_path)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    for group, key in (("ann", "top1"), ("qann", "top1"), ("snn", "top1_at_t"),
                       ("snn", "agreement_with_qann"), ("snn", "max_abs_logit_diff")):  # fmt: skip
        assert key in saved[group]
    assert list(saved["snn"]["top1_at_t"]) == ["1", "2"]
    assert [r["label"] for r in saved["sweep"]] == ["N=2,T=2", "N=1,T=3", "N=1,T=1", "N=2,T=1"]
    report = (tmp_path / "report.md").read_text()
    assert "N=1,T=3" in report and "Robustness" in report
    assert len(saved["plots"]) == 6
    for name in saved["plots"]:
        with Image.open(tmp_path / name) as image:
            image.verify()
            assert image.format == "PNG"


def test_the_report_gives_the_binary_runs_energy_ratio_when_none_matches():
    from multispike.pipelines.evaluation.report import _binary_ratio

    snn = {"label": "N=4,T=1", "top1": 0.98, "energy": {"total": 4.0e6}}
    binary = {"label": "N=1,T=8", "top1": 0.9694, "energy": {"total": 15.12e6}}
    other = {"label": "N=2,T=1", "top1": 0.97, "energy": {"total": 7.56e6}}
    metrics = {"snn": snn, "binary": binary, "sweep": [snn, binary, other]}
    assert _binary_ratio(metrics, "N=4,T=1") == (
        " The binary run here, N=1,T=8 (96.94 %), costs 3.78× its energy."
    )
    assert _binary_ratio(metrics, "N=2,T=1").endswith("costs 2.00× its energy.")  # its own
    assert _binary_ratio({"snn": binary, "binary": binary}, "N=1,T=8") == ""  # binary itself


def test_a_binary_snn_is_evaluated_once_as_both_roles(setup, tmp_path):
    ann, qann, loader = setup
    metrics = evaluate(ann, qann, loader, max_spikes=1, timesteps=4, binary_timesteps=4,
                       noise=(0.0,), progress=False)  # fmt: skip
    reference = evaluate(ann, qann, loader, max_spikes=2, timesteps=1, binary_timesteps=4,
                         noise=(0.0,), progress=False)  # fmt: skip
    assert metrics["binary"] is metrics["snn"]
    assert metrics["snn"]["top1_at_t"] == reference["binary"]["top1_at_t"]
    assert metrics["snn"]["energy"] == reference["binary"]["energy"]
    assert [r["label"] for r in metrics["sweep"]] == ["N=1,T=4"]
    assert set(metrics["robustness"]) == {"ann", "qann", "snn"}
    write_report(metrics, tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert report.count("### SNN N=1,T=4") == report.count("| SNN N=1,T=4 |") == 1


def test_event_data_agreement_is_with_the_qann_on_the_snns_own_frames():
    torch.manual_seed(0)
    ann = nn.Sequential(
        nn.Conv2d(2, 8, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(8, 4),
    ).eval()  # fmt: skip
    frames = torch.poisson(torch.full((16, 3, 2, 8, 8), 0.7))  # (B, F, C, H, W) event counts
    loader = DataLoader(TensorDataset(frames, torch.randint(0, 4, (16,))), batch_size=8)
    qann = calibrate(ann, [frames.flatten(0, 1)], levels=4, progress=False)
    one_step = evaluate(ann, qann, loader, binary_timesteps=3, noise=(), progress=False)
    assert one_step["snn"]["max_abs_logit_diff"] == 0.0  # T = 1: the 3 frames summed
    assert one_step["snn"]["agreement_with_qann"] == 1.0
    # the QANN's own accuracy stays the per-frame average over all F frames
    per_frame = qann(frames.flatten(0, 1)).view(16, 3, -1).mean(1)
    summed = qann(frames.sum(1))
    assert not torch.equal(per_frame.argmax(-1), summed.argmax(-1))
    three_steps = evaluate(ann, qann, loader, timesteps=3, binary_timesteps=3, noise=(),
                           progress=False)  # fmt: skip
    assert three_steps["qann.top1"] == one_step["qann.top1"]
    assert 0.0 <= three_steps["snn"]["agreement_with_qann"] <= 1.0


def test_snn_config_parse_errors():
    assert SNNConfig.parse("8x2") == SNNConfig(8, 2)
    with pytest.raises(ValueError, match="NxT"):
        SNNConfig.parse("8")


def test_cli_errors_are_clear(capsys, tmp_path):
    assert cli(["evaluate", "--data", "DigitsDataModule", "--output", str(tmp_path)]) == 2
    assert "model_dir" in capsys.readouterr().err  # the required option is named
    argv = ["evaluate", "--model_dir", str(tmp_path / "none"), "--data", "DigitsDataModule",
            "--output", str(tmp_path / "report")]  # fmt: skip
    assert cli(argv) == 2
    assert f"model folder {tmp_path / 'none'} does not exist" in capsys.readouterr().err
    assert cli([*argv, "--sweep", "[4]"]) == 2
    assert not (tmp_path / "report").exists()


@pytest.mark.slow
def test_cli_report_of_pretrained_resnet20_on_cifar10(need_data, tmp_path, capsys):
    need_data("cifar10/cifar10-full.npz")
    need_data("weights/akamaster-cifar10-resnet")
    data = ["--data", "CIFAR10DataModule", "--data.batch_size", "16"]
    model = tmp_path / "model"
    assert cli(["convert", "--model", "ms_resnet20", "--pretrained", "true", *data,
                "--levels", "8", "--calibration_images", "32", "--eval_images", "16",
                "--output", str(model), "--progress", "false"]) == 0  # fmt: skip
    report = tmp_path / "report"
    code = cli(["evaluate", "--model_dir", str(model), "--pretrained", "true", *data,
                "--eval_images", "16", "--binary_timesteps", "2", "--noise", "[0.0]",
                "--output", str(report), "--progress", "false"])  # fmt: skip
    assert code == 0
    saved = json.loads((report / "metrics.json").read_text())
    assert saved["ann"]["top1"] >= 0.75  # the checkpoint scores 91.7 % on the test set
    assert saved["snn"]["label"] == "N=8,T=1" and saved["binary"]["label"] == "N=1,T=2"
    assert saved["snn"]["top1_at_t"] == {"1": saved["qann"]["top1"]}
    assert saved["snn"]["agreement_with_qann"] == 1.0 and saved["snn"]["max_abs_logit_diff"] == 0.0
    assert saved["snn"]["images"] == 16 and set(saved["robustness"]["snn"]) == {"0.0"}
    text = (report / "report.md").read_text()
    assert text.startswith("# Evaluation report")
    # what was measured, said in the report: the folder, the ANN's weights, data, machine
    for line in (f"- Model folder: {model}", "- ANN: ms_resnet20, pretrained weights",
                 "- Data: CIFAR10DataModule, test split, 16 images", "- Machine: "):  # fmt: skip
        assert line in text, line
    assert "nJ" not in text and "Energies in µJ per image" in text
    # the options it ran with, beside its output (as Lightning keeps a fit's)
    assert "model_dir:" in (report / "config.yaml").read_text()
    assert "levels: 8" in (model / "config.yaml").read_text()
    out = capsys.readouterr().out
    assert "test split, 16 images, top-1: ANN" in out and "nan" not in out


@pytest.mark.parametrize("events", [False, True])
def test_neurobench_values_sit_beside_ours_in_the_report(setup, tmp_path, events):
    pytest.importorskip(
        "neurobench", reason="needs the neurobench extra: pip install -e '.[neurobench]'"
    )
    ann, qann, loader = setup
    if events:  # (B, F, C, H, W) frames: the T = 1 SNN sees them summed, as in evaluate
        x, y = loader.dataset.tensors
        frames = torch.stack([x.clamp_min(0), x.clamp_max(0).neg()], 1)
        loader = DataLoader(TensorDataset(frames, y), batch_size=8)
    metrics = evaluate(ann, qann, loader, noise=(), neurobench=True, progress=False)
    nb, ours = metrics["neurobench"], metrics["snn"]["activity"]["total"]
    assert nb["ClassificationAccuracy"] == pytest.approx(metrics["snn"]["top1"])
    assert nb["ActivationSparsity"] == pytest.approx(ours["activation_sparsity"])
    assert nb["Effective_MACs"] > ours["synops"] > 0  # the analog first layer's MACs on top
    write_report(metrics, tmp_path)
    assert "## NeuroBench (N=4,T=1)" in (tmp_path / "report.md").read_text()
    assert "Effective_MACs" in json.loads((tmp_path / "metrics.json").read_text())["neurobench"]
