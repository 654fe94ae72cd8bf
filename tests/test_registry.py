"""Every zoo model (``timm.list_models("ms_*")``) converts, and its SNN equals its QANN at T = 1."""

import pytest
import timm
import torch
from torch import nn

import multispike.zoo  # noqa: F401  (registers the zoo)
from multispike.convert import calibrate, conversion_report, to_snn

ZOO = timm.list_models("ms_*")


def test_zoo_is_registered_in_timm():
    assert {"ms_resnet20", "ms_resnet56", "ms_vgg16_bn_cifar"} <= set(ZOO)


@pytest.mark.parametrize("name", ZOO)
def test_zoo_model_converts_exactly(name):
    model = timm.create_model(name).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    shape = model.pretrained_cfg["input_size"]
    qann = calibrate(model, [torch.randn(4, *shape)], levels=4, progress=False)
    snn = to_snn(qann, timesteps=1)
    x = torch.randn(2, *shape)
    with torch.no_grad():
        out = snn(x)
        assert out.shape == (1, 2, model.num_classes)
        assert torch.equal(out[0], qann(x))
    assert not conversion_report(snn).unsupported
