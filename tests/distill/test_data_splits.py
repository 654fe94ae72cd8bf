"""The validation split is held-out training data: no test image reaches calibration, fitting
or validation, and the normalisation is the one the model's weights were trained with."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import timm
import torch
from torch.utils.data import Dataset

import multispike.zoo  # noqa: F401  (registers the zoo)
from multispike.convert import CalibrationOptions
from multispike.distill.classifier import Classifier
from multispike.distill.module import StepwiseDistillation
from multispike.distill.students import Stage
from multispike.pipelines.data import CIFAR10DataModule, DigitsDataModule
from multispike.pipelines.data.errors import DataSpecError


class _Watched(Dataset):
    """A dataset that records every index read from it."""

    def __init__(self, dataset: Dataset, reads: list[int]) -> None:
        self.dataset, self.reads = dataset, reads

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        self.reads.append(index)
        return self.dataset[index]


class WatchedDigits(DigitsDataModule):
    """Digits whose test split records its reads."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.test_reads: list[int] = []

    def _source(self, split, transform):
        dataset = super()._source(split, transform)
        return _Watched(dataset, self.test_reads) if split == "test" else dataset


@pytest.mark.usefixtures("one_thread")
def test_no_test_image_reaches_calibration_fit_or_validation(tmp_path):
    data = WatchedDigits(batch_size=32, test_fraction=0.5)
    teacher = timm.create_model("ms_resnet20", num_classes=10, in_chans=1).eval()
    calibration = CalibrationOptions(levels=2, calibration_images=64)
    system = StepwiseDistillation(teacher, stages=[Stage("snn")], calibration=calibration)
    trainer = L.Trainer(
        max_epochs=1, limit_train_batches=2, limit_val_batches=2, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(system, datamodule=data)  # calibrates on training images, then fits
    trainer.validate(system, datamodule=data)
    assert data.test_reads == []
    trainer.test(system, datamodule=data)
    assert len(data.test_reads) == len(data.test_dataset)


def test_validation_is_a_seeded_holdout_of_the_training_split():
    data = DigitsDataModule(val_size=0.25)
    data.setup("fit")
    train, val = set(data.train_dataset.indices), set(data.val_dataset.indices)
    assert not train & val and len(train | val) == len(data.train_dataset.dataset)
    assert len(val) == round(0.25 * len(train | val))
    calibration = set(data.calibration_dataloader(10_000).dataset.indices)
    assert calibration == train  # every training image, never a validation one
    again = DigitsDataModule(val_size=0.25)
    again.setup("fit")
    assert set(again.val_dataset.indices) == val
    assert DigitsDataModule(val_size=0).val_dataloader() == []  # 0: no validation at all


def _cifar_npz(tmp_path) -> tuple:
    images = np.random.default_rng(0).integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    path = tmp_path / "c.npz"
    np.savez(path, train_x=images, train_y=np.arange(12) % 10, test_x=images[:4],
             test_y=np.arange(4))  # fmt: skip
    return path, images


@pytest.mark.parametrize("model_name", ["ms_resnet20", "ms_resnet18_cifar"])
def test_normalisation_is_the_models_pretrained_cfg(tmp_path, model_name):
    path, images = _cifar_npz(tmp_path)
    model = timm.create_model(model_name)
    data = CIFAR10DataModule(path, augment=False, batch_size=4)
    data.adopt_model_config(model)
    cfg = timm.data.resolve_data_config(model=model)
    assert data.mean == tuple(cfg["mean"]) and data.std == tuple(cfg["std"])
    x, _ = next(iter(data.test_dataloader()))
    mean = torch.tensor(cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    expected = (torch.from_numpy(images[:4]).permute(0, 3, 1, 2).float() / 255 - mean) / std
    assert torch.allclose(x, expected, atol=1e-6)


def test_explicit_statistics_and_other_channel_counts_keep_theirs():
    model = timm.create_model("ms_resnet20", in_chans=1)  # a 3-channel config
    digits = DigitsDataModule()
    digits.adopt_model_config(model)
    assert digits.mean == DigitsDataModule.default_mean
    given = DigitsDataModule(mean=(0.5,), std=(0.25,))
    given.adopt_model_config(timm.create_model("ms_resnet20"))
    assert (given.mean, given.std) == ((0.5,), (0.25,))


def _trainer() -> L.Trainer:
    return L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                     enable_model_summary=False, enable_checkpointing=False)  # fmt: skip


def test_a_trainer_normalises_like_its_modules_ann_without_being_told(tmp_path):
    """From Python, as the CLI: trainer.test(Classifier(model), data) feeds the data with the
    model's statistics (ms_airbench_relu's are CIFAR-10's, not the DataModule's default)."""
    path, images = _cifar_npz(tmp_path)
    model = timm.create_model("ms_airbench_relu")
    cfg = timm.data.resolve_data_config(model=model)
    assert tuple(cfg["mean"]) != CIFAR10DataModule.default_mean
    data = CIFAR10DataModule(path, augment=False, batch_size=4)
    _trainer().test(Classifier(model), datamodule=data)
    assert data.mean == tuple(cfg["mean"]) and data.std == tuple(cfg["std"])
    x, _ = data.test_dataset[0]
    mean, std = torch.tensor(cfg["mean"]).view(3, 1, 1), torch.tensor(cfg["std"]).view(3, 1, 1)
    expected = (torch.from_numpy(images[0]).permute(2, 0, 1).float() / 255 - mean) / std
    assert torch.allclose(x, expected, atol=1e-6)


def test_splits_built_with_other_statistics_are_refused_by_name(tmp_path):
    path, _ = _cifar_npz(tmp_path)
    data = CIFAR10DataModule(path, augment=False, batch_size=4)
    data.setup("test")  # built with the dataset's default statistics
    before = (data.mean, data.std)
    with pytest.raises(DataSpecError, match=r"CIFAR10DataModule built its splits.*adopt_model"):
        _trainer().test(Classifier(timm.create_model("ms_airbench_relu")), datamodule=data)
    assert (data.mean, data.std) == before  # nothing changed behind the caller's back
    given = CIFAR10DataModule(path, augment=False, batch_size=4, mean=before[0], std=before[1])
    given.setup("test")  # explicit statistics: the caller's choice stands
    _trainer().test(Classifier(timm.create_model("ms_airbench_relu")), datamodule=given)
    assert (given.mean, given.std) == before
