"""Import paths that configs written before the DataModules moved still name keep working for
one release, with a DeprecationWarning that names the new path."""

from __future__ import annotations

import pytest

from multispike.pipelines.cli import main


def test_old_datamodule_path_resolves_to_the_same_class_with_a_warning():
    import multispike.distill.data as old
    from multispike.pipelines.data import CIFAR10DataModule, DigitsDataModule

    with pytest.warns(DeprecationWarning, match="multispike.pipelines.data.DigitsDataModule"):
        assert old.DigitsDataModule is DigitsDataModule
    with pytest.warns(DeprecationWarning):
        assert old.CIFAR10DataModule is CIFAR10DataModule
    with pytest.raises(AttributeError):
        old.NoSuchDataModule  # noqa: B018


def test_a_config_naming_the_old_path_still_parses(tmp_path, capsys):
    argv = ["convert", "--model", "ms_resnet20", "--output", str(tmp_path / "out"),
            "--data", "multispike.distill.data.DigitsDataModule", "--print_config"]  # fmt: skip
    with pytest.warns(DeprecationWarning):
        assert main(argv) == 0
    assert "DigitsDataModule" in capsys.readouterr().out
