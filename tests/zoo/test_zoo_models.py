"""Every ``ms_*`` zoo model: builds through timm, keeps timm's interface, converts exactly."""

from __future__ import annotations

import fnmatch

import pytest
import timm
import torch

import multispike.zoo  # noqa: F401  (registers the models)
from multispike.convert import calibrate, to_snn

EXCLUDE = ("ms_sparse*", "ms_sew*")  # zoo/sparse_resnet.py has its own tests
MODELS = [
    name
    for name in timm.list_models("ms_*")
    if not any(fnmatch.fnmatch(name, pattern) for pattern in EXCLUDE)
]
BIG = 1_000_000  # models above this many parameters get the slow mark where the test is heavy

# Literature parameter counts at 10 classes: He et al. 2016 Table 6 / Idelbayev's
# pytorch_resnet_cifar10 (ResNet-20..56), kuangliu/pytorch-cifar (ResNet-18, VGG-11/16-BN).
REFERENCE_PARAMS = {
    "ms_resnet20": 269_722,
    "ms_resnet32": 464_154,
    "ms_resnet44": 658_586,
    "ms_resnet56": 853_018,
    "ms_resnet18_cifar": 11_173_962,
    "ms_vgg11_bn_cifar": 9_231_114,
    "ms_vgg16_bn_cifar": 14_728_266,
}


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _input(name: str, batch: int = 2) -> torch.Tensor:
    cfg = timm.get_pretrained_cfg(name)
    return torch.randn(batch, *cfg.input_size)


def _heavy(name: str) -> pytest.param:
    big = _params(timm.create_model(name)) > BIG
    return pytest.param(name, marks=pytest.mark.slow) if big else name


HEAVY = [_heavy(name) for name in MODELS]  # the same list, big models marked slow


def test_registry_lists_the_families():
    expected = {"ms_resnet20", "ms_resnet32", "ms_resnet44", "ms_resnet56", "ms_resnet18_cifar"}
    expected |= {"ms_resnet19_cifar", "ms_vgg11_bn_cifar", "ms_vgg16_bn_cifar", "ms_vgg_dvs"}
    assert expected <= set(MODELS)
    assert set(timm.list_pretrained("ms_resnet*")) >= {
        f"ms_resnet{d}.akamaster_cifar10" for d in (20, 32, 44, 56)
    }


@pytest.mark.parametrize("name", MODELS)
def test_builds_and_runs_at_its_input_size(name):
    model = timm.create_model(name, num_classes=7).eval()
    x = _input(name)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    assert model.num_classes == 7
    assert model.in_chans == x.shape[1]
    assert model.pretrained_cfg["architecture"] == name


@pytest.mark.parametrize("name", sorted(REFERENCE_PARAMS))
def test_parameter_count_matches_the_literature(name):
    assert _params(timm.create_model(name)) == REFERENCE_PARAMS[name]


def _resnet_b_params(stem: int, widths, blocks, hidden: int, classes: int) -> int:
    """Count a CIFAR ResNet with option-B shortcuts from its plan (convs without bias)."""
    total = 3 * 9 * stem + 2 * stem
    cin = stem
    for i, (width, depth) in enumerate(zip(widths, blocks, strict=True)):
        for j in range(depth):
            total += 9 * cin * width + 2 * width + 9 * width * width + 2 * width
            if cin != width or (i > 0 and j == 0):
                total += cin * width + 2 * width
            cin = width
    if hidden:
        total += cin * hidden + hidden
        cin = hidden
    return total + cin * classes + classes


def test_resnet19_matches_its_plan():
    # The same counting rule reproduces kuangliu's ResNet-18 (11,173,962) …
    assert _resnet_b_params(64, (64, 128, 256, 512), (2, 2, 2, 2), 0, 10) == 11_173_962
    # … and gives ResNet-19 (Zheng et al. 2021): 128/256/512 × 3/3/2 blocks, FC 256.
    model = timm.create_model("ms_resnet19_cifar", num_classes=100)
    assert _params(model) == _resnet_b_params(128, (128, 256, 512), (3, 3, 2), 256, 100)
    assert model.forward_head(torch.randn(2, 512, 8, 8), pre_logits=True).shape == (2, 256)


def test_event_vgg_flattens_a_3x3_map():
    model = timm.create_model("ms_vgg_dvs", num_classes=11)
    assert model.pretrained_cfg["input_size"] == (2, 48, 48)
    assert model.get_classifier().in_features == 512 * 3 * 3
    wide = timm.create_model("ms_vgg_dvs", img_size=64, num_classes=11)
    assert wide.get_classifier().in_features == 512 * 4 * 4
    assert wide(torch.randn(1, 2, 64, 64)).shape == (1, 11)


@pytest.mark.parametrize("name", HEAVY)
def test_timm_interface(name):
    model = timm.create_model(name).eval()
    x = _input(name)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape[1] == model.num_features
        assert torch.equal(model.forward_head(features), model(x))
        pre_logits = model.forward_head(features, pre_logits=True)
        assert pre_logits.shape == (2, model.head_hidden_size)
        classifier = model.get_classifier()
        assert classifier.out_features == 10
        model.reset_classifier(5)
        assert model.get_classifier() is not classifier
        assert model(x).shape == (2, 5)
        model.reset_classifier(0)
        assert model(x).shape == (2, model.head_hidden_size)


@pytest.mark.parametrize("name", HEAVY)
def test_features_only_matches_feature_info(name):
    model = timm.create_model(name, features_only=True).eval()
    x = _input(name, batch=1)
    with torch.no_grad():
        maps = model(x)
    assert [m.shape[1] for m in maps] == model.feature_info.channels()
    assert [x.shape[-1] // m.shape[-1] for m in maps] == model.feature_info.reduction()


def test_cifar_resnet_shortcuts():
    a = timm.create_model("ms_resnet20")
    b = timm.create_model("ms_resnet20", shortcut="B")
    assert _params(a) == 269_722
    # Option B adds a 1×1 conv + BN at the two shape changes (16→32, 32→64).
    assert _params(b) - _params(a) == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    x = torch.arange(2 * 16 * 4 * 4, dtype=torch.float32).reshape(2, 16, 4, 4)
    out = a.layer2[0].shortcut(x)
    assert out.shape == (2, 32, 2, 2)
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2])
    assert not out[:, :8].any() and not out[:, 24:].any()
    with pytest.raises(ValueError, match="shortcut"):
        timm.create_model("ms_resnet20", shortcut="C")


@pytest.mark.parametrize("name", HEAVY)
def test_converts_to_an_exact_one_step_snn(name):
    model = timm.create_model(name).eval()
    x = _input(name)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    qann = calibrate(model, [x], levels=4, progress=False)
    snn = to_snn(qann)
    with torch.no_grad():
        assert torch.equal(snn(x)[0], qann(x))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
