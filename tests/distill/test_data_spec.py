"""``from_spec``: parsing of the CLI ``--data`` specs and its errors."""

from __future__ import annotations

import numpy as np
import pytest

from multispike.distill.data import (
    SPECS,
    CIFAR10DataModule,
    DataSpecError,
    DigitsDataModule,
    RandomDataModule,
    from_spec,
)


def test_simple_specs_build_their_modules():
    dm = from_spec("random")
    assert isinstance(dm, RandomDataModule) and dm.input_shape == (3, 32, 32)
    dm = from_spec("random:1x28x20", num_classes=4, batch_size=7)
    assert dm.input_shape == (1, 28, 20) and dm.num_classes == 4 and dm.batch_size == 7
    dm = from_spec("Digits", image_size=16, batch_size=None)  # None = keep the default
    assert (
        isinstance(dm, DigitsDataModule) and dm.input_shape == (1, 16, 16) and dm.batch_size == 64
    )


def test_cifar10_path_spec(tmp_path):
    path = tmp_path / "c.npz"
    np.savez(
        path,
        train_x=np.zeros((2, 32, 32, 3), np.uint8),
        train_y=[0, 1],
        test_x=np.zeros((1, 32, 32, 3), np.uint8),
        test_y=[3],
    )
    dm = from_spec(f"cifar10:{path}", augment=False)
    assert isinstance(dm, CIFAR10DataModule) and dm.path == path
    dm.setup()
    assert len(dm.train_dataset) == 2


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("mnist", "unknown --data spec 'mnist'; valid specs: random:\\[CxHxW\\], digits, cifar10"),
        ("random:3x32", "CxHxW"),
        ("random:axbxc", "CxHxW"),
        ("digits:/tmp", "digits takes no argument"),
        ("imagefolder", "imagefolder needs a folder"),
        ("cifar10:", "nothing after ':'"),
    ],
)
def test_bad_specs(spec, message):
    with pytest.raises(DataSpecError, match=message):
        from_spec(spec)


def test_unknown_option_is_named():
    with pytest.raises(DataSpecError, match=r"takes no option\(s\) \['colour'\].*'batch_size'"):
        from_spec("digits", colour=True)


def test_every_spec_names_a_datamodule():
    from lightning import LightningDataModule

    from multispike.distill.data.spec import _factory

    for name in SPECS:
        assert issubclass(_factory(name), LightningDataModule)


def test_default_paths_come_from_the_shared_folder(tmp_path, monkeypatch):
    from multispike.distill.data import DataNotFoundError

    monkeypatch.setenv("MULTISPIKE_DATA", str(tmp_path / "absent"))
    for spec in ("cifar10", "nmnist"):
        with pytest.raises(DataNotFoundError, match="MULTISPIKE_DATA"):
            from_spec(spec).setup()
    (tmp_path / "cifar10").mkdir()
    np.savez(tmp_path / "cifar10" / "cifar10-full.npz", train_x=np.zeros((2, 32, 32, 3), np.uint8),
             train_y=[0, 1], test_x=np.zeros((1, 32, 32, 3), np.uint8), test_y=[3])  # fmt: skip
    monkeypatch.setenv("MULTISPIKE_DATA", str(tmp_path))
    for spec in ("cifar10", f"cifar10:{tmp_path}"):
        dm = from_spec(spec)
        dm.setup()
        assert len(dm.test_dataset) == 1


def test_statistics_must_match_channels():
    with pytest.raises(DataSpecError, match=r"need 1 values each.*DigitsDataModule's \(1, 8, 8\)"):
        from_spec("digits", mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2)).setup()
    from_spec("digits", mean=(0.5, 0.5, 0.5), std=(0.2,), normalize=False).setup()  # unused
