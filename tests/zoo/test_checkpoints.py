"""Checkpoint loading: wrapper layouts, third-party names, timm's pretrained hook, clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import timm
import timm.models._builder as timm_builder
import torch
from safetensors.torch import save_file

from multispike.zoo import CheckpointError, load_checkpoint, pretrained_path
from multispike.zoo.paths import ENV_VAR


@pytest.fixture
def source() -> torch.nn.Module:
    """A ResNet-20 with non-default BN statistics, so a load is visible in every tensor."""
    model = timm.create_model("ms_resnet20")
    for name, buf in model.named_buffers():
        if name.endswith("running_mean"):
            buf.normal_()
    return model


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sb = b.state_dict()
    return all(torch.equal(v, sb[k]) for k, v in a.state_dict().items())


def _prefixed(state_dict: dict, prefix: str) -> dict:
    return {prefix + k: v for k, v in state_dict.items()}


LAYOUTS = {
    "raw": lambda sd: sd,
    "state_dict": lambda sd: {"state_dict": sd, "best_prec1": 91.0},
    "model_state_dict": lambda sd: {"model_state_dict": sd, "epoch": 3},
    "model": lambda sd: {"model": sd},
    "net": lambda sd: {"net": sd, "acc": 0.9},
    "dataparallel": lambda sd: {"state_dict": _prefixed(sd, "module.")},
    "lightning": lambda sd: {"state_dict": _prefixed(sd, "model."), "epoch": 1},
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_load_checkpoint_accepts_common_layouts(tmp_path, source, layout):
    path = tmp_path / "ckpt.pth"
    torch.save(LAYOUTS[layout](source.state_dict()), path)
    target = timm.create_model("ms_resnet20")
    assert not _same_weights(source, target)
    assert load_checkpoint(target, path) is target
    assert _same_weights(source, target)


def test_load_checkpoint_reads_safetensors(tmp_path, source):
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    target = load_checkpoint(timm.create_model("ms_resnet20"), path)
    assert _same_weights(source, target)


def test_third_party_names_map_onto_zoo_keys(tmp_path):
    # timm-style CIFAR ResNets (e.g. chenyaofo/pytorch-cifar-models) call the head ``fc``, the
    # option-B shortcut ``downsample``, and old checkpoints lack ``num_batches_tracked``.
    source = timm.create_model("ms_resnet20", shortcut="B")
    renamed = {
        k.replace("linear.", "fc.").replace(".shortcut.", ".downsample."): v
        for k, v in source.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    assert any(k.startswith("fc.") for k in renamed) and any(".downsample." in k for k in renamed)
    torch.save(renamed, tmp_path / "third_party.pt")
    target = load_checkpoint(
        timm.create_model("ms_resnet20", shortcut="B"), tmp_path / "third_party.pt"
    )
    assert _same_weights(source, target)


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        load_checkpoint(timm.create_model("ms_resnet20"), path)


def test_other_architecture_lists_keys_and_the_file(tmp_path):
    path = tmp_path / "resnet32.pth"
    torch.save(timm.create_model("ms_resnet32").state_dict(), path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(timm.create_model("ms_resnet20"), path)
    message = str(err.value)
    assert str(path) in message
    assert "unexpected keys" in message and "layer1.3.conv1.weight" in message
    assert "missing keys" not in message


def test_model_missing_keys_are_listed(tmp_path):
    path = tmp_path / "resnet20.pth"
    torch.save(timm.create_model("ms_resnet20").state_dict(), path)
    with pytest.raises(CheckpointError, match=r"missing keys: .*layer1\.3\.conv1\.weight") as err:
        load_checkpoint(timm.create_model("ms_resnet32"), path)
    missing = set(timm.create_model("ms_resnet32").state_dict()) - set(torch.load(path))
    missing = {k for k in missing if not k.endswith("num_batches_tracked")}  # filled in
    message = str(err.value)  # every key counted, one entry per module, the first eight named
    assert f"{len(missing)} missing keys: layer1.3.bn1.{{bias,running_mean,running_var," in message
    modules = {k.rpartition(".")[0] for k in missing}
    assert f"… ({len(modules) - 8} more modules)" in message


def test_wrong_num_classes_names_the_shape_mismatch(tmp_path, source):
    path = tmp_path / "ten.pth"
    torch.save(source.state_dict(), path)
    target = timm.create_model("ms_resnet20", num_classes=100)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(target, path)
    message = str(err.value)
    assert "linear.weight: checkpoint (10, 64) vs model (100, 64)" in message
    assert "a wrong --num_classes?" in message and "\n" not in message


@pytest.mark.parametrize(
    ("payload", "match"),
    [([1, 2, 3], "holds a list"), ({"epoch": 3, "best": 0.5}, "no tensors found")],
)
def test_not_a_state_dict(tmp_path, payload, match):
    path = tmp_path / "odd.pth"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(timm.create_model("ms_resnet20"), path)


def test_unsafe_pickle_is_refused_with_advice(tmp_path):
    path = tmp_path / "pickled_model.pth"
    torch.save(timm.create_model("ms_resnet20"), path)  # a whole module, not a state dict
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_checkpoint(timm.create_model("ms_resnet20"), path)


# timm's own entry point: create_model(pretrained=True, pretrained_cfg_overlay=dict(file=...))


def test_timm_pretrained_file_overlay(tmp_path, source):
    path = tmp_path / "net.pth"
    torch.save({"net": _prefixed(source.state_dict(), "module.")}, path)
    model = timm.create_model(
        "ms_resnet20", pretrained=True, pretrained_cfg_overlay=dict(file=str(path))
    )
    assert _same_weights(source, model)


def test_timm_pretrained_with_new_head_keeps_the_backbone(tmp_path, source):
    path = tmp_path / "ten.pth"
    torch.save(source.state_dict(), path)
    model = timm.create_model(
        "ms_resnet20", pretrained=True, num_classes=5, pretrained_cfg_overlay=dict(file=str(path))
    )
    assert model.get_classifier().out_features == 5
    assert torch.equal(model.layer3[2].conv2.weight, source.layer3[2].conv2.weight)
    assert torch.equal(model.bn1.running_mean, source.bn1.running_mean)


def test_timm_pretrained_adapts_the_stem_to_in_chans(tmp_path, source):
    path = tmp_path / "rgb.pth"
    torch.save(source.state_dict(), path)
    model = timm.create_model(
        "ms_resnet20", pretrained=True, in_chans=1, pretrained_cfg_overlay=dict(file=str(path))
    )
    # timm's adapt_input_conv sums the RGB filters for a 1-channel input.
    assert torch.allclose(model.conv1.weight, source.conv1.weight.sum(1, keepdim=True))
    assert torch.equal(model.linear.weight, source.linear.weight)


def test_timm_pretrained_without_weights_says_so():
    with pytest.raises(RuntimeError, match="No pretrained weights exist for ms_vgg11_bn_cifar"):
        timm.create_model("ms_vgg11_bn_cifar", pretrained=True)


def test_timm_pretrained_missing_file(tmp_path):
    path = tmp_path / "absent.th"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        timm.create_model(
            "ms_resnet20", pretrained=True, pretrained_cfg_overlay=dict(file=str(path))
        )


def test_timm_pretrained_other_architecture(tmp_path):
    path = tmp_path / "vgg.pth"
    torch.save(timm.create_model("ms_vgg11_bn_cifar").state_dict(), path)
    with pytest.raises(CheckpointError, match=r"(?s)vgg\.pth.*missing keys.*conv1\.weight"):
        timm.create_model(
            "ms_resnet20", pretrained=True, pretrained_cfg_overlay=dict(file=str(path))
        )


def test_timm_pretrained_goes_through_the_hub_path(monkeypatch, source):
    """No file: timm downloads the registered URL (mocked here) and our hook unwraps it."""
    calls = []

    def fake_download(url, **kwargs):
        calls.append(url)
        return {"state_dict": _prefixed(source.state_dict(), "module."), "best_prec1": 91.78}

    monkeypatch.setattr(timm_builder, "load_state_dict_from_url", fake_download)
    model = timm.create_model("ms_resnet20", pretrained=True)
    assert calls == [model.pretrained_cfg["url"]]
    assert calls[0].endswith(
        "pytorch_resnet_cifar10/raw/master/pretrained_models/resnet20-12fca82f.th"
    )
    assert _same_weights(source, model)


def test_pretrained_path_resolves_in_the_data_folder(tmp_path, monkeypatch):
    folder = tmp_path / "weights" / "akamaster-cifar10-resnet"
    folder.mkdir(parents=True)
    (folder / "resnet32-d509ac18.th").write_bytes(b"")
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert pretrained_path("ms_resnet32") == folder / "resnet32-d509ac18.th"
    assert pretrained_path("resnet32") == folder / "resnet32-d509ac18.th"
    with pytest.raises(FileNotFoundError, match=r"resnet20-\*\.th; set " + ENV_VAR):
        pretrained_path("ms_resnet20")


def test_shared_checkpoints_load_with_no_key_left_over(need_data):
    folder = need_data("weights/akamaster-cifar10-resnet")  # skips first without the data
    for depth in (20, 32, 44, 56):
        path = pretrained_path(f"ms_resnet{depth}")
        assert Path(path).is_relative_to(folder)
        raw = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
        model = load_checkpoint(timm.create_model(f"ms_resnet{depth}"), path)
        # Every tensor of the file lands in the model (``module.`` stripped), none is left over.
        own = model.state_dict()
        assert {k.removeprefix("module.") for k in raw} <= set(own)
        assert all(torch.equal(v, own[k.removeprefix("module.")]) for k, v in raw.items())
