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
  class_path: multispike.pipelines.data.DigitsDataModule
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


@pytest.mark.usefixtures("one_thread")
def test_weights_averaged_by_ema_are_the_ones_saved(tmp_path):
    """With Lightning's EMAWeightAveraging in ``trainer.callbacks``, the chosen checkpoint and
    the saved safetensors hold the averaged weights, not the last step's."""
    from safetensors.torch import load_file

    weights = tmp_path / "ann.safetensors"
    ema = "[{class_path: lightning.pytorch.callbacks.EMAWeightAveraging, init_args: {decay: 0.5}}]"
    argv = ["train", "--config", CONFIG, "--trainer.callbacks", ema,
            "--save_weights.path", str(weights), "--checkpoint.dirpath", str(tmp_path / "ckpt"),
            "--trainer.default_root_dir", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    (best,) = (tmp_path / "ckpt").glob("epoch*.ckpt")
    checkpoint = torch.load(best, weights_only=True)
    saved = load_file(weights)
    averaged, last = checkpoint["state_dict"], checkpoint["current_model_state"]
    assert all(torch.equal(saved[k.removeprefix("model.")], v) for k, v in averaged.items())
    assert any(not torch.equal(averaged[k], last[k]) for k in averaged if "weight" in k)


def test_train_refuses_bad_options_before_building(tmp_path, capsys):
    argv = ["train", "--config", CONFIG, "--save_weights.path", str(tmp_path / "w.pt"),
            "--trainer.default_root_dir", str(tmp_path)]  # fmt: skip
    assert main(argv) == 2
    assert "save_weights.path must end in .safetensors" in capsys.readouterr().err
    argv = ["train", "--config", CONFIG, "--ckpt_path", str(tmp_path / "no.ckpt")]
    assert main(argv) == 2
    assert "--ckpt_path" in capsys.readouterr().err


def _qat_argv(tmp_path, levels: int, *extra: str) -> list[str]:
    return ["train", "--config", CONFIG, "--model.levels", str(levels),
            "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
            "--checkpoint.dirpath", str(tmp_path / "ckpt"),
            "--save_weights.model_dir", str(tmp_path / "qann"),
            "--trainer.default_root_dir", str(tmp_path), *extra]  # fmt: skip


@pytest.mark.usefixtures("one_thread")
def test_qat_from_scratch_saves_a_qann_whose_snn_is_it_bit_for_bit(tmp_path):
    """``--model.levels`` trains the quantizers (λ learned) from the first step; the saved
    folder is the BatchNorm-folded QANN of the chosen checkpoint, and its SNN equals it."""
    from multispike.convert import calibrate, fold_qann, quantizers, to_snn
    from multispike.pipelines import load

    assert main(_qat_argv(tmp_path, 2)) == 0
    qann = load(tmp_path / "qann")
    assert {q.levels for q in quantizers(qann).values()} == {2}
    assert all(q.per_channel for q in quantizers(qann).values())
    x = torch.randn(16, 1, 8, 8)
    assert torch.equal(to_snn(qann, max_spikes=2, timesteps=1)(x)[0], qann(x))

    (best,) = (tmp_path / "ckpt").glob("epoch*.ckpt")
    state = torch.load(best, weights_only=True)["state_dict"]
    trained = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    assert any(k.endswith("bn1.running_mean") for k in trained)  # trained with BatchNorm
    # the saved QANN is the checkpoint's trained network with BatchNorm folded
    ann = load_model("ms_resnet20", num_classes=10, in_chans=1)
    unfolded = calibrate(ann, [x], 2, per_channel=True, fold=False, progress=False)
    unfolded.load_state_dict(trained)
    folded = fold_qann(unfolded)
    assert all(torch.equal(v, qann.state_dict()[k]) for k, v in folded.state_dict().items())


@pytest.mark.usefixtures("one_thread")
def test_a_qat_run_resumed_with_other_levels_is_refused_untouched(tmp_path, capsys):
    assert main(_qat_argv(tmp_path, 2)) == 0
    last = tmp_path / "ckpt" / "last.ckpt"
    before = last.read_bytes()
    argv = _qat_argv(tmp_path, 4, "--ckpt_path", str(last), "--trainer.max_epochs", "2")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "last.ckpt" in err and "levels=2" in err and "levels=4" in err
    assert last.read_bytes() == before


def test_triangle_schedule_rises_then_falls_linearly():
    from multispike.distill.classifier import triangle

    total, warmup = 100, 0.25
    assert triangle(0, total, warmup) == pytest.approx(0.2)
    assert triangle(25, total, warmup) == pytest.approx(1.0)
    assert triangle(100, total, warmup) == pytest.approx(0.07)
    assert triangle(10, total, warmup) == pytest.approx(0.2 + 0.8 * 10 / 25)
    assert triangle(60, total, warmup) == pytest.approx(1 - 0.93 * 35 / 75)


@pytest.mark.usefixtures("one_thread")
def test_train_sets_the_whitening_of_an_airbench_net_from_training_images(tmp_path):
    """``init_from_data`` gets the training images (never the validation hold-out) before
    the first step; the whitening stays frozen while the rest trains."""
    from multispike.distill.classifier import Classifier
    from multispike.pipelines.data import RandomDataModule
    from multispike.zoo.airbench import patch_whitening

    data = RandomDataModule(num_samples=96, num_test_samples=32, batch_size=32, val_size=32)
    model = load_model("ms_airbench_relu", num_classes=10)
    system = Classifier(model, init_images=64)
    trainer = __import__("lightning").Trainer(
        max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(system, datamodule=data)
    images = torch.cat([x for x, _ in data.calibration_dataloader(64)])
    assert torch.equal(model.whiten.weight, patch_whitening(images, 2))
    assert not model.whiten.weight.requires_grad


@pytest.mark.usefixtures("one_thread")
def test_qat_keeps_every_threshold_positive(tmp_path):
    """λ is projected back to >= MIN_THRESHOLD after each step: a run whose λ learn 1000x
    faster than the weights (the way airbench's peak learning rate drove them below 0) still
    saves a QANN whose every channel has a positive threshold."""
    from multispike.convert import quantizers
    from multispike.distill.classifier import MIN_THRESHOLD
    from multispike.pipelines import load

    argv = _qat_argv(tmp_path, 2, "--model.threshold_lr_scale", "1000", "--model.lr", "0.5")
    assert main(argv) == 0
    thresholds = [q.threshold for q in quantizers(load(tmp_path / "qann")).values()]
    assert min(float(t.min()) for t in thresholds) >= float(torch.tensor(MIN_THRESHOLD))
