"""``multispike convert``: outputs, the real pretrained ResNet-20, a checkpoint that never
downloads, and errors that name the flag."""

import functools
import json
import re
import socket

import numpy as np
import pytest
import timm
import torch
import yaml

from multispike import zoo  # noqa: F401  (registers ms_* models)
from multispike.convert import CalibrationOptions
from multispike.pipelines.cli import main
from multispike.pipelines.folder import load

RANDOM = ["--data", "RandomDataModule", "--data.num_samples", "16", "--data.batch_size", "8"]
DIGITS = ["--data", "DigitsDataModule"]


def _convert(tmp_path, *extra):
    out = tmp_path / "out"
    code = main(["convert", "--output", str(out), "--progress", "false", *extra])
    return code, out


def test_convert_random_writes_model_and_report(tmp_path, capsys):
    code, out = _convert(
        tmp_path, "--model", "ms_resnet20", *RANDOM, "--levels", "2", "--max_spikes", "2",
        "--calibration_images", "16",
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
    captured = capsys.readouterr()
    assert "agreement 100.00 %" in captured.out
    assert "RandomDataModule" in captured.err and "mean nothing" in captured.err


def test_convert_digits_reports_validation_accuracy_at_every_step(tmp_path):
    code, out = _convert(
        tmp_path, "--model", "ms_resnet20", *DIGITS, "--levels", "4", "--max_spikes", "1",
        "--timesteps", "3", "--calibration_images", "32", "--eval_images", "40",
    )  # fmt: skip
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["snn"]["top1_at_t"]) == {"1", "2", "3"}
    assert 0.0 <= report["ann"]["top1"] <= 1.0 and 0.0 <= report["qann"]["top1"] <= 1.0
    assert report["data"] == {"datamodule": "DigitsDataModule", "split": "val", "eval_images": 40}
    assert report["conversion"]["max_spikes"] == 1


def test_a_given_checkpoint_converts_with_the_network_off(tmp_path, monkeypatch):
    ckpt = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18", num_classes=10, in_chans=1).state_dict(), ckpt)

    def refuse(*args, **kwargs):
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    code, out = _convert(
        tmp_path, "--model", "resnet18", "--pretrained", "true", "--checkpoint", str(ckpt),
        *DIGITS, "--data.image_size", "32", "--calibration_images", "16", "--eval_images", "8",
    )  # fmt: skip
    assert code == 0 and (out / "config.json").is_file()


@pytest.mark.parametrize(
    "argv,culprit",
    [
        (["--model", "no_such_net", *RANDOM], "'no_such_net' is not a timm model"),
        (["--model", "ms_resnet20", *RANDOM, "--checkpoint", "nope.pth"], "nope.pth"),
        (["--model", "ms_resnet20", *DIGITS, "--num_classes", "7"], "--num_classes 7"),
        (["--model", "ms_resnet20", *DIGITS, "--in_chans", "3"], "--in_chans 3"),
        (["--model", "ms_resnet20", "--data", "NoSuchDataModule"], "NoSuchDataModule"),
        (["--model", "ms_resnet20", *RANDOM, "--levels", "0"], "--levels"),
        (["--model", "ms_resnet20", *RANDOM, "--levls", "2"], "--levls"),
        (["--model", "vit_tiny_patch16_224", *RANDOM], "layer_norm"),
    ],
)  # fmt: skip
def test_bad_input_names_the_culprit(tmp_path, capsys, argv, culprit):
    code, out = _convert(tmp_path, *argv, "--calibration_images", "4", "--eval_images", "4")
    assert code == 2
    assert culprit in capsys.readouterr().err
    assert not (out / "report.json").exists()


def test_checkpoint_of_another_architecture_or_class_count(tmp_path, capsys):
    ckpt = tmp_path / "resnet32.pth"
    torch.save({"state_dict": timm.create_model("ms_resnet32").state_dict()}, ckpt)
    code, _ = _convert(tmp_path, "--model", "ms_resnet20", *RANDOM, "--checkpoint", str(ckpt))
    err = capsys.readouterr().err
    assert code == 2 and str(ckpt) in err and "unexpected" in err.lower()
    ckpt10 = tmp_path / "resnet20-10.pth"
    torch.save(timm.create_model("ms_resnet20").state_dict(), ckpt10)
    code, _ = _convert(tmp_path, "--model", "ms_resnet20", *RANDOM, "--data.num_classes", "100",
                       "--checkpoint", str(ckpt10))  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "linear.weight" in err and "100" in err


def test_export_writes_onnx_and_refuses_nir_of_a_qann(tmp_path, capsys):
    code, out = _convert(tmp_path, "--model", "ms_resnet20", *RANDOM, "--calibration_images", "8")
    assert code == 0
    onnx_file = tmp_path / "m.onnx"
    assert main(["export", "--model_dir", str(out), "--format", "onnx", "--output",
                 str(onnx_file)]) == 0  # fmt: skip
    assert onnx_file.is_file()
    from multispike.pipelines import save

    save(load(out, kind="qann"), tmp_path / "qann", model_name="ms_resnet20")
    argv = ["export", "--model_dir", str(tmp_path / "qann"), "--format", "nir", "--output",
            str(tmp_path / "q.nir")]  # fmt: skip
    assert main(argv) == 2
    assert "holds a quantized ANN" in capsys.readouterr().err


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


@pytest.mark.parametrize("channels_last", ["false", "true"])
def test_reconstruct_calibration_writes_the_usual_report_and_stays_exact(tmp_path, channels_last):
    code, out = _convert(
        tmp_path, "--model", "ms_resnet20", *DIGITS, "--levels", "2", "--calibration",
        "reconstruct", "--reconstruct_iterations", "3", "--calibration_images", "32",
        "--eval_images", "32", "--data.channels_last", channels_last,
    )  # fmt: skip
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["calibration"]["method"] == "reconstruct"
    assert report["snn"]["agreement_with_qann"] == 1.0 and report["snn"]["max_abs_logit_diff"] == 0
    assert 0.0 <= report["qann"]["top1"] <= 1.0


def test_a_pretrained_head_of_other_classes_is_refused_naming_the_folder(tmp_path, capsys):
    from PIL import Image

    root = tmp_path / "imagenet"
    for split in ("train", "val"):
        for name in ("a", "b", "c"):
            (root / split / name).mkdir(parents=True)
            Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / split / name / "0.png")
    data = ["--data", "ImageFolderDataModule", "--data.path", str(root), "--data.image_size", "8"]
    code, out = _convert(tmp_path, "--model", "ms_resnet20", "--pretrained", "true", *data)
    err = capsys.readouterr().err
    assert code == 2 and str(root) in err and "3 classes" in err and "trained on 10" in err
    assert "--num_classes 3" in err and not out.exists()


# the flags of `multispike convert` before the calibration options became one object (issue 46)
CONVERT_FLAGS = [
    "--model", "--data", "--output", "--checkpoint", "--pretrained", "--num_classes",
    "--in_chans", "--levels", "--max_spikes", "--timesteps", "--per_channel", "--calibration",
    "--percentile", "--calibration_images", "--reconstruct_iterations", "--residual",
    "--eval_images", "--trainer.accelerator", "--trainer.devices", "--trainer.num_nodes",
    "--trainer.strategy", "--progress",
]  # fmt: skip


def _called_with(monkeypatch, module, name: str, argv: list[str]) -> dict:
    """The keyword arguments ``module.main(argv)`` calls the command function ``name`` with."""
    command, seen = getattr(module, name), {}

    @functools.wraps(command)
    def record(**kwargs):
        seen.update(kwargs)

    monkeypatch.setattr(module, name, record)
    assert module.main(argv) == 0
    return seen


def test_calibration_flags_stay_flat_and_build_one_options_object(tmp_path, monkeypatch, capsys):
    from multispike.pipelines.commands import convert as command
    from multispike.pipelines.help import FULL_HELP_VAR

    monkeypatch.delenv(FULL_HELP_VAR, raising=False)  # the compact help
    assert main(["convert", "--help"]) == 0
    flags = re.findall(r"^  (--[\w.]+)", capsys.readouterr().out, flags=re.M)
    assert set(flags) == {*CONVERT_FLAGS, "--config", "--print_config", "--trainer"}
    argv = ["--model", "ms_resnet20", *RANDOM, "--output", str(tmp_path / "out"),
            "--levels", "2", "--calibration", "reconstruct"]  # fmt: skip
    seen = _called_with(monkeypatch, command, "convert", argv)
    assert seen["calibration"] == CalibrationOptions(levels=2, calibration="reconstruct")
    assert "levels" not in seen and seen["timesteps"] == 1
    printed = yaml.safe_load(command.config([*argv, "--reconstruct_iterations", "7"]))
    assert printed["levels"] == 2 and printed["calibration"] == "reconstruct"
    assert printed["reconstruct_iterations"] == 7 and printed["percentile"] == 99.9
    assert main(["convert", *argv, "--calibration", "max"]) == 2  # refused by the parser
    assert "calibration" in capsys.readouterr().err
