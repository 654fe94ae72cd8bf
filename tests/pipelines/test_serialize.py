"""Save → load round trips are bit-exact; corrupt or mismatched directories are refused."""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from importlib import metadata
from pathlib import Path

import pytest
import timm
import torch
from torch import nn

from multispike.convert import calibrate, neurons, to_snn
from multispike.pipelines import load, save
from multispike.pipelines.folder import CONFIG_FILE, WEIGHTS_FILE, ModelFileError

NAME, KWARGS = "test_resnet", {"num_classes": 7}
SHAPE = (3, 16, 16)


def _ann() -> nn.Module:
    model = timm.create_model(NAME, **KWARGS).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so folding matters
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.3)
    return model


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(4, *SHAPE, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def qann_layer(images):
    return calibrate(_ann(), [images], levels=4, progress=False)


@pytest.fixture(scope="module")
def qann_channel(images):
    return calibrate(_ann(), [images], levels=3, per_channel=True, progress=False)


@pytest.fixture
def saved(tmp_path, qann_layer) -> Path:
    return save(
        to_snn(qann_layer, timesteps=2), tmp_path / "m", model_name=NAME, model_kwargs=KWARGS
    )


def _roundtrip(model, tmp_path, images):
    directory = save(model, tmp_path / "model", model_name=NAME, model_kwargs=KWARGS)
    rebuilt = load(directory)
    assert type(rebuilt) is type(model) or isinstance(rebuilt, torch.fx.GraphModule)
    with torch.no_grad():
        assert torch.equal(model(images), rebuilt(images))
    return rebuilt


def test_snn_per_layer_roundtrip_is_bit_exact(tmp_path, qann_layer, images):
    snn = to_snn(qann_layer, max_spikes=4, timesteps=2)
    rebuilt = _roundtrip(snn, tmp_path, images)
    assert rebuilt.timesteps == 2
    assert {n: m.max_spikes for n, m in neurons(rebuilt.net).items()} == {
        n: 4 for n in neurons(snn.net)
    }


def test_qann_per_channel_roundtrip_is_bit_exact(tmp_path, qann_channel, images):
    rebuilt = _roundtrip(qann_channel, tmp_path, images)
    assert rebuilt.meta["multispike"]["per_channel"] is True


def test_snn_per_channel_roundtrip_is_bit_exact(tmp_path, qann_channel, images):
    _roundtrip(to_snn(qann_channel, max_spikes=2, timesteps=3), tmp_path, images)


def test_binary_snn_roundtrip_over_four_steps(tmp_path, qann_layer, images):
    snn = to_snn(qann_layer, max_spikes=1, timesteps=4)
    rebuilt = _roundtrip(snn, tmp_path, images)
    assert rebuilt(images).shape == (4, 4, 7)
    assert all(m.max_spikes == 1 for m in neurons(rebuilt.net).values())


def test_per_layer_spike_counts_are_restored(tmp_path, qann_layer, images):
    snn = to_snn(qann_layer, max_spikes=2)
    first = next(iter(neurons(snn.net).values()))
    first.max_spikes = 5  # one layer differs from the model-wide N
    rebuilt = _roundtrip(snn, tmp_path, images)
    assert next(iter(neurons(rebuilt.net).values())).max_spikes == 5


def test_sparse_rewired_roundtrip_is_bit_exact(tmp_path, qann_layer, images):
    residual = pytest.importorskip("multispike.convert.residual")
    rewired = residual.rewire_residual(qann_layer, mode="sparse")
    assert rewired.meta["multispike"].get("transforms"), "rewiring must record itself"
    _roundtrip(to_snn(rewired, max_spikes=2, timesteps=2), tmp_path, images)


def test_save_leaves_model_untouched_and_records_config(tmp_path, qann_layer):
    snn = to_snn(qann_layer, timesteps=2)
    before = {k: v.clone() for k, v in snn.state_dict().items()}
    save(snn, tmp_path, model_name=NAME, model_kwargs=dict(KWARGS, pretrained=True))
    assert all(torch.equal(before[k], v) for k, v in snn.state_dict().items())
    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert config["architecture"]["model_kwargs"] == KWARGS  # pretrained is never replayed
    assert config["kind"] == "snn" and config["timesteps"] == 2 and config["max_spikes"] == 4
    assert set(config["versions"]) == {"multispike", "torch", "timm"}
    assert set(config["layers"]) == set(neurons(snn.net))


def test_save_rejects_unknown_model_name(tmp_path, qann_layer):
    with pytest.raises(ValueError, match="not_a_model"):
        save(qann_layer, tmp_path, model_name="not_a_model")


def test_save_rejects_plain_module(tmp_path):
    with pytest.raises(TypeError, match="Linear"):
        save(nn.Linear(2, 2), tmp_path, model_name=NAME)


def test_corrupt_weights_are_refused(saved):
    path = saved / WEIGHTS_FILE
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=f"{WEIGHTS_FILE}.*corrupt"):
        load(saved)


def test_weights_in_parts_load_the_same_model_and_are_checked(saved, images, tmp_path):
    """A folder whose weights are cut into parts (for git) loads bit for bit; a changed part
    fails the recorded SHA-256."""
    from multispike.zoo import parts

    whole = load(saved)
    parts.split_file(saved / WEIGHTS_FILE, max_mib=20_000 / (1 << 20))
    assert len(parts.part_files(saved / WEIGHTS_FILE)) > 1
    with torch.no_grad():
        assert torch.equal(load(saved)(images), whole(images))
    last = parts.part_files(saved / WEIGHTS_FILE)[-1]
    last.write_bytes(last.read_bytes()[:-1] + b"\0")
    with pytest.raises(ModelFileError, match=f"{WEIGHTS_FILE}.*corrupt"):
        load(saved)


def _rehash(saved) -> None:
    """Record the weights file's current SHA-256, so the checks behind the hash are reached."""
    config = json.loads((saved / CONFIG_FILE).read_text())
    config["weights"]["sha256"] = hashlib.sha256((saved / WEIGHTS_FILE).read_bytes()).hexdigest()
    (saved / CONFIG_FILE).write_text(json.dumps(config))


def test_truncated_weights_with_a_matching_checksum_are_refused(saved):
    path = saved / WEIGHTS_FILE
    path.write_bytes(path.read_bytes()[:100])
    _rehash(saved)
    with pytest.raises(ModelFileError, match=f"{WEIGHTS_FILE} is not a readable safetensors"):
        load(saved)


def test_weights_of_another_architecture_are_refused(saved, tmp_path, images):
    other = calibrate(timm.create_model(NAME, num_classes=3), [images], levels=4, progress=False)
    other_dir = save(to_snn(other, timesteps=2), tmp_path / "other", model_name=NAME,
                     model_kwargs={"num_classes": 3})  # fmt: skip
    (saved / WEIGHTS_FILE).write_bytes((other_dir / WEIGHTS_FILE).read_bytes())
    _rehash(saved)
    with pytest.raises(ModelFileError, match=r"shape mismatch.*fc\.weight"):
        load(saved)


def test_thresholds_differing_from_weights_are_refused(saved):
    config = json.loads((saved / CONFIG_FILE).read_text())
    first = next(iter(config["layers"]))
    config["layers"][first]["threshold"] = 123.0
    (saved / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(ModelFileError, match=f"threshold of {first}"):
        load(saved)


def test_newer_format_version_is_refused(saved):
    config = json.loads((saved / CONFIG_FILE).read_text())
    config["format_version"] = 99
    (saved / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(ModelFileError, match="format_version 99.*upgrade multispike"):
        load(saved)


def test_library_minor_version_mismatch_warns(saved, images):
    config = json.loads((saved / CONFIG_FILE).read_text())
    config["versions"]["timm"] = "0.1.0"
    (saved / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.warns(UserWarning, match="timm 0.1.0"):
        load(saved)


def test_roundtrip_from_an_uninstalled_source_tree(tmp_path, qann_layer, images, monkeypatch):
    """Run from a checkout on ``PYTHONPATH`` (no distribution metadata): save records the
    version as null and load, which then has nothing to compare, rebuilds bit-exactly."""
    real_version = metadata.version

    def version(lib: str) -> str:
        if lib == "multispike":
            raise metadata.PackageNotFoundError(lib)
        return real_version(lib)

    monkeypatch.setattr(metadata, "version", version)
    snn = to_snn(qann_layer, timesteps=2)
    directory = save(snn, tmp_path / "m", model_name=NAME, model_kwargs=KWARGS)
    assert json.loads((directory / CONFIG_FILE).read_text())["versions"]["multispike"] is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about either
        rebuilt = load(directory)
    with torch.no_grad():
        assert torch.equal(snn(images), rebuilt(images))


def test_unknown_transform_is_refused(saved):
    config = json.loads((saved / CONFIG_FILE).read_text())
    config["transforms"] = [{"name": "teleport"}]
    (saved / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(ModelFileError, match="'teleport'"):
        load(saved)


def test_invalid_json_is_refused(saved):
    (saved / CONFIG_FILE).write_text("{not json")
    with pytest.raises(ModelFileError, match=f"{CONFIG_FILE} is not valid JSON"):
        load(saved)


def test_saving_again_writes_the_same_bytes_with_the_usual_permissions(tmp_path, qann_layer):
    snn = to_snn(qann_layer, timesteps=2)
    first = save(snn, tmp_path / "a", model_name=NAME, model_kwargs=KWARGS)
    digests = set()
    for i in range(4):  # safetensors orders several metadata keys at random: one key only
        again = save(snn, tmp_path / f"b{i}", model_name=NAME, model_kwargs=KWARGS)
        digests.add(hashlib.sha256((again / WEIGHTS_FILE).read_bytes()).hexdigest())
    assert digests == {hashlib.sha256((first / WEIGHTS_FILE).read_bytes()).hexdigest()}
    umask = os.umask(0)
    os.umask(umask)
    mode = (first / WEIGHTS_FILE).stat().st_mode & 0o777
    assert mode == (first / CONFIG_FILE).stat().st_mode & 0o777 == 0o666 & ~umask


def test_tied_weights_are_written_once_per_name(tmp_path):
    from safetensors.torch import load_file

    from multispike.pipelines.folder.weights_file import write_safetensors

    shared = torch.arange(6.0).view(2, 3)
    path = write_safetensors(
        {"a.weight": shared, "b.weight": shared, "c": shared.t()}, tmp_path / "w"
    )
    read = load_file(str(path))
    assert torch.equal(read["a.weight"], shared) and torch.equal(read["c"], shared.t())


def test_missing_config_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=CONFIG_FILE):
        load(tmp_path)


def test_a_folder_that_is_no_model_folder_says_what_it_is(saved, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere does not exist"):
        load(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"is a file, not a model folder.*--checkpoint"):
        load(saved / WEIGHTS_FILE)
    inside = f"model folders inside it: {re.escape(str(saved))}"
    with pytest.raises(FileNotFoundError, match=inside):
        load(saved.parent)  # a run's stage folder, the model one level down
    weights_only = tmp_path / "ann"
    weights_only.mkdir()
    (weights_only / "model.safetensors").write_bytes((saved / WEIGHTS_FILE).read_bytes())
    with pytest.raises(FileNotFoundError, match=r"holds weights but no config.json.*--checkpoint"):
        load(weights_only)
