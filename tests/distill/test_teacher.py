"""TeacherEnsemble: several classifiers averaged into one distillation teacher."""

import lightning as L
import pytest
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from multispike.convert import calibrate, to_snn
from multispike.distill.module import StepwiseDistillation
from multispike.distill.teacher import TeacherEnsemble

pytestmark = pytest.mark.usefixtures("one_thread")


def classifier(seed: int, classes: int = 10) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, classes)
    ).eval()


def test_the_ensemble_returns_its_members_mean_logits():
    members = [classifier(0), classifier(1), classifier(2)]
    x = torch.randn(5, 1, 8, 8)
    expected = (members[0](x) + members[1](x) + members[2](x)) / 3
    torch.testing.assert_close(TeacherEnsemble(members)(x), expected)


def test_members_with_different_classifiers_are_named():
    ensemble = TeacherEnsemble([classifier(0), classifier(1, classes=7)])
    with pytest.raises(ValueError, match=r"members\.1: \(2, 7\)"):
        ensemble(torch.randn(2, 1, 8, 8))


def test_an_empty_ensemble_is_refused():
    with pytest.raises(ValueError, match="at least one member"):
        TeacherEnsemble([])


def test_an_ensemble_teaches_a_converted_student_and_stays_frozen():
    ensemble = TeacherEnsemble([classifier(0), classifier(1)])
    before = {k: v.clone() for k, v in ensemble.state_dict().items()}
    x, y = torch.randn(64, 1, 8, 8), torch.randint(0, 10, (64,))
    student = to_snn(calibrate(classifier(0), [x[:32]], levels=4, progress=False))
    system = StepwiseDistillation(ensemble, student=student, optimizer="sgd", lr=0.01)
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(system, DataLoader(TensorDataset(x, y), batch_size=32))

    assert trainer.global_step == 2
    for key, value in system.teacher.state_dict().items():
        torch.testing.assert_close(value, before[key])
    assert not any(p.requires_grad for p in system.teacher.parameters())
    torch.testing.assert_close(system.teacher(x), ensemble(x))


def test_a_config_names_an_ensemble_teacher_and_fits(tmp_path, monkeypatch):
    """The CLI builds a TeacherEnsemble from YAML (members by registry name) and fits with it,
    converting the student from ``model.source``."""
    from multispike.pipelines.commands.distill import main
    from multispike.pipelines.folder import load

    member = {
        "class_path": "multispike.zoo.load_model",
        "init_args": {"model_name": "ms_resnet20", "num_classes": 10, "in_chans": 1},
    }
    config = {
        "model": {
            "teacher": {
                "class_path": "multispike.distill.teacher.TeacherEnsemble",
                "init_args": {"members": [member, member]},
            },
            "source": member,
            "calibration": {"levels": 4, "calibration_images": 64},
            "stages": [{"student": "qann", "epochs": 1}, {"student": "snn"}],
        },
        "data": {"class_path": "multispike.pipelines.data.DigitsDataModule"},
    }
    (tmp_path / "ensemble.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)
    args = ["--config", "ensemble.yaml", "--trainer.fast_dev_run", "1",
            "--trainer.accelerator", "cpu"]  # fmt: skip
    assert main(args) == 0
    student = load(tmp_path / "student")  # the QAT stage's QANN (fast_dev_run: one stage)
    assert student(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
