"""The distillation system: a step lowers the loss, λ learns, stages switch, resume, digits gain."""

from __future__ import annotations

import dataclasses
import math
import warnings

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback, EMAWeightAveraging
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from multispike.convert import (
    CalibrationOptions,
    SpikingNetwork,
    calibrate,
    neurons,
    quantizers,
    to_snn,
)
from multispike.distill.callbacks import SpikeActivityLogger
from multispike.distill.module import StepwiseDistillation
from multispike.distill.students import Stage, apply_stage, load_student_weights, spiking_view
from multispike.pipelines.recipes.runner import load_recipe, recipe_names


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    digits = load_digits()
    x = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return (x - 0.3) / 0.37, torch.as_tensor(digits.target)


class Digits(L.LightningDataModule):
    """sklearn digits as fixed-order tensors (first 1,400 train, rest validation)."""

    def __init__(self, batch_size: int = 64, train: int = 1400) -> None:
        super().__init__()
        x, y = _digits()
        self.train_set = TensorDataset(x[:train], y[:train])
        self.val_set = TensorDataset(x[train:], y[train:])
        self.batch_size = batch_size

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=256)


def _net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 16, 32), nn.ReLU(), nn.Linear(32, 10),
    )  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def teacher(one_thread) -> nn.Sequential:
    """A small CNN trained on the digits train split (3 epochs of Adam, ~2 s; ~89% val)."""
    torch.manual_seed(0)
    model = _net()
    x, y = _digits()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(3):
        for i in range(0, 1400, 32):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[i : i + 32]), y[i : i + 32]).backward()
            opt.step()
    model.zero_grad(set_to_none=True)
    return model.eval()


def _trainer(**kwargs) -> L.Trainer:
    defaults = dict(
        accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip
    return L.Trainer(**(defaults | kwargs))


class Losses(Callback):
    """Records the training loss of every step."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def _val_top1(student: nn.Module) -> float:
    x, y = _digits()
    with torch.no_grad():
        out = student(x[1400:])
    out = out.mean(0) if isinstance(student, SpikingNetwork) else out
    return (out.argmax(-1) == y[1400:]).float().mean().item()


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_training_steps_on_one_batch_lower_the_loss(teacher, precision):
    """Gradient steps on one fixed batch fit it: the loss falls over a few steps. One step
    alone may not lower it (straight-through gradients of a step function), so the test
    compares the last three steps with the first, with a margin the method gives (the loss
    falls by about 10 % here), not one that a CPU's rounding decides."""
    x, y = _digits()
    batch = DataLoader(TensorDataset(x[:256], y[:256]), batch_size=256)  # the same batch
    qann = calibrate(teacher, [x[:256]], levels=4, progress=False)
    student = to_snn(qann, timesteps=2)
    system = StepwiseDistillation(teacher, student=student, optimizer="sgd", lr=0.01)
    losses = Losses()
    trainer = _trainer(max_steps=8, limit_val_batches=0, callbacks=[losses], precision=precision)
    trainer.fit(system, batch)
    assert sum(losses.losses[-3:]) / 3 < 0.95 * losses.losses[0], losses.losses


class LearningRates(Callback):
    """Records the learning rate each training step runs with."""

    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


@pytest.mark.parametrize("warmup", [0, 3])
def test_learning_rate_warms_up_linearly_then_decays_as_a_cosine(teacher, warmup):
    x, y = _digits()
    batches = DataLoader(TensorDataset(x[:320], y[:320]), batch_size=32)  # 10 steps
    student = to_snn(calibrate(teacher, [x[:256]], levels=4, progress=False))
    system = StepwiseDistillation(teacher, student=student, lr=0.01, warmup_steps=warmup)
    lrs = LearningRates()
    _trainer(max_epochs=1, limit_val_batches=0, callbacks=[lrs]).fit(system, batches)
    rise = [0.01 * (k + 1) / warmup for k in range(warmup)]
    decay = [0.005 * (1 + math.cos(math.pi * k / (10 - warmup))) for k in range(10 - warmup)]
    assert lrs.lrs == pytest.approx(rise + decay, rel=1e-6)


def test_warmup_longer_than_the_fit_is_refused(teacher):
    x, y = _digits()
    student = to_snn(calibrate(teacher, [x[:256]], levels=4, progress=False))
    system = StepwiseDistillation(teacher, student=student, warmup_steps=10)
    batches = DataLoader(TensorDataset(x[:320], y[:320]), batch_size=32)
    with pytest.raises(ValueError, match="warmup_steps=10 leaves no step of the 10"):
        _trainer(max_epochs=1, limit_val_batches=0).fit(system, batches)
    with pytest.raises(ValueError, match="warmup_steps must be >= 0"):
        StepwiseDistillation(teacher, student=student, warmup_steps=-1)


def test_a_fit_that_ends_before_the_last_stage_is_refused(teacher, tmp_path):
    x, y = _digits()
    qann = calibrate(teacher, [x[:256]], levels=4, progress=False)
    stages = [Stage("qann", epochs=1), Stage("snn", epochs=1, timesteps=2), Stage("snn")]
    system = StepwiseDistillation(teacher, student=qann, stages=stages)
    batches = DataLoader(TensorDataset(x[:64], y[:64]), batch_size=32)
    trainer = _trainer(max_epochs=2, limit_val_batches=0, default_root_dir=tmp_path)
    with pytest.raises(ValueError, match=r"max_epochs 2 ends .* epoch 2: give at least 3"):
        trainer.fit(system, batches)
    assert system.stage_index == -1  # refused before any stage was entered


@pytest.mark.parametrize("mixed", [False, True], ids=["fp32", "bf16-autocast"])
@pytest.mark.parametrize("kind", ["qann", "snn"])
def test_gradients_reach_every_threshold(teacher, kind, mixed):
    """Also under autocast (what Lightning's ``precision="bf16-mixed"``/``"16-mixed"`` runs)."""
    x, y = _digits()
    qann = calibrate(teacher, [x[:256]], levels=4, per_channel=True, progress=False)
    student = qann if kind == "qann" else to_snn(qann, max_spikes=2, timesteps=3)
    system = StepwiseDistillation(teacher, student=student)
    from multispike.distill.losses import stepwise_distillation_loss

    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mixed):
        out = system(x[:128])
        loss = stepwise_distillation_loss(out, teacher(x[:128]), y[:128]).total
    assert out.shape == ((1 if kind == "qann" else 3), 128, 10)
    assert out.dtype == (torch.bfloat16 if mixed else torch.float32) and loss.isfinite()
    loss.backward()
    layers = quantizers(student) if kind == "qann" else neurons(student)
    assert len(layers) == 3
    for name, layer in layers.items():
        assert layer.threshold.grad is not None, name
        assert layer.threshold.grad.dtype == torch.float32, name
        assert layer.threshold.grad.isfinite().all() and layer.threshold.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in teacher.parameters())


def test_spiking_view_shares_parameters_and_matches_to_snn(teacher):
    x, _ = _digits()
    qann = calibrate(teacher, [x[:256]], levels=4, progress=False)
    snn = spiking_view(qann, max_spikes=4, timesteps=2)
    shared = {id(p) for p in qann.parameters()}
    assert {id(p) for p in snn.parameters()} == shared
    assert torch.equal(snn(x[:32]), to_snn(qann, timesteps=2)(x[:32]))
    with torch.no_grad():
        next(iter(quantizers(qann).values())).threshold.mul_(2)
    assert not torch.equal(snn(x[:32]), to_snn(calibrate(teacher, [x[:256]], 4, progress=False),
                                               timesteps=2)(x[:32]))  # fmt: skip


def test_stage_rules(teacher):
    x, _ = _digits()
    qann = calibrate(teacher, [x[:256]], levels=4, progress=False)
    snn = apply_stage(qann, Stage("snn", timesteps=4, max_spikes=2))
    assert isinstance(snn, SpikingNetwork) and snn.timesteps == 4
    assert {n.max_spikes for n in neurons(snn).values()} == {2}
    with pytest.raises(ValueError, match="back to a QANN"):
        apply_stage(snn, Stage("qann"))
    with pytest.raises(ValueError, match="only the last stage"):
        StepwiseDistillation(teacher, stages=[Stage("qann"), Stage("snn")])
    with pytest.raises(ValueError, match="QANN stages must come before"):
        StepwiseDistillation(teacher, stages=[Stage("snn", epochs=1), Stage("qann")])


def test_a_qann_student_resumes_under_weight_averaging(teacher, tmp_path):
    """The recipe path: a QANN student, an SNN stage, EMA weights: last.ckpt resumes, and the
    current and averaged weights both come back."""
    qann = calibrate(teacher, [_digits()[0][:64]], levels=2, progress=False)

    def system() -> StepwiseDistillation:
        return StepwiseDistillation(teacher, student=qann, stages=[Stage("snn", timesteps=1)])

    class Save(Callback):
        def on_train_epoch_end(self, trainer, pl_module) -> None:
            trainer.save_checkpoint(tmp_path / f"epoch{trainer.current_epoch}.ckpt")

    kwargs = dict(limit_train_batches=2, limit_val_batches=1)
    first = system()
    _trainer(callbacks=[Save(), EMAWeightAveraging(decay=0.5)], max_epochs=1, **kwargs).fit(
        first, Digits()
    )
    saved = torch.load(tmp_path / "epoch0.ckpt", weights_only=True)
    assert any(k.startswith("student.net.") for k in saved["current_model_state"])
    averaged = [k for k in saved["state_dict"] if k.startswith("student.")]
    assert averaged and not any(k.startswith("student.net.") for k in averaged)  # QANN layout
    resumed, ema = system(), EMAWeightAveraging(decay=0.5)
    trainer = _trainer(callbacks=[ema], max_epochs=1, **kwargs)
    trainer.fit(resumed, Digits(), ckpt_path=tmp_path / "epoch0.ckpt")  # nothing left to train
    current = {k: v for k, v in saved["current_model_state"].items() if k.startswith("student.")}
    for key, value in current.items():
        torch.testing.assert_close(resumed.state_dict()[key], value, msg=key)


def test_schedule_switches_structure_and_resume_gives_the_same_next_loss(teacher, tmp_path):
    """QAT (epoch 0) → SNN T=2 (epoch 1) → SNN T=1; resume from the epoch-1 checkpoint."""
    stages = [Stage("qann", epochs=1), Stage("snn", epochs=1, timesteps=2), Stage("snn")]

    def system() -> StepwiseDistillation:
        calibration = CalibrationOptions(levels=2, calibration_images=256)
        return StepwiseDistillation(teacher, stages=stages, calibration=calibration)

    class Save(Callback):
        def on_train_epoch_end(self, trainer, pl_module) -> None:
            trainer.save_checkpoint(tmp_path / f"epoch{trainer.current_epoch}.ckpt")

    first, losses = system(), Losses()
    kwargs = dict(max_epochs=3, limit_train_batches=2, limit_val_batches=1)
    _trainer(callbacks=[losses, Save()], **kwargs).fit(first, Digits())
    assert isinstance(first.student, SpikingNetwork) and first.student.timesteps == 1
    assert first.stage_index == 2

    resumed, again = system(), Losses()
    _trainer(callbacks=[again], **kwargs).fit(resumed, Digits(), ckpt_path=tmp_path / "epoch1.ckpt")
    assert len(again.losses) == 2
    assert again.losses[0] == pytest.approx(losses.losses[4], rel=1e-6)
    for key, value in first.student.state_dict().items():
        torch.testing.assert_close(resumed.student.state_dict()[key], value, msg=key)

    # the weights of any stage seed a new run (QAT checkpoint → SNN student)
    snn = to_snn(calibrate(teacher, [_digits()[0][:64]], levels=2, progress=False))
    load_student_weights(snn, tmp_path / "epoch0.ckpt")
    qat = torch.load(tmp_path / "epoch0.ckpt", weights_only=True)["state_dict"]
    assert torch.equal(snn.net.get_submodule("0").weight, qat["student.0.weight"])


class CompiledNetworks(Callback):
    """Records, at every training step, the teacher and student the compiled wrappers run."""

    def __init__(self) -> None:
        self.teachers: list[nn.Module | None] = []
        self.students: list[nn.Module | None] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        compiled = pl_module._compiled or (None, None)
        self.teachers.append(getattr(compiled[0], "_orig_mod", None))
        self.students.append(getattr(compiled[1], "_orig_mod", None))


def test_torch_compile_trains_like_eager_across_a_stage_change(teacher):
    """Compiled training steps give eager's losses through a QAT epoch and the SNN it becomes
    (the student is compiled again after the change), and nothing compiled is left behind."""
    stages = [Stage("qann", epochs=1), Stage("snn", timesteps=2)]
    runs, calibration = {}, CalibrationOptions(levels=2, calibration_images=256)
    for compiled in (False, True):
        system = StepwiseDistillation(
            teacher, stages=stages, calibration=calibration, torch_compile=compiled
        )
        losses, networks = Losses(), CompiledNetworks()
        kwargs = dict(max_epochs=2, limit_train_batches=2, limit_val_batches=1)
        _trainer(callbacks=[losses, networks], **kwargs).fit(system, Digits())
        runs[compiled] = system, losses.losses, networks
    (eager, eager_losses, plain), (system, compiled_losses, networks) = runs[False], runs[True]
    assert compiled_losses == pytest.approx(eager_losses, rel=1e-4)
    assert plain.teachers == plain.students == [None] * 4
    assert networks.teachers == [system.teacher] * 4  # compiled once, for every stage
    students = networks.students
    assert students[0] is students[1] and not isinstance(students[0], SpikingNetwork)  # QANN
    assert isinstance(students[2], SpikingNetwork) and students[2] is system.student
    assert system._compiled is None  # dropped at the end of training
    assert system.state_dict().keys() == eager.state_dict().keys()


class Modes(Callback):
    """Records the (student, teacher) training flags at every training step."""

    def __init__(self) -> None:
        self.modes: list[tuple[bool, bool]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.modes.append((pl_module.student.training, pl_module.teacher.training))


def test_the_student_trains_in_train_mode_and_the_teacher_stays_frozen(teacher, recwarn):
    x, _ = _digits()
    student = to_snn(calibrate(teacher, [x[:256]], levels=4, progress=False)).eval()
    system, modes = StepwiseDistillation(teacher, student=student), Modes()
    kwargs = dict(max_epochs=2, limit_train_batches=2, limit_val_batches=1, callbacks=[modes])
    _trainer(**kwargs).fit(system, Digits())  # the validation in between switches modes back
    assert modes.modes == [(True, False)] * 4
    # the frozen teacher's eval mode is intended: Lightning's warning about it is not shown
    assert not [w for w in recwarn if "in eval mode" in str(w.message)]
    assert not [f for f in warnings.filters if f[1] and "in eval mode" in f[1].pattern]  # scoped


def test_mixup_feeds_the_teacher_and_student_the_same_mixed_batch_in_training_only(teacher):
    x, y = _digits()
    student = to_snn(calibrate(teacher, [x[:256]], levels=4, progress=False))
    system = StepwiseDistillation(teacher, student=student, mixup_alpha=1.0)
    seen: dict[str, list[torch.Tensor]] = {"teacher": [], "student": []}
    for name in seen:
        module = getattr(system, name)
        module.register_forward_pre_hook(lambda m, args, name=name: seen[name].append(args[0]))
    batch = DataLoader(TensorDataset(x[:32], y[:32]), batch_size=32)
    _trainer(max_steps=1, limit_val_batches=0).fit(system, train_dataloaders=batch)
    _trainer().validate(system, batch, verbose=False)
    # (setup also runs the teacher once, on a zero image, to count the classes)
    train_in, val_in = (t for t in seen["teacher"] if len(t) == 32)
    train_seen, val_seen = seen["student"]
    assert torch.equal(train_in, train_seen) and not torch.allclose(train_in, x[:32])
    assert torch.equal(val_in, x[:32]) and torch.equal(val_seen, x[:32])


class StudentTrajectory(Callback):
    """Records every student parameter after every optimizer step, keyed by the tensor."""

    def __init__(self) -> None:
        self.steps: list[dict[int, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps.append({id(p): p.detach().clone() for p in pl_module.student.parameters()})


def test_ema_weight_averaging_averages_the_student_across_stages(teacher):
    """Lightning's EMAWeightAveraging ends with the EMA of the student's own trajectory, also
    when the student is calibrated at fit time and becomes an SNN (sharing parameters) mid-fit."""
    stages = [Stage("qann", epochs=1), Stage("snn", timesteps=2)]
    calibration = CalibrationOptions(levels=2, calibration_images=128)
    system = StepwiseDistillation(teacher, stages=stages, calibration=calibration, lr=0.01)
    trajectory, decay = StudentTrajectory(), 0.5
    callbacks = [trajectory, EMAWeightAveraging(decay=decay)]
    kwargs = dict(max_epochs=2, limit_train_batches=3, limit_val_batches=0, callbacks=callbacks)
    _trainer(**kwargs).fit(system, Digits())
    assert isinstance(system.student, SpikingNetwork) and len(trajectory.steps) == 6
    expected = dict(trajectory.steps[0])
    for step in trajectory.steps[1:]:
        expected = {k: decay * expected[k] + (1 - decay) * step[k] for k in expected}
    params = list(system.student.parameters())
    assert {id(p) for p in params} == set(expected)  # the SNN kept the QANN's parameters
    last = trajectory.steps[-1]
    assert any(not torch.equal(p, last[id(p)]) for p in params)  # the average is not the last
    for p in params:
        torch.testing.assert_close(p.detach(), expected[id(p)])


def test_load_from_checkpoint_rebuilds_the_snn(teacher, tmp_path):
    stages = [Stage("snn", timesteps=2, max_spikes=1)]
    calibration = CalibrationOptions(levels=2, calibration_images=128)
    system = StepwiseDistillation(teacher, stages=stages, calibration=calibration)
    trainer = _trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=0)
    trainer.fit(system, Digits())
    trainer.save_checkpoint(tmp_path / "snn.ckpt")
    path = tmp_path / "snn.ckpt"  # hparams are plain data: loads with weights_only=True
    loaded = StepwiseDistillation.load_from_checkpoint(path, teacher=teacher, weights_only=True)
    assert isinstance(loaded.student, SpikingNetwork) and loaded.student.timesteps == 2
    x = _digits()[0][:16]
    assert torch.equal(loaded(x), system(x))


@pytest.mark.parametrize("cli", [False, True], ids=["plain", "lightning-cli"])
def test_a_checkpoint_with_flat_calibration_hparams_still_loads(teacher, tmp_path, cli):
    """Checkpoints written before the calibration options were one object (flat ``levels``,
    ``calibration``... hyper-parameters) load into the same student."""
    calibration = CalibrationOptions(levels=2, calibration_images=128)
    system = StepwiseDistillation(
        teacher, stages=[Stage("snn", timesteps=2)], calibration=calibration
    )
    trainer = _trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=0)
    trainer.fit(system, Digits())
    trainer.save_checkpoint(tmp_path / "new.ckpt")
    checkpoint = torch.load(tmp_path / "new.ckpt", weights_only=True)
    hparams = checkpoint["hyper_parameters"]
    assert hparams["calibration"] == dataclasses.asdict(calibration)  # plain data
    flat = {"levels": 2, "per_channel": False, "calibration": "percentile", "percentile": 99.9,
            "calibration_images": 128}  # fmt: skip
    checkpoint["hyper_parameters"] = {k: v for k, v in hparams.items() if k != "calibration"}
    checkpoint["hyper_parameters"].update(flat)
    if cli:  # what LightningCLI records beside the hyper-parameters
        checkpoint["hyper_parameters"].update(
            _class_path="multispike.distill.module.StepwiseDistillation",
            _instantiator="lightning.pytorch.cli.instantiate_module",
        )
    torch.save(checkpoint, tmp_path / "old.ckpt")
    loaded = StepwiseDistillation.load_from_checkpoint(
        tmp_path / "old.ckpt", teacher=teacher, weights_only=True
    )
    assert loaded.calibration == calibration
    assert loaded.hparams.calibration == hparams["calibration"]
    x = _digits()[0][:16]
    assert torch.equal(loaded(x), system(x))


def test_a_student_built_with_reconstruct_is_reconstructed_on_its_calibration_images(teacher):
    """``calibration="reconstruct"``: the student built from the (frozen) teacher is the mse
    QANN reconstructed on the same training batches it was calibrated on."""
    x = _digits()[0][:128]
    options = dict(levels=2, calibration_images=128, reconstruct_iterations=5)
    students = {}
    for method in ("mse", "reconstruct"):
        calibration = CalibrationOptions(calibration=method, **options)
        system = StepwiseDistillation(teacher, stages=[Stage("qann")], calibration=calibration,
                                      lr=0.0)  # fmt: skip
        _trainer(max_steps=1, limit_val_batches=0).fit(system, Digits())  # lr 0: as calibrated
        students[method] = system.student.eval()
    reconstructed = CalibrationOptions(calibration="reconstruct", **options).apply(
        teacher, [x[:64], x[64:]], progress=False
    )
    with torch.no_grad():
        assert torch.equal(students["reconstruct"](x), reconstructed(x))
        assert not torch.equal(students["reconstruct"](x), students["mse"](x))
    thresholds = {m: [q.threshold for q in quantizers(s).values()] for m, s in students.items()}
    assert any(
        not torch.equal(a, b) for a, b in zip(*thresholds.values(), strict=True)
    )  # the reconstruction moved λ
    assert all(p.requires_grad for p in students["reconstruct"].parameters())


def test_the_student_is_converted_from_source_and_distilled_from_the_teacher(teacher, tmp_path):
    """A larger teacher than the student: the SNN comes from ``source``, the KD term from
    ``teacher``, and a checkpoint rebuilds that SNN."""
    torch.manual_seed(1)
    source = nn.Sequential(
        nn.Conv2d(1, 12, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(12 * 64, 10)
    ).eval()
    before = {k: v.clone() for k, v in source.state_dict().items()}
    calibration = CalibrationOptions(levels=4, calibration_images=128)
    system = StepwiseDistillation(teacher, source=source, calibration=calibration, lr=0.0)
    trainer = _trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=0)
    trainer.fit(system, Digits())
    x = _digits()[0][:128]
    expected = to_snn(calibrate(source, [x[:64], x[64:]], levels=4, progress=False))
    assert torch.equal(system.student(x), expected(x))  # lr 0: still the calibrated source
    assert all(torch.equal(v, before[k]) for k, v in source.state_dict().items())
    assert torch.equal(system.teacher(x), teacher(x))
    assert not system.source.training and not system.teacher.training
    trainer.save_checkpoint(tmp_path / "snn.ckpt")
    loaded = StepwiseDistillation.load_from_checkpoint(
        tmp_path / "snn.ckpt", teacher=teacher, source=source, weights_only=True
    )
    assert torch.equal(loaded(x), system(x))
    with pytest.raises(ValueError, match="not both"):
        StepwiseDistillation(teacher, student=expected, source=source)
    five_classes = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 5))
    calibration = CalibrationOptions(levels=4, calibration_images=64)
    system = StepwiseDistillation(teacher, source=five_classes, calibration=calibration)
    with pytest.raises(ValueError, match="teacher has 10 classes but the source ANN .* has 5"):
        _trainer(max_steps=1, limit_val_batches=0).fit(system, Digits())


@pytest.mark.slow
def test_short_fit_on_digits_beats_calibration_only(teacher):
    """L = N = 1 (binary, one step): calibration alone loses accuracy, distillation wins it back."""
    torch.manual_seed(0)
    x, _ = _digits()
    calibrated = to_snn(calibrate(teacher, [x[:512]], levels=1, progress=False))
    before = _val_top1(calibrated)
    system = StepwiseDistillation(teacher, student=calibrated, lr=0.02, optimizer="adamw")
    trainer = _trainer(max_epochs=4, callbacks=[SpikeActivityLogger()])
    trainer.fit(system, Digits())
    after = _val_top1(system.student)
    assert after > before + 0.05, (before, after)
    metrics = trainer.callback_metrics
    assert metrics["val/top1"].item() == pytest.approx(after, abs=1e-6)
    assert 0 < metrics["val/events_per_neuron_step"].item() < 1


# A standalone distillation config: no student given, so it is calibrated from the teacher.
NMNIST = """
model:
  teacher:
    class_path: multispike.zoo.load_model
    init_args: {model_name: ms_nir_nmnist_cnn, pretrained: true}
  calibration: {levels: 8, calibration_images: 16}
  student_frames: 1
  stages: [{student: snn, timesteps: 1}]
data:
  class_path: multispike.pipelines.data.NMNISTDataModule
  init_args: {frames: 3, batch_size: 8}
"""


DISTILLING = [r for r in recipe_names() if "distill" in load_recipe(r, "/tmp").sections]


@pytest.mark.parametrize("recipe", DISTILLING)
def test_every_recipes_distill_section_parses_as_a_distill_config(recipe, tmp_path, capsys):
    from multispike.pipelines.commands.distill import main

    section = load_recipe(recipe, tmp_path).sections["distill"]
    config = yaml.safe_dump(section)
    assert main(["--config", config, "--model.lr", "0.003", "--print_config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["lr"] == 0.003
    assert printed["model"]["teacher"]["class_path"].startswith("multispike.")
    assert printed["data"]["class_path"].startswith("multispike.pipelines.data")
    assert printed["model"]["stages"][-1]["student"] == "snn"
    assert printed["checkpoint"]["monitor"] == StepwiseDistillation.SELECTION_KEY


def test_cli_names_a_bad_option(capsys):
    from multispike.pipelines.commands.distill import main

    assert main(["--config", NMNIST, "--model.alpha", "not-a-number"]) == 2
    assert "model.alpha" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_fits_a_standalone_nmnist_config(need_data, tmp_path, monkeypatch):
    """N-MNIST end to end (one batch): pretrained teacher, 3 frames → 1-step SNN calibrated
    from it, saved as a model directory (no logger under fast_dev_run: ``<cwd>/student``)."""
    need_data("nmnist/train1K.txt")
    from multispike.pipelines.commands.distill import main
    from multispike.pipelines.folder import load

    monkeypatch.chdir(tmp_path)
    assert main(["--config", NMNIST, "--trainer.fast_dev_run", "1",
                 "--trainer.accelerator", "cpu"]) == 0  # fmt: skip
    student = load(tmp_path / "student")
    assert isinstance(student, SpikingNetwork) and student.timesteps == 1
    assert student.input_shape == (2, 34, 34)
