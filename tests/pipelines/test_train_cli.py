"""``multispike train``: an ANN trained from scratch, its chosen weights saved for the rest."""

from __future__ import annotations

import pytest
import torch

from multispike.pipelines.cli import main
from multispike.zoo import load_model

CONFIG = """
model:
  model:
    class_path: multispike.zoo.load_model
    init_args: {model_name: ms_resnet20, num_classes: 10, in_chans: 1}
  lr: 0.05
data:
  class_path: multispike.distill.data.DigitsDataModule
  init_args: {batch_size: 64}
trainer: {max_epochs: 2, limit_train_batches: 3, logger: false, enable_progress_bar: false}
"""


@pytest.mark.usefixtures("one_thread")
def test_train_saves_the_weights_chosen_on_validation(tmp_path, capsys):
    weights = tmp_path / "ann.safetensors"
    argv = ["train", "--config", CONFIG, "--save_weights.path", str(weights),
            "--checkpoint.dirpath", str(tmp_path / "ckpt"),
            "--trainer.default_root_dir", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    assert "chosen on the validation split: val/top1" in capsys.readouterr().out
    ann = load_model("ms_resnet20", checkpoint=str(weights), num_classes=10, in_chans=1)
    best = sorted((tmp_path / "ckpt").glob("epoch*.ckpt"))
    assert len(best) == 1
    state = torch.load(best[0], weights_only=True)["state_dict"]
    own = ann.state_dict()
    assert all(torch.equal(own[k.removeprefix("model.")], v) for k, v in state.items())


@pytest.mark.usefixtures("one_thread")
def test_last_ckpt_is_the_last_epoch_not_the_best(tmp_path):
    """A resume continues where the fit stopped: last.ckpt holds the final epoch even when
    the chosen (best) checkpoint is an earlier one."""
    argv = ["train", "--config", CONFIG, "--trainer.max_epochs", "3",
            "--checkpoint.monitor", "epoch", "--checkpoint.mode", "min",  # best = epoch 0
            "--checkpoint.dirpath", str(tmp_path / "ckpt"),
            "--trainer.default_root_dir", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    (best,) = (tmp_path / "ckpt").glob("epoch*.ckpt")
    assert torch.load(best, weights_only=True)["epoch"] == 0
    assert torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["epoch"] == 2


def test_train_refuses_bad_options_before_building(tmp_path, capsys):
    argv = ["train", "--config", CONFIG, "--save_weights.path", str(tmp_path / "w.pt"),
            "--trainer.default_root_dir", str(tmp_path)]  # fmt: skip
    assert main(argv) == 2
    assert "save_weights.path must end in .safetensors" in capsys.readouterr().err
    argv = ["train", "--config", CONFIG, "--ckpt_path", str(tmp_path / "no.ckpt")]
    assert main(argv) == 2
    assert "--ckpt_path" in capsys.readouterr().err
