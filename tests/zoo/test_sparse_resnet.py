"""Sparse-/SEW-ResNet zoo entries: timm interface, join forms, T=1 exactness, shared weights."""

import pytest
import timm
import torch

import multispike.zoo  # noqa: F401  (registers the models)
from multispike.convert import calibrate, residual_joins, to_snn
from multispike.convert.residual import is_spike_stream
from multispike.zoo import pretrained_path

SMALL = ["ms_sparse_resnet20", "ms_sew_resnet20"]
MODELS = [
    *SMALL,
    *[
        pytest.param(name, marks=pytest.mark.slow)
        for name in (
            "ms_sparse_resnet18",
            "ms_sparse_resnet19",
            "ms_sew_resnet18",
            "ms_sew_resnet19",
        )  # fmt: skip
    ],
]


def test_every_entry_is_registered():
    names = set(timm.list_models("ms_sparse_*")) | set(timm.list_models("ms_sew_*"))
    assert names == {f"ms_{form}_resnet{d}" for form in ("sparse", "sew") for d in (18, 19, 20)}


@pytest.mark.parametrize("name", MODELS)
def test_join_form_and_exact_conversion(name):
    model = timm.create_model(name).eval()
    images = torch.randn(2, 3, 32, 32)
    assert model.forward_head(model.forward_features(images)).shape == (2, 10)
    qann = calibrate(model, [images], 4, progress=False)
    joins = residual_joins(qann)
    assert joins
    if "sparse" in name:
        assert all(j.barrier is not None for j in joins)  # a neuron after every join
    else:
        assert all(j.barrier is None for j in joins)
        assert all(is_spike_stream(qann, arg) for j in joins for arg in j.inputs)
    assert torch.equal(to_snn(qann)(images)[0], qann(images))
    model.reset_classifier(5)
    assert model(images).shape == (2, 5)


def test_sparse_resnet20_loads_the_shared_weights(need_data):
    need_data("weights/akamaster-cifar10-resnet")
    file = str(pretrained_path("ms_resnet20"))
    kwargs = dict(pretrained=True, pretrained_cfg_overlay=dict(file=file))
    sparse = timm.create_model("ms_sparse_resnet20", **kwargs).eval()
    plain = timm.create_model("ms_resnet20", **kwargs).eval()
    images = torch.randn(2, 3, 32, 32)
    assert torch.equal(sparse(images), plain(images))
    sew = timm.create_model("ms_sew_resnet20", **kwargs)  # same keys, different function
    assert sew.state_dict().keys() == plain.state_dict().keys()
