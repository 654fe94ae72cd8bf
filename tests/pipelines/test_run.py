"""``multispike run``: the digits recipe end to end (shrunk), restarts, failures, bad configs,
and that every stage is exactly its command run on ``<run>/<stage>/config.yaml``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from multispike.pipelines.cli import main as cli
from multispike.pipelines.commands import run as run_command
from multispike.pipelines.folder import load
from multispike.pipelines.recipes.runner import (
    STAGES,
    RecipeError,
    StageError,
    load_recipe,
    recipe_names,
    run,
    split_overrides,
)

RECIPES = Path(__file__).resolve().parents[2] / "pipelines" / "recipes"
# The digits recipe, shrunk to seconds: ~150 training digits, a couple of batches per epoch.
SHRUNK = {
    "train": ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3"],
    "convert": ["--calibration_images", "32", "--eval_images", "32"],
    "distill": [
        "--trainer.max_epochs",
        "2",
        "--trainer.limit_train_batches",
        "1",
        "--model.stages",
        "[{student: qann, epochs: 1}, {student: snn}]",
    ],  # fmt: skip
    "evaluate": ["--eval_images", "32", "--binary_timesteps", "2"],
}


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    """The shipped digits recipe with a smaller data split (one anchor feeds every stage)."""
    text = (RECIPES / "digits.yaml").read_text()
    small = "init_args: {batch_size: 32, test_fraction: 0.9, val_size: 32}"
    assert text.count("init_args: {batch_size: 64}") == 1
    path = tmp_path_factory.mktemp("recipe") / "digits.yaml"
    path.write_text(text.replace("init_args: {batch_size: 64}", small))
    return path


@pytest.fixture(scope="module")
def finished(recipe, tmp_path_factory) -> Path:
    """A run directory of the shrunk digits recipe, run once for the whole module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("digits") / "run"
        result = run(recipe, out, SHRUNK, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert [s["status"] for s in result["stages"].values()] == ["ran"] * len(STAGES)
    return out


@pytest.fixture
def copy_of(finished, tmp_path) -> Path:
    """A copy of the finished run: a moved run directory resumes where it was."""
    return Path(shutil.copytree(finished, tmp_path / "run"))


def _mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_demo_recipe_runs_end_to_end(finished):
    metrics = json.loads((finished / "evaluate" / "metrics.json").read_text())
    for group in ("ann", "qann"):
        assert 0.0 <= metrics[group]["top1"] <= 1.0
    snn = metrics["snn"]
    assert set(snn["top1_at_t"]) == {"1"}  # the recipe's T = 1
    # N = L and T = 1: the SNN computes exactly its QANN
    assert snn["agreement_with_qann"] == 1.0 and snn["max_abs_logit_diff"] == 0.0
    assert snn["top1_at_t"]["1"] == metrics["qann"]["top1"] and snn["images"] == 32
    assert metrics["binary"]["max_spikes"] == 1 and metrics["binary"]["timesteps"] == 2
    for path in ("train/model.safetensors", "convert/report.json", "convert/config.json",
                 "distill/checkpoints/last.ckpt", "distill/student/config.json",
                 "evaluate/report.md", "export/model.onnx"):  # fmt: skip
        assert (finished / path).is_file(), path
    for stage in STAGES:  # each stage's exact --config, and its record
        assert (finished / stage / "config.yaml").is_file()
        assert json.loads((finished / stage / "done.json").read_text())["hash"]
    # the validation split, not the test split, is in the convert report
    assert json.loads((finished / "convert" / "report.json").read_text())["data"]["split"] == "val"
    student = load(finished / "distill" / "student")
    qann = load(finished / "distill" / "student", kind="qann")
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(student(x)[0], qann(x))


@pytest.mark.slow
def test_restarted_run_skips_finished_stages(copy_of, recipe):
    before = _mtimes(copy_of)
    result = run(recipe, copy_of, SHRUNK, progress=False)
    assert [s["status"] for s in result["stages"].values()] == ["done before"] * len(STAGES)
    assert _mtimes(copy_of) == before


@pytest.mark.slow
def test_changed_section_reruns_that_stage_and_later_ones(copy_of, recipe):
    changed = {**SHRUNK, "evaluate": [*SHRUNK["evaluate"], "--binary_timesteps", "1"]}
    snn_file = copy_of / "distill" / "student" / "model.safetensors"
    before = snn_file.stat().st_mtime_ns
    result = run(recipe, copy_of, changed, progress=False)
    status = {n: s["status"] for n, s in result["stages"].items()}
    assert status == {"train": "done before", "convert": "done before",
                      "distill": "done before", "evaluate": "ran", "export": "ran"}  # fmt: skip
    assert snn_file.stat().st_mtime_ns == before
    metrics = json.loads((copy_of / "evaluate" / "metrics.json").read_text())
    assert metrics["binary"]["timesteps"] == 1
    old = json.loads((copy_of / "evaluate.previous" / "metrics.json").read_text())
    assert old["binary"]["timesteps"] == 2  # the replaced outputs are kept aside, not deleted


@pytest.mark.slow
def test_the_distill_stage_is_a_plain_distill_config(finished, tmp_path):
    """What the runner ran is exactly `multispike distill --config <run>/distill/config.yaml`."""
    config = finished / "distill" / "config.yaml"
    text = config.read_text()
    assert "class_path: multispike.pipelines.load" in text
    code = cli([
        "distill", "--config", str(config), "--trainer.max_epochs", "1",
        "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path),
        "--checkpoint.dirpath", str(tmp_path / "ckpt"),
        "--save_student.dirpath", str(tmp_path / "student"),
        "--model.stages", "[{student: snn}]",
    ])  # fmt: skip
    assert code == 0
    assert load(tmp_path / "student").timesteps == 1


@pytest.mark.slow
def test_failed_stage_names_itself_and_keeps_earlier_outputs(copy_of, recipe, capsys):
    broken = {**SHRUNK, "evaluate": ["--eval_images", "0"]}
    with pytest.raises(StageError, match="stage 'evaluate' failed.*exited with 2"):
        run(recipe, copy_of, broken, progress=False)
    assert "--eval_images must be >= 1, got 0" in capsys.readouterr().err
    for stage in ("train", "convert", "distill"):
        assert (copy_of / stage / "done.json").is_file()
    assert not (copy_of / "evaluate" / "done.json").exists()


@pytest.mark.slow
def test_run_command_reports_a_finished_run(copy_of, recipe, capsys):
    argv = ["--recipe", str(recipe), "--output", str(copy_of), "--progress", "false"]
    for stage, options in SHRUNK.items():
        argv += [f"--{stage}.{arg[2:]}" if arg.startswith("--") else arg for arg in options]
    assert run_command.main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("done before") == len(STAGES) and str(copy_of) in out


def test_overrides_split_per_stage_in_the_commands_syntax():
    own, stages = split_overrides([
        "--recipe", "digits", "--convert.levels", "8", "--distill.trainer.max_epochs=2",
        "--output", "runs/x", "--evaluate.sweep", "[1x4, 2x2]", "--dry_run", "true",
    ])  # fmt: skip
    assert own == ["--recipe", "digits", "--output", "runs/x", "--dry_run", "true"]
    assert stages == {
        "convert": ["--levels", "8"],
        "distill": ["--trainer.max_epochs", "2"],
        "evaluate": ["--sweep", "[1x4, 2x2]"],
    }


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"distill": ["--trainer.max_epoch", "1"]}, r"section 'distill'.*--trainer\.max_epoch"),
        ({"convert": ["--levels", "four"]}, r"section 'convert'.*levels"),
        ({"convert": ["--residual", "dense"]}, r"section 'convert'.*residual"),
        ({"export": ["--format", "tflite"]}, r"section 'export'.*format"),
        ({"convert": ["--percentil", "99"]}, r"section 'convert'.*--percentil"),
    ],
)
def test_a_misspelt_key_or_bad_value_is_named(tmp_path, overrides, named):
    with pytest.raises(RecipeError, match=named):
        run("digits", tmp_path, overrides, dry_run=True, progress=False)


def test_broken_recipe_files_are_named(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("convert: {model: ms_resnet20, levels: 4, percentil: 99}\n")
    with pytest.raises(RecipeError, match="section 'convert'.*percentil"):
        run(path, tmp_path / "run", dry_run=True, progress=False)
    path.write_text(f'convert: !!python/object/apply:os.system ["touch {tmp_path}/pwned"]\n')
    with pytest.raises(RecipeError, match=r"YAML \(line 1, column 10\): could not") as err:
        load_recipe(path, tmp_path)
    assert "\n" not in str(err.value) and not (tmp_path / "pwned").exists()  # safe_load
    path.write_text("modle: {name: resnet18}\n")
    with pytest.raises(RecipeError, match=r"unknown section\(s\) \['modle'\]"):
        load_recipe(path, tmp_path)
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe(tmp_path / "missing.yaml", tmp_path)
    with pytest.raises(RecipeError, match=r"unknown recipe 'digitz' \(did you mean digits\?\)"):
        load_recipe("digitz", tmp_path)
    with pytest.raises(RecipeError, match="stage\\(s\\) \\['train'\\]"):
        run("cifar10-resnet20", tmp_path, {"train": ["--trainer.max_epochs", "1"]}, dry_run=True)


def test_cli_reports_a_bad_override_with_exit_code_2(capsys):
    argv = ["--recipe", "digits", "--dry_run", "true", "--distill.trainer.max_epoch", "1"]
    assert run_command.main(argv) == 2
    assert "--trainer.max_epoch" in capsys.readouterr().err
    assert run_command.main(["--recipe", "digits", "--modle.name", "x"]) == 2
    assert "--modle.name" in capsys.readouterr().err


def test_shipped_recipes_validate_in_a_dry_run(tmp_path):
    assert set(recipe_names()) >= {
        "digits", "cifar10-resnet20", "cifar10-vgg16", "nmnist", "imagenet-resnet18",
        "imagenet-resnet50",
    }  # fmt: skip
    for name in recipe_names():
        result = run(name, tmp_path / name, dry_run=True, progress=False)
        assert {s["status"] for s in result["stages"].values()} == {"would run"}, name
        for stage, record in result["stages"].items():  # ${run} resolved, valid YAML
            assert "${run}" not in record["config"], (name, stage)
            assert isinstance(yaml.safe_load(record["config"]), dict)
        assert not (tmp_path / name).exists()  # a dry run writes nothing


def test_a_dry_run_names_the_data_a_stage_would_not_find(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MULTISPIKE_DATA", str(tmp_path / "typo"))
    result = run("cifar10-airbench", tmp_path / "run", dry_run=True, progress=False)
    problems = {stage: record.get("problem") for stage, record in result["stages"].items()}
    assert problems.pop("export") is None  # no data
    assert all("MULTISPIKE_DATA=" in p and "is not a folder" in p for p in problems.values())
    assert run("digits", tmp_path / "d", dry_run=True, progress=False)["stages"]["train"].get(
        "problem"
    ) is None  # bundled with scikit-learn: always there
    argv = ["--recipe", "cifar10-airbench", "--dry_run", "true", "--output", str(tmp_path / "r")]
    assert run_command.main(argv) == 0  # a dry run reports, it does not fail
    assert "warning: stage convert: CIFAR10 not found" in capsys.readouterr().err
    assert not (tmp_path / "run").exists() and not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "env,manager",
    [({}, True), ({"LOCAL_RANK": "0", "NODE_RANK": "0"}, True), ({"LOCAL_RANK": "1"}, False),
     ({"LOCAL_RANK": "0", "NODE_RANK": "1"}, False), ({"SLURM_PROCID": "3"}, False)],
)  # fmt: skip
def test_only_the_first_process_keeps_the_run_folders_books(monkeypatch, env, manager):
    from multispike.pipelines.recipes.runner import manages_run_folder

    for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert manages_run_folder() is manager


@pytest.mark.slow
def test_another_process_runs_a_stage_without_touching_the_books(copy_of, recipe, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")  # as in a process a distributed stage launched
    changed = {**SHRUNK, "evaluate": [*SHRUNK["evaluate"], "--binary_timesteps", "1"]}
    books = ["evaluate/config.yaml", "evaluate/started.json", "evaluate/done.json"]
    before = {name: (copy_of / name).read_text() for name in books}
    result = run(recipe, copy_of, changed, progress=False)
    assert result["stages"]["evaluate"]["status"] == "ran"
    assert {name: (copy_of / name).read_text() for name in books} == before


@pytest.mark.slow
def test_a_stage_whose_outputs_changed_runs_again(copy_of, recipe, capsys):
    """done.json lists the SHA-256 of what a stage wrote: a deleted or edited output makes
    the stage (and those after it) run again instead of being trusted."""
    (copy_of / "evaluate" / "report.md").unlink()
    result = run(recipe, copy_of, SHRUNK, progress=False)
    status = {n: s["status"] for n, s in result["stages"].items()}
    assert status["distill"] == "done before" and status["evaluate"] == "ran"
    assert (copy_of / "evaluate" / "report.md").is_file()
    assert "report.md deleted" in capsys.readouterr().err
