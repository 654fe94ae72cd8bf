"""``multispike run``: the digits recipe end to end (shrunk), restarts, failures, bad configs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from multispike.pipelines.commands import demo
from multispike.pipelines.commands import run as run_command
from multispike.pipelines.run import (
    STAGES,
    RecipeError,
    StageError,
    load_recipe,
    recipe_names,
    run,
)
from multispike.pipelines.serialize import load

# The digits recipe, shrunk to seconds: ~150 training images, one short epoch per training
# stage, one test batch.
SHRUNK = [
    "data.options.batch_size=32",
    "data.options.test_fraction=0.9",
    "data.options.val_size=32",
    "teacher.max_epochs=1",
    "calibrate.images=32",
    "distill.qat_epochs=1",
    "distill.max_epochs=1",
    "distill.limit_train_batches=1",
    "distill.limit_val_batches=1",
    "evaluate.max_batches=1",
    "evaluate.binary_timesteps=2",
]
NAMES = [stage.name for stage in STAGES]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A run directory of the shrunk digits recipe, run once for the whole module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("digits") / "run"
        result = run(load_recipe("digits", SHRUNK), out, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert [result["stages"][n]["status"] for n in NAMES] == ["ran"] * len(NAMES)
    return out


@pytest.fixture
def copy_of(finished, tmp_path) -> Path:
    return Path(shutil.copytree(finished, tmp_path / "run"))


def _mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_demo_recipe_runs_end_to_end(finished):
    metrics = json.loads((finished / "metrics.json").read_text())
    for group in ("ann", "qann"):
        assert 0.0 <= metrics[group]["top1"] <= 1.0
    snn = metrics["snn"]
    assert set(snn["top1_at_t"]) == {"1"}  # the recipe's T = 1
    # N = L and T = 1: the SNN computes exactly its QANN
    assert snn["agreement_with_qann"] == 1.0
    assert snn["max_abs_logit_diff"] == 0.0
    assert snn["top1_at_t"]["1"] == metrics["qann"]["top1"]
    assert metrics["binary"]["max_spikes"] == 1 and metrics["binary"]["timesteps"] == 2
    assert set(metrics["calibrated"]) >= {"qann_top1", "snn_top1_at_t"}
    files = [
        "config.yaml",
        "summary.txt",
        "evaluate/report.md",
        "export/model.onnx",
        "teacher/model.safetensors",
        "convert/report.json",
        "distill/checkpoints/last.ckpt",
    ]
    for path in files:
        assert (finished / path).is_file(), path
    assert "SNN, final" in (finished / "summary.txt").read_text()
    # the saved fine-tuned SNN and QANN reload and agree bit for bit at T = 1
    snn_model, qann = load(finished / "distill" / "snn"), load(finished / "distill" / "qann")
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(snn_model(x)[0], qann(x))


@pytest.mark.slow
def test_restarted_run_skips_finished_stages(copy_of):
    before = _mtimes(copy_of)
    result = run(load_recipe("digits", SHRUNK), copy_of, progress=False)
    assert [result["stages"][n]["status"] for n in NAMES] == ["done before"] * len(NAMES)
    after = _mtimes(copy_of)
    changed = {k for k in before if before[k] != after[k]}
    assert changed <= {"config.yaml", "summary.txt"}, changed


@pytest.mark.slow
def test_changed_section_reruns_that_stage_and_later_ones(copy_of):
    snn_file = copy_of / "distill" / "snn" / "model.safetensors"
    before = snn_file.stat().st_mtime_ns
    changed = [*SHRUNK, "evaluate.binary_timesteps=1", "export.formats=[]"]
    result = run(load_recipe("digits", changed), copy_of, progress=False)
    status = {n: result["stages"][n]["status"] for n in NAMES}
    assert status == {"teacher": "done before", "calibrate": "done before",
                      "convert": "done before", "distill": "done before",
                      "evaluate": "ran", "export": "ran"}  # fmt: skip
    assert snn_file.stat().st_mtime_ns == before
    assert json.loads((copy_of / "metrics.json").read_text())["binary"]["timesteps"] == 1


@pytest.mark.slow
def test_residual_rewiring_stage(copy_of):
    result = run(load_recipe("digits", [*SHRUNK, "convert.residual=sew"]), copy_of, progress=False)
    assert result["stages"]["calibrate"]["status"] == "done before"
    assert result["stages"]["convert"]["status"] == "ran"
    config = json.loads((copy_of / "distill" / "snn" / "config.json").read_text())
    assert config["transforms"] == [{"name": "residual", "mode": "sew"}]
    metrics = json.loads((copy_of / "metrics.json").read_text())
    assert metrics["snn"]["agreement_with_qann"] == 1.0  # still exact at T = 1, N = L


@pytest.mark.slow
def test_failed_stage_names_itself_and_keeps_earlier_outputs(copy_of):
    with pytest.raises(StageError, match="stage 'evaluate' failed.*no batch"):
        run(load_recipe("digits", [*SHRUNK, "evaluate.max_batches=0"]), copy_of, progress=False)
    for stage in ("teacher", "calibrate", "convert", "distill"):
        assert (copy_of / stage / "done.json").is_file()
    assert not (copy_of / "evaluate" / "done.json").exists()


@pytest.mark.slow
def test_demo_command_reports_a_finished_run(copy_of, capsys):
    assert demo.main(["--output", str(copy_of), "--no-progress", *SHRUNK]) == 0
    out = capsys.readouterr().out
    assert "done before" in out and "SNN, final" in out


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("distill.max_epoch=1", "'distill.max_epoch'"),
        ("calibrate.levels=four", "calibrate.levels"),
        ("convert.residual=dense", "convert.residual"),
        ("export.formats=[onnx, tflite]", "export.formats[1]"),
        ("modle.name=resnet18", "'modle'"),
        ("distill.lr", "key.sub=value"),
        ("seed.value=1", "'seed' is not a section"),
    ],
)
def test_broken_override_names_the_key(override, named):
    with pytest.raises(RecipeError, match=named.replace("[", r"\[").replace("]", r"\]")):
        load_recipe("digits", [override])


def test_broken_recipe_file_names_the_key(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(
        "name: mine\nmodel: {name: ms_resnet20}\ncalibrate: {levels: 4, percentil: 99}\n"
    )
    with pytest.raises(RecipeError, match="'calibrate.percentil'.*percentile"):
        load_recipe(path)
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe(tmp_path / "missing.yaml")
    with pytest.raises(RecipeError, match="unknown recipe 'digitz'.*digits"):
        load_recipe("digitz")


def test_cli_reports_a_broken_config_with_exit_code_2(capsys):
    assert run_command.main(["--recipe", "digits", "--dry-run", "distill.max_epoch=1"]) == 2
    assert "'distill.max_epoch'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("prog", "required"), [("multispike run", ["--recipe", "digits"]), ("multispike demo", [])]
)
def test_out_is_an_alias_of_output(prog, required):
    parser = run_command.parser(prog, recipe=bool(required))
    args = parser.parse_args([*required, "--output", "runs/x", "calibrate.levels=8"])
    assert parser.parse_args([*required, "--out", "runs/x", "calibrate.levels=8"]) == args
    assert args.output == Path("runs/x") and args.overrides == ["calibrate.levels=8"]


def test_overrides_reach_the_config():
    config = load_recipe("digits", ["calibrate.levels=8", "evaluate.sweep=[1x4]", "seed=3"])
    assert config.calibrate.levels == 8 and config.evaluate.sweep == ["1x4"] and config.seed == 3
    assert config.distill.lr == 0.001  # from the recipe file
    # Lightning reads an int as a batch count and a float as a fraction: keep the type
    limits = load_recipe(
        "digits", ["distill.limit_train_batches=2", "distill.limit_val_batches=0.5"]
    )
    assert type(limits.distill.limit_train_batches) is int
    assert limits.distill.limit_val_batches == 0.5


def test_shipped_recipes_validate_in_a_dry_run(tmp_path):
    assert set(recipe_names()) >= {
        "digits", "cifar10-resnet20", "cifar10-vgg16", "nmnist", "imagenet-resnet18",
    }  # fmt: skip
    for name in recipe_names():
        result = run(load_recipe(name), tmp_path / name, dry_run=True, progress=False)
        assert {s["status"] for s in result["stages"].values()} == {"would run"}, name
        assert not (tmp_path / name).exists()  # a dry run writes nothing


def test_dry_run_rejects_an_unregistered_model(tmp_path):
    with pytest.raises(RecipeError, match="model.name: 'no_such_net'"):
        run(load_recipe("digits", ["model.name=no_such_net"]), tmp_path, dry_run=True)
