"""benchmarks/distill_cifar10_resnet20.py: per-epoch progress lines and weight averaging."""

import importlib.util
import json
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from multispike.convert import calibrate, to_snn
from multispike.distill.data import CIFAR10DataModule
from multispike.distill.module import StepwiseDistillation
from multispike.pipelines import load

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "distill_cifar10_resnet20.py"
spec = importlib.util.spec_from_file_location("distill_cifar10_resnet20", SCRIPT)
benchmark = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = benchmark
spec.loader.exec_module(benchmark)

pytestmark = pytest.mark.usefixtures("one_thread")


class StepLosses(Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


class StepWeights(Callback):
    def __init__(self) -> None:
        self.states: list[dict[str, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.states.append({k: v.clone() for k, v in pl_module.student.state_dict().items()})


def tiny_system() -> tuple[StepwiseDistillation, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    teacher = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10)
    ).eval()
    x, y = torch.randn(96, 1, 8, 8), torch.randint(0, 10, (96,))
    student = to_snn(calibrate(teacher, [x[:32]], levels=4, progress=False))
    return StepwiseDistillation(teacher, student=student, optimizer="sgd", lr=0.01), x, y


def test_epoch_lines_report_each_epochs_mean_loss_and_step_count(capsys):
    system, x, y = tiny_system()
    lines, losses = benchmark.EpochLines(), StepLosses()
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=2, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
        callbacks=[lines, losses],
    )  # fmt: skip
    trainer.fit(system, DataLoader(TensorDataset(x, y), batch_size=32))  # 3 steps an epoch

    assert [(line["epoch"], line["step"]) for line in lines.lines] == [("1/2", 3), ("2/2", 6)]
    for epoch, line in enumerate(lines.lines):  # equal batches: the plain mean of the steps
        assert line["loss"] == pytest.approx(
            sum(losses.losses[3 * epoch : 3 * epoch + 3]) / 3, abs=1e-4
        )
        assert line["steps_per_s"] > 0
    assert lines.lines[0]["seconds"] <= lines.lines[1]["seconds"]
    printed = capsys.readouterr().out.splitlines()
    assert printed == [str(line) for line in lines.lines]


def test_uniform_average_is_the_mean_of_every_steps_weights_and_keeps_the_last():
    system, x, y = tiny_system()
    averaging = benchmark.averaging_callbacks(ema_decay=None, uniform=True)
    steps = StepWeights()
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=2, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
        callbacks=[*averaging, steps],
    )  # fmt: skip
    trainer.fit(system, DataLoader(TensorDataset(x, y), batch_size=32))

    assert len(steps.states) == 6
    averaged, last = system.student.state_dict(), averaging[0].state
    for name, value in last.items():
        assert torch.equal(value, steps.states[-1][name])
        mean = torch.stack([state[name] for state in steps.states]).float().mean(0)
        torch.testing.assert_close(averaged[name].float(), mean)
    assert any(not torch.equal(averaged[k], last[k]) for k in last)


def test_averaging_callbacks_pick_one_average():
    assert benchmark.averaging_callbacks(None, uniform=False) == []
    ema = benchmark.averaging_callbacks(0.999, uniform=False)
    assert [type(c).__name__ for c in ema] == ["KeepLastWeights", "EMAWeightAveraging"]
    uniform = benchmark.averaging_callbacks(None, uniform=True)
    assert [type(c).__name__ for c in uniform] == ["KeepLastWeights", "WeightAveraging"]


def test_val_images_are_held_out_and_score_every_row(need_data, tmp_path, monkeypatch):
    need_data("cifar10/cifar10-full.npz")
    out, models = tmp_path / "run.json", tmp_path / "models"
    monkeypatch.setattr(sys, "argv", [
        "distill_cifar10_resnet20.py", "--levels", "4", "--binary-steps", "--epochs", "1",
        "--train-batches", "2", "--batch-size", "8", "--test-images", "20", "--val-images", "40",
        "--calibration-images", "32", "--ema-decay", "0.9", "--accelerator", "cpu",
        "--num-workers", "0", "--json", str(out), "--save-dir", str(models),
    ])  # fmt: skip
    benchmark.main()

    rows = json.loads(out.read_text())["rows"]
    assert [row["model"] for row in rows] == [
        "ANN", "SNN T=1 N=L=4 calibrated", "SNN T=1 N=L=4 distilled, last weights",
        "SNN T=1 N=L=4 distilled (EMA)",
    ]  # fmt: skip
    for row in rows:  # 20 test images: steps of 5 %; 40 held-out images: steps of 2.5 %
        assert (row["top1"] / 5).is_integer() and (row["val_top1"] / 2.5).is_integer()

    data = CIFAR10DataModule(val_size=40)
    data.setup()
    assert len(data.train_dataset) == 50_000 - 40
    val = benchmark.stacked(data.val_dataset)
    for row, name in zip(rows[2:], ["snn_L4_N4_T1_last", "snn_L4_N4_T1"], strict=True):
        assert benchmark.top1(load(models / name), *val) == row["val_top1"]
