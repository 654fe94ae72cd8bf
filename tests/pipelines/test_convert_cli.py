"""``multispike convert``: outputs, the real pretrained ResNet-20, errors that name the flag, and
the flag aliases of ``convert`` and ``export``."""

import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from multispike import zoo  # noqa: F401  (registers ms_* models)
from multispike.pipelines.cli import main
from multispike.pipelines.commands import convert, export
from multispike.pipelines.serialize import load


def _convert(tmp_path, *extra):
    out = tmp_path / "out"
    code = main(["convert", "--output", str(out), "--no-progress", *extra])
    return code, out


def test_convert_random_writes_model_and_report(tmp_path, capsys):
    code, out = _convert(
        tmp_path, "--model", "ms_resnet20", "--data", "random", "--levels", "2",
        "--max-spikes", "2", "--calibration-images", "16", "--batch-size", "8",
    )  # fmt: skip
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["snn"]["agreement_with_qann"] == 1.0
    assert report["snn"]["max_abs_logit_diff"] == 0.0
    assert "ann" not in report  # random labels: no accuracy is claimed
    assert report["conversion"]["levels"] == 2 and len(report["conversion"]["layers"]) == 19
    snn = load(out)
    x = torch.randn(2, 3, 32, 32)
    assert snn(x).shape == (1, 2, 10)
    assert "agreement 100.00%" in capsys.readouterr().out


def test_convert_digits_reports_accuracy_at_every_step(tmp_path):
    code, out = _convert(
        tmp_path, "--model", "ms_resnet20", "--data", "digits", "--levels", "4", "--max-spikes",
        "1", "--timesteps", "3", "--calibration-images", "32", "--eval-images", "40",
    )  # fmt: skip
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["snn"]["top1_at_t"]) == {"1", "2", "3"}
    assert 0.0 <= report["ann"]["top1"] <= 1.0 and 0.0 <= report["qann"]["top1"] <= 1.0
    assert report["data"]["eval_images"] == 40 and report["conversion"]["max_spikes"] == 1


@pytest.mark.parametrize(
    "argv,culprit",
    [
        (["--model", "no_such_net", "--data", "random"], "--model 'no_such_net'"),
        (["--model", "ms_resnet20", "--data", "random", "--checkpoint", "nope.pth"],
         "--checkpoint nope.pth"),
        (["--model", "ms_resnet20", "--data", "digits", "--num-classes", "7"], "--num-classes 7"),
        (["--model", "ms_resnet20", "--data", "digits", "--in-chans", "3"], "--in-chans 3"),
        (["--model", "ms_resnet20", "--data", "nosuch:x"], "unknown --data spec"),
        (["--model", "ms_resnet20", "--data", "random", "--levels", "0"], "--levels"),
        (["--model", "vit_tiny_patch16_224", "--data", "random"], "layer_norm"),
    ],
)  # fmt: skip
def test_bad_input_names_the_culprit(tmp_path, capsys, argv, culprit):
    code, out = _convert(tmp_path, *argv, "--calibration-images", "4", "--eval-images", "4")
    assert code == 2
    assert culprit in capsys.readouterr().err
    assert not (out / "report.json").exists()


@pytest.mark.parametrize(
    ("parser", "required", "canonical", "alias"),
    [
        (convert.parser, ["--model", "m"], "--output", "--out"),
        (convert.parser, ["--model", "m", "--output", "o"], "--calibration-images",
         "--calib-images"),
        (export.parser, ["dir", "--format", "nir"], "--output", "--out"),
    ],
)  # fmt: skip
def test_flag_aliases_parse_like_the_canonical_names(parser, required, canonical, alias):
    args = parser().parse_args([*required, canonical, "12"])
    assert parser().parse_args([*required, alias, "12"]) == args
    assert str(getattr(args, canonical.removeprefix("--").replace("-", "_"))) == "12"


def test_export_takes_the_nir_output_kind_apart_from_the_output_file():
    args = export.parser().parse_args(["d", "--format", "nir", "--out", "m.nir",
                                       "--nir-output", "spikes"])  # fmt: skip
    assert (str(args.output), args.nir_output) == ("m.nir", "spikes")


def test_export_refuses_the_old_nir_output_spelling(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        export.main([str(tmp_path), "--format", "nir", "--out", "m.nir", "--output", "spikes"])
    assert exit_info.value.code == 2
    assert "--nir-output spikes" in capsys.readouterr().err
    assert not (Path.cwd() / "spikes").exists()


def test_checkpoint_of_another_architecture_or_class_count(tmp_path, capsys):
    ckpt = tmp_path / "resnet32.pth"
    torch.save({"state_dict": timm.create_model("ms_resnet32").state_dict()}, ckpt)
    code, _ = _convert(tmp_path, "--model", "ms_resnet20", "--data", "random",
                       "--checkpoint", str(ckpt))  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and str(ckpt) in err and "unexpected" in err.lower()
    ckpt10 = tmp_path / "resnet20-10.pth"
    torch.save(timm.create_model("ms_resnet20").state_dict(), ckpt10)
    code, _ = _convert(tmp_path, "--model", "ms_resnet20", "--data", "random",
                       "--num-classes", "100", "--checkpoint", str(ckpt10))  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "linear.weight" in err and "100" in err


@pytest.mark.shared_data
def test_pretrained_resnet20_qann_and_snn_agree_on_real_images(need_data):
    from multispike.convert import calibrate, to_snn
    from multispike.zoo import load_checkpoint, pretrained_path

    arrays = np.load(need_data("cifar10/cifar10-full.npz"))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def images(x):
        return (torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255 - mean) / std

    model = load_checkpoint(timm.create_model("ms_resnet20"), pretrained_path("ms_resnet20"))
    calib = images(arrays["train_x"][:256]).split(128)
    qann = calibrate(model.eval(), calib, levels=4, progress=False)
    snn = to_snn(qann, timesteps=1)
    x, y = images(arrays["test_x"][:2000]), torch.from_numpy(arrays["test_y"][:2000]).long()
    with torch.no_grad():
        for chunk in x.split(500):
            assert torch.equal(snn(chunk)[0], qann(chunk))
        ann_acc = (model(x).argmax(1) == y).float().mean()
        qann_acc = (qann(x).argmax(1) == y).float().mean()
    assert ann_acc > 0.9 and qann_acc > 0.5  # calibration only, 4 levels
