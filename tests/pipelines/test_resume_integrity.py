"""A resume depends only on the run folder it is in; damaged or moved files never poison it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from multispike.distill.students import load_student_weights
from multispike.pipelines.cli import main
from multispike.pipelines.folder.checkpoints import verify_checkpoint
from multispike.pipelines.recipes.runner import RecipeError, load_recipe
from multispike.zoo import CheckpointError, load_model

CONFIG = """
model:
  model:
    class_path: multispike.zoo.load_model
    init_args: {model_name: ms_resnet20, num_classes: 10, in_chans: 1}
data:
  class_path: multispike.pipelines.data.DigitsDataModule
  init_args: {batch_size: 64}
trainer: {max_epochs: 2, limit_train_batches: 2, logger: false, enable_progress_bar: false}
checkpoint: {monitor: epoch, mode: min}
"""  # the chosen checkpoint (epoch 0) is not the last one (epoch 1)


def _train(folder: Path, *extra: str) -> int:
    return main([
        "train", "--config", CONFIG, "--checkpoint.dirpath", str(folder / "ckpt"),
        "--save_weights.path", str(folder / "model.safetensors"),
        "--trainer.default_root_dir", str(folder), *extra,
    ])  # fmt: skip


@pytest.mark.usefixtures("one_thread")
def test_a_moved_run_folder_resumes_from_its_own_checkpoints(tmp_path):
    """Lightning records absolute paths; a copied and then moved folder must choose the model
    from its own checkpoints (the old folder is gone), not fall back to the last weights."""
    first = tmp_path / "first"
    assert _train(first) == 0
    moved = Path(shutil.copytree(first, tmp_path / "moved"))
    shutil.rmtree(first)
    (moved / "model.safetensors").unlink()
    assert _train(moved, "--ckpt_path", str(moved / "ckpt" / "last.ckpt")) == 0
    (best,) = (moved / "ckpt").glob("epoch000*.ckpt")
    state = torch.load(best, weights_only=True)["state_dict"]
    ann = load_model("ms_resnet20", checkpoint=str(moved / "model.safetensors"), in_chans=1)
    own = ann.state_dict()
    assert all(torch.equal(own[k.removeprefix("model.")], v) for k, v in state.items())


@pytest.mark.usefixtures("one_thread")
def test_resuming_with_another_length_is_refused_before_training(tmp_path, capsys):
    assert _train(tmp_path) == 0
    last = tmp_path / "ckpt" / "last.ckpt"
    before = last.read_bytes()
    code = _train(tmp_path, "--ckpt_path", str(last), "--trainer.max_epochs", "3")
    assert code == 2
    err = capsys.readouterr().err
    assert "last.ckpt" in err and "laid out for 4 optimizer steps, this one has 6" in err
    assert last.read_bytes() == before


def test_a_damaged_checkpoint_without_its_hash_is_refused(tmp_path):
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {"w": torch.arange(4096.0)}}, path)
    verify_checkpoint(path, load=True)  # intact
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the tensor's bytes
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="last.ckpt is damaged"):
        verify_checkpoint(path)


def test_init_from_a_text_file_is_one_clear_error(tmp_path):
    path = tmp_path / "notes.ckpt"
    path.write_text("not a checkpoint\n")
    with pytest.raises(CheckpointError, match="notes.ckpt: not a readable checkpoint"):
        load_student_weights(torch.nn.Linear(2, 2), path)
    torch.save({"state_dict": [1, 2]}, path)
    with pytest.raises(CheckpointError, match="holds no state dict of tensors"):
        load_student_weights(torch.nn.Linear(2, 2), path)


def test_a_local_file_never_shadows_a_shipped_recipe(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("digits").write_text("description: not the shipped one\ntrain: {}\n")
    Path("mine").write_text("description: mine\n")
    assert load_recipe("digits", tmp_path / "run").description != "not the shipped one"
    assert load_recipe("./digits", tmp_path / "run").description == "not the shipped one"
    with pytest.raises(RecipeError, match=r"to run the file 'mine' here, pass \./mine"):
        load_recipe("mine", tmp_path / "run")
