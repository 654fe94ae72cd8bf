"""SaveStudent: a distillation fit ends with a model directory that rebuilds the student."""

from __future__ import annotations

import copy
import json
import shutil
from types import SimpleNamespace

import lightning as L
import pytest
import timm
import torch
from torch import nn

import multispike.zoo  # noqa: F401  (registers ms_resnet20)
from multispike.convert import CalibrationOptions, SpikingNetwork
from multispike.distill.module import StepwiseDistillation
from multispike.distill.students import Stage
from multispike.pipelines.callbacks import SaveStudent
from multispike.pipelines.data import DigitsDataModule
from multispike.pipelines.folder import CONFIG_FILE, load

STAGES = {
    "snn": [Stage("qann", epochs=1), Stage("snn", timesteps=2, max_spikes=2)],
    "qann": [Stage("qann")],
}
L2 = CalibrationOptions(levels=2, calibration_images=16)  # L = 2 from 16 training images


pytestmark = pytest.mark.usefixtures("one_thread")


def _trainer(tmp_path, callback: SaveStudent, **kwargs) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        default_root_dir=tmp_path, callbacks=[callback], **kwargs,
    )  # fmt: skip


def _teacher() -> nn.Module:
    return timm.create_model("ms_resnet20", num_classes=10, in_chans=1).eval()


@pytest.mark.parametrize("kind", ["snn", "qann"])
def test_fit_writes_a_directory_that_rebuilds_the_student(tmp_path, kind):
    calibration = CalibrationOptions(levels=2, calibration_images=32)
    system = StepwiseDistillation(_teacher(), stages=STAGES[kind], calibration=calibration)
    trainer = _trainer(tmp_path, SaveStudent(), max_epochs=2, limit_train_batches=1,
                       limit_val_batches=0)  # fmt: skip
    trainer.fit(system, DigitsDataModule(batch_size=16))
    student = system.student
    assert isinstance(student, SpikingNetwork) == (kind == "snn")

    directory = tmp_path / "student"  # no logger: <default_root_dir>/student
    config = json.loads((directory / CONFIG_FILE).read_text())
    assert config["kind"] == kind
    assert config["architecture"]["model_name"] == "ms_resnet20"
    assert config["architecture"]["model_kwargs"] == {"num_classes": 10, "in_chans": 1}
    rebuilt = load(directory)
    x = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(rebuilt(x), student.eval()(x))
    if kind == "snn":
        assert rebuilt.timesteps == 2


def test_the_architecture_is_that_of_the_source_not_of_a_larger_teacher(tmp_path):
    teacher = timm.create_model("ms_resnet32", num_classes=10, in_chans=1).eval()
    system = StepwiseDistillation(teacher, source=_teacher(), stages=STAGES["qann"], calibration=L2)
    _trainer(tmp_path, SaveStudent(), max_steps=1, limit_val_batches=0).fit(
        system, DigitsDataModule(batch_size=16)
    )
    config = json.loads((tmp_path / "student" / CONFIG_FILE).read_text())
    assert config["architecture"]["model_name"] == "ms_resnet20"
    x = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(load(tmp_path / "student")(x), system.student.eval()(x))


def test_a_student_from_a_model_folder_keeps_its_architecture_under_a_larger_teacher(tmp_path):
    """The recipe path: a converted folder distilled by a ResNet-32 stays a ResNet-20."""
    from multispike.convert import calibrate
    from multispike.pipelines.folder import save

    x = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    qann = calibrate(_teacher(), [x], levels=2, progress=False)
    folder = save(qann, tmp_path / "convert", model_name="ms_resnet20",
                  model_kwargs={"num_classes": 10, "in_chans": 1})  # fmt: skip
    teacher = timm.create_model("ms_resnet32", num_classes=10, in_chans=1).eval()
    system = StepwiseDistillation(teacher, student=load(folder, kind="qann"),
                                  stages=STAGES["qann"],
                                  calibration=CalibrationOptions(levels=2))  # fmt: skip
    _trainer(tmp_path, SaveStudent(), max_steps=1, limit_val_batches=0).fit(
        system, DigitsDataModule(batch_size=16)
    )
    config = json.loads((tmp_path / "student" / CONFIG_FILE).read_text())
    assert config["architecture"]["model_name"] == "ms_resnet20"
    assert config["architecture"]["model_kwargs"] == {"num_classes": 10, "in_chans": 1}
    with torch.no_grad():
        assert torch.equal(load(tmp_path / "student")(x), system.student.eval()(x))


def test_explicit_dirpath_name_and_kwargs_and_only_rank_zero_writes(tmp_path):
    system = StepwiseDistillation(_teacher(), stages=STAGES["qann"], calibration=L2)
    kwargs = {"num_classes": 10, "in_chans": 1}
    callback = SaveStudent(str(tmp_path / "out"), model_name="ms_resnet20", model_kwargs=kwargs)
    _trainer(tmp_path, callback, max_steps=1, limit_val_batches=0).fit(
        system, DigitsDataModule(batch_size=16)
    )
    assert (tmp_path / "out" / CONFIG_FILE).is_file()
    assert not (tmp_path / "student").exists()
    shutil.rmtree(tmp_path / "out")
    barriers = []
    strategy = SimpleNamespace(barrier=barriers.append)
    callback.on_fit_end(SimpleNamespace(is_global_zero=False, strategy=strategy), system)
    assert not (tmp_path / "out").exists()
    assert barriers == ["save_student"]  # it waits for rank 0 to write before going on


def test_a_teacher_without_a_timm_name_fails_before_training(tmp_path):
    teacher = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 10))
    system = StepwiseDistillation(teacher, stages=STAGES["qann"], calibration=L2)
    trainer = _trainer(tmp_path, SaveStudent(), max_steps=1, limit_val_batches=0)
    with pytest.raises(ValueError, match="--save_student.model_name"):
        trainer.fit(system, DigitsDataModule(batch_size=16))
    assert trainer.global_step == 0
    assert not (tmp_path / "student").exists()


class _Score(L.Callback):
    """Logs a made-up validation score per epoch, so the chosen epoch is known in advance."""

    def __init__(self, scores: list[float]) -> None:
        self.scores = scores

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        pl_module.log("score", torch.tensor(self.scores[trainer.current_epoch]))


def test_the_saved_student_is_the_one_chosen_on_validation(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    from multispike.distill.students import load_student_weights

    system = StepwiseDistillation(_teacher(), stages=STAGES["qann"], calibration=L2, lr=1e-2)
    checkpoint = ModelCheckpoint(tmp_path / "ckpt", monitor="score", mode="max")
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=3, limit_train_batches=2, limit_val_batches=1,
        logger=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, default_root_dir=tmp_path,
        callbacks=[_Score([0.2, 0.9, 0.1]), checkpoint, SaveStudent()],
    )  # fmt: skip
    trainer.fit(system, DigitsDataModule(batch_size=16))
    assert checkpoint.best_model_path.endswith("epoch=1-step=4.ckpt")
    saved = load(tmp_path / "student")
    chosen = copy.deepcopy(system.student)
    load_student_weights(chosen, checkpoint.best_model_path)
    x = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(saved(x), chosen.eval()(x))
        assert not torch.equal(saved(x), system.student.eval()(x))  # not the last weights
