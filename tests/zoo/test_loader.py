"""``multispike.zoo.load_model``: an explicit file first, then the local data folder, then
timm's hub; a given checkpoint never reaches the network."""

from __future__ import annotations

import socket

import pytest
import timm
import timm.models._builder as timm_builder
import torch
from safetensors.torch import save_file

from multispike.zoo import load_model
from multispike.zoo.paths import ENV_VAR


@pytest.fixture
def offline(monkeypatch):
    """Every connection attempt fails, as on a machine without a network."""

    def refuse(*args, **kwargs):
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def _saved(tmp_path, name: str, **kwargs) -> tuple[str, dict]:
    model = timm.create_model(name, **kwargs)
    for tensor in model.state_dict().values():
        if tensor.is_floating_point():
            tensor.normal_()
    path = tmp_path / f"{name}.safetensors"
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path))
    return str(path), state


def _same(model: torch.nn.Module, state: dict) -> bool:
    own = model.state_dict()
    return set(own) == set(state) and all(torch.equal(own[k], v) for k, v in state.items())


def test_a_given_checkpoint_never_downloads(tmp_path, offline):
    path, state = _saved(tmp_path, "resnet18", num_classes=10)
    with pytest.raises(OSError, match="network disabled"):
        socket.create_connection(("example.org", 80))  # the fixture works
    model = load_model("resnet18", checkpoint=path, pretrained=True, num_classes=10)
    assert _same(model, state) and not model.training


def test_pretrained_prefers_the_local_data_folder(tmp_path, monkeypatch, offline):
    folder = tmp_path / "weights" / "akamaster-cifar10-resnet"
    folder.mkdir(parents=True)
    model = timm.create_model("ms_resnet20")
    state = {"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}
    torch.save(state, folder / "resnet20-12fca82f.th")
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    loaded = load_model("ms_resnet20", pretrained=True)
    assert _same(loaded, model.state_dict())
    assert loaded.pretrained_cfg["file"] == str(folder / "resnet20-12fca82f.th")


def test_pretrained_without_a_local_copy_asks_timm(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path))  # an empty data folder
    source = timm.create_model("ms_resnet32")
    calls = []

    def fake_download(url, **kwargs):
        calls.append(url)
        return {"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}

    monkeypatch.setattr(timm_builder, "load_state_dict_from_url", fake_download)
    model = load_model("ms_resnet32", pretrained=True)
    assert calls == [model.pretrained_cfg["url"]] and _same(model, source.state_dict())


def test_unknown_names_and_missing_files_are_named(tmp_path):
    with pytest.raises(ValueError, match="'ms_resnet21' is not a timm model.*ms_resnet"):
        load_model("ms_resnet21")
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_model("ms_resnet20", checkpoint=str(tmp_path / "nope.pth"))


def test_local_weights_name_a_data_folder_setting_that_is_not_a_folder(tmp_path, monkeypatch):
    from multispike.zoo import pretrained_path

    monkeypatch.setenv(ENV_VAR, str(tmp_path / "typo"))
    with pytest.raises(FileNotFoundError, match=rf"{ENV_VAR}=\S*typo is not a folder.*resnet20"):
        pretrained_path("ms_resnet20")
    monkeypatch.setenv(ENV_VAR, str(tmp_path))  # a folder, without the weights in it
    with pytest.raises(FileNotFoundError, match="looked for .*akamaster-cifar10-resnet"):
        pretrained_path("ms_resnet20")
