"""Unsupported models fail with a ConversionError that lists every culprit."""

import pytest
import timm
import torch
from torch import nn

from multispike.convert import ConversionError, calibrate

UNSUPPORTED = {
    "vit_tiny_patch16_224": ("layer_norm", "gelu"),
    "efficientnet_b0": ("SiLU", "product of two signals"),
    "convnext_atto": ("layer_norm", "gelu"),
}


@pytest.mark.parametrize("name", list(UNSUPPORTED))
def test_unsupported_timm_models_list_every_culprit(name):
    model = timm.create_model(name, num_classes=10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ConversionError) as info:
        calibrate(model, [torch.randn(1, 3, 224, 224)], progress=False)
    message = str(info.value)
    assert name in message and "Supported:" in message
    for culprit in UNSUPPORTED[name]:
        assert culprit.lower() in message.lower()
    assert len(info.value.culprits) > 5  # every site, not only the first
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_sigmoid_gate_is_named_by_module_path():
    class Gated(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)
            self.gate = nn.Sigmoid()

        def forward(self, x):
            y = torch.relu(self.conv(x))
            return y * self.gate(y)

    with pytest.raises(ConversionError) as info:
        calibrate(Gated(), [torch.randn(1, 3, 8, 8)], progress=False)
    where = [w for w, _ in info.value.culprits]
    assert "module gate (Sigmoid)" in where
    assert any("mul" in w for w in where)


def test_model_without_relu_and_untraceable_model():
    with pytest.raises(ConversionError, match="no ReLU"):
        calibrate(nn.Sequential(nn.Conv2d(3, 4, 1)), [torch.randn(1, 3, 8, 8)], progress=False)

    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)

        def forward(self, x):
            return torch.relu(self.conv(x)) if x.sum() > 0 else x

    with pytest.raises(ConversionError, match="cannot trace Branchy.forward"):
        calibrate(Branchy(), [torch.randn(1, 3, 8, 8)], progress=False)


def test_bad_arguments():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU())
    with pytest.raises(ValueError, match="levels"):
        calibrate(model, [torch.randn(1, 3, 8, 8)], levels=0, progress=False)
    with pytest.raises(TypeError, match="calibration data"):
        calibrate(model, ["not a tensor"], progress=False)
