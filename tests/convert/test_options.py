"""CalibrationOptions: one check per field, ``apply`` is calibrate (+ rewire, + reconstruct)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from multispike.convert import (
    CalibrationOptions,
    calibrate,
    quantizers,
    reconstruct,
    rewire_residual,
)

pytestmark = pytest.mark.usefixtures("one_thread")


class _Residual(nn.Module):
    """conv → ReLU → a residual block → pool → linear: one join to rewire."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

    def forward(self, x):
        x = self.stem(x)
        return self.head(self.act(self.conv(x) + x))


BATCHES = [torch.randn(16, 1, 6, 6, generator=torch.Generator().manual_seed(i)) for i in range(2)]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"levels": 0}, "--levels must be >= 1 and <= 65535, got 0"),
        ({"levels": 65_536}, "--levels must be >= 1 and <= 65535, got 65536"),
        ({"calibration_images": 0}, "--calibration_images must be >= 1, got 0"),
        ({"reconstruct_iterations": -1}, "--reconstruct_iterations must be >= 1, got -1"),
        ({"calibration": "max"}, "--calibration must be one of percentile, mse, reconstruct"),
        ({"percentile": 0.0}, r"--percentile must be in \(0, 100\], got 0.0"),
        ({"percentile": 100.5}, r"--percentile must be in \(0, 100\], got 100.5"),
    ],
)
def test_a_field_out_of_range_is_one_error_naming_it(fields, message):
    with pytest.raises(ValueError, match=message):
        CalibrationOptions(**fields)


def test_defaults_are_those_of_the_convert_command_and_frozen():
    options = CalibrationOptions()
    assert dataclasses.asdict(options) == {
        "levels": 4, "per_channel": False, "calibration": "percentile", "percentile": 99.9,
        "calibration_images": 1024, "reconstruct_iterations": 500,
    }  # fmt: skip
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.levels = 8  # type: ignore[misc]


@pytest.mark.parametrize("method", ["percentile", "mse"])
def test_apply_is_calibrate_with_the_same_options(method):
    model = _Residual().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    options = CalibrationOptions(levels=3, per_channel=True, calibration=method, percentile=99.0)
    qann = options.apply(model, BATCHES, progress=False)
    expected = calibrate(model, BATCHES, 3, per_channel=True, method=method, percentile=99.0,
                         progress=False)  # fmt: skip
    assert qann.state_dict().keys() == expected.state_dict().keys()
    for key, value in expected.state_dict().items():
        assert torch.equal(qann.state_dict()[key], value), key
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_reconstruct_is_mse_then_rewiring_then_reconstruction():
    model = _Residual().eval()
    options = CalibrationOptions(levels=2, calibration="reconstruct", calibration_images=24,
                                 reconstruct_iterations=5)  # fmt: skip
    qann = options.apply(model, BATCHES, residual="sew", progress=False)
    mse = rewire_residual(calibrate(model, BATCHES, 2, method="mse", progress=False), "sew",
                          BATCHES, method="mse", progress=False)  # fmt: skip
    expected = reconstruct(mse, BATCHES, images=24, iterations=5, progress=False)
    assert list(quantizers(qann)) == ["stem.1", "join_in0"]  # rewired: SEW joins
    for key, value in expected.state_dict().items():
        assert torch.equal(qann.state_dict()[key], value), key
    moved = [n for n, q in quantizers(qann).items() if q.threshold != quantizers(mse)[n].threshold]
    assert moved  # the reconstruction ran


def test_record_is_the_calibration_entry_of_the_convert_report():
    options = CalibrationOptions(calibration="mse", calibration_images=64)
    assert options.record() == {
        "images": 64, "method": "mse", "percentile": 99.9, "reconstruct_iterations": 500,
    }  # fmt: skip
