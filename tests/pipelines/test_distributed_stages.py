"""``convert`` and ``evaluate`` on two processes (Fabric, DDP, gloo on CPU) write what one
process writes: the same thresholds, ``report.json`` accuracies and ``metrics.json``, on
datasets that do not divide by the world size."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from multispike.zoo import load_model

CLI = Path(sys.executable).parent / "multispike"
DIGITS = ["--data", "DigitsDataModule", "--data.batch_size", "24", "--progress", "false"]


def _run(*argv: str) -> None:
    done = subprocess.run([str(CLI), *argv], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    ann = load_model("ms_resnet20", in_chans=1, num_classes=10)
    path = tmp_path_factory.mktemp("ann") / "ann.safetensors"
    save_file({k: v.contiguous() for k, v in ann.state_dict().items()}, path)
    return path


@pytest.mark.skipif(not CLI.exists(), reason="the multispike console script is not installed")
def test_two_processes_convert_and_evaluate_like_one(tmp_path, weights):
    # 100 calibration images in batches of 24: 5 batches, 3 on rank 0 and 2 on rank 1;
    # 70 validation and 100 test images: 3 and 5 batches
    convert = ["convert", "--model", "ms_resnet20", "--checkpoint", str(weights), *DIGITS,
               "--levels", "4", "--per_channel", "true", "--calibration", "mse",
               "--calibration_images", "100", "--eval_images", "70"]  # fmt: skip
    _run(*convert, "--output", str(tmp_path / "one"))
    _run(*convert, "--output", str(tmp_path / "two"), "--trainer.devices", "2")
    one, two = (
        load_file(tmp_path / "one/model.safetensors"),
        load_file(tmp_path / "two/model.safetensors"),
    )
    assert one.keys() == two.keys() and all(torch.equal(one[k], two[k]) for k in one)
    report = {n: json.loads((tmp_path / n / "report.json").read_text()) for n in ("one", "two")}
    assert report["two"]["processes"] == 2
    for key in ("ann", "qann", "snn"):
        assert report["one"][key] == report["two"][key]

    evaluate = [
        "evaluate",
        "--model_dir",
        str(tmp_path / "one"),
        "--checkpoint",
        str(weights),
        *DIGITS,
        "--eval_images",
        "100",
        "--sweep",
        "[1x2]",
        "--noise",
        "[0.0,0.3]",
    ]
    _run(*evaluate, "--output", str(tmp_path / "ev1"))
    _run(*evaluate, "--output", str(tmp_path / "ev2"), "--trainer.devices", "2")
    metrics = [json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("ev1", "ev2")]
    assert metrics[0]["snn"]["images"] == 100
    assert metrics[0] == metrics[1]
    assert (tmp_path / "ev1/report.md").read_text() == (tmp_path / "ev2/report.md").read_text()


def test_codes_and_neurobench_refuse_several_processes(monkeypatch):
    from multispike.pipelines.evaluation import compute as module

    monkeypatch.setattr(module, "rank_and_world", lambda: (0, 2))
    with pytest.raises(ValueError, match="one process"):
        module.evaluate(None, None, [], codes=True)
