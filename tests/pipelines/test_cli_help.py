"""What a newcomer reads: help that fits a screen, "did you mean", versions, offline errors."""

from __future__ import annotations

import urllib.error

import pytest

from multispike.pipelines.cli import COMMANDS, main
from multispike.pipelines.help import compact_help, did_you_mean, explain, plain


@pytest.mark.parametrize("command", list(COMMANDS))
def test_help_fits_a_screen_in_plain_text(command, capsys):
    assert main([command, "--help"]) == 0
    text = capsys.readouterr().out
    assert len(text.splitlines()) <= 150, command
    assert "``" not in text and ":func:" not in text and ":class:" not in text
    assert "known subclasses" not in text
    assert "--help full" in text


def test_the_calibration_options_read_the_same_in_every_command(capsys, monkeypatch):
    """``convert`` and ``avalanche`` list them as flat flags with the text of
    :class:`~multispike.convert.CalibrationOptions`; ``distill`` nests them in ``--model``."""
    from multispike.pipelines.help import FULL_HELP_VAR

    monkeypatch.delenv(FULL_HELP_VAR, raising=False)
    for command in ("convert", "avalanche"):
        assert main([command, "--help"]) == 0
        text = capsys.readouterr().out
        assert "--calibration {percentile,mse,reconstruct}" in text, command
        assert "optimiser steps per block for calibration=reconstruct" in text, command
    assert main(["distill", "--help"]) == 0
    assert "--model.calibration CALIBRATION" in capsys.readouterr().out


def test_help_full_keeps_every_trainer_option(capsys):
    assert main(["train", "--help", "full"]) == 0
    text = capsys.readouterr().out
    assert "--trainer.gradient_clip_val" in text and len(text.splitlines()) > 500


def test_compact_help_keeps_the_default_and_the_first_sentence():
    text = (
        "usage: x\n\noptions:\n  --levels LEVELS       ``L``, levels. More detail here.\n"
        "                        (type: int, default: 4)\n"
    )
    out = compact_help(text, "multispike x")
    assert "  --levels LEVELS       L, levels. [default: 4]" in out
    assert plain(":func:`multispike.convert.calibrate`") == "multispike.convert.calibrate"


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["convert", "--level", "4"], "--level: did you mean --levels?"),
        (["evaluate", "--timestep", "2"], "did you mean --timesteps"),
        (["train", "--modle.lr", "3"], "did you mean --model.lr"),
        (
            ["distill", "--data", "CIFAR10Datamodule"],
            "--data CIFAR10Datamodule: no such DataModule (did you mean CIFAR10DataModule?); "
            "known: CIFAR10DVSDataModule, CIFAR10DataModule,",
        ),
        (
            ["distill", "--data", "CIFAR10DataModule", "--data.batchsize", "64"],
            "--data.batchsize: CIFAR10DataModule has no option 'batchsize' (did you mean "
            "--data.batch_size?)",
        ),
        (["train", "--data.batch_size", "64"], "--data.batch_size: name the class first"),
        (
            ["train", "--model.model", "multispike.zoo.load_model", "--model.model.modelname", "x"],
            "load_model has no option 'modelname' (did you mean --model.model.model_name?)",
        ),
        (["distill", "--trainer.precision", "bf17"], "bf16-mixed, 32-true"),
        (
            ["train", "--model.model", "ms_resnet20"],
            "--model.model ms_resnet20: a network is given by its loader, --model.model "
            "multispike.zoo.load_model --model.model.model_name ms_resnet20",
        ),
        (
            ["convert", "--model", "ms_resnet20", "--residual", "sparce"],
            "--residual sparce: must be one of sparse, sew, analog (did you mean sparse?)",
        ),
        (
            ["convert", "--model", "ms_resnet20", "--calibration", "MSE"],
            "--calibration MSE: must be one of percentile, mse, reconstruct (did you mean mse?)",
        ),
    ],
)
def test_a_misspelt_option_gets_the_closest_names(argv, hint, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert hint in err and len(err.strip().splitlines()) == 2  # the error and where help is


def test_explain_leaves_what_it_does_not_recognise_to_jsonargparse():
    assert explain('Parser key "data":\n  Expected a dot import path string: \n') is None
    nested = 'Parser key "model.stages":\n  Expected a typing.Literal[\'qann\', \'snn\']'
    assert explain(nested + "\n  Given value: [{'student': 'snx'}]") is None


def test_did_you_mean_reads_keys_of_config_errors():
    hint = did_you_mean("Key 'levle' is not expected", ["--levels", "--output"])
    assert hint == " (--levle: did you mean --levels?)"
    hint = did_you_mean(
        "Group 'trainer' does not accept option 'max_epoch'", ["--trainer.max_epochs", "--output"]
    )
    assert hint == " (--trainer.max_epoch: did you mean --trainer.max_epochs?)"


def test_version_names_the_libraries_that_matter(capsys):
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("multispike ") and "torch " in out and "lightning " in out


def test_offline_pretrained_weights_are_one_line_naming_checkpoint(monkeypatch, tmp_path):
    """No local copy and no network: the error says what to pass instead of a traceback."""
    import timm

    from multispike.zoo import load_model

    def offline(*args, **kwargs):
        if kwargs.get("pretrained"):
            raise urllib.error.URLError("Name or service not known")
        return real(*args, **kwargs)

    real = timm.create_model
    monkeypatch.setattr(timm, "create_model", offline)
    monkeypatch.setenv("MULTISPIKE_DATA", str(tmp_path))  # an empty data folder
    with pytest.raises(FileNotFoundError, match="--checkpoint FILE") as err:
        load_model("ms_resnet20", pretrained=True)
    assert "MULTISPIKE_DATA" in str(err.value) and "\n" not in str(err.value)
