"""Weights stored in parts: the joined bytes are the original file's, every reader takes them."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from multispike.zoo import load_checkpoint, load_model, parts, paths


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """torch's hub cache in a temporary folder, so joined files land there."""
    directory = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(directory))
    return directory


def test_split_then_read_gives_the_original_bytes(tmp_path):
    path = tmp_path / "w.bin"
    data = bytes(range(256)) * 41  # 10,496 bytes → parts of 4,096, 4,096, 2,304
    path.write_bytes(data)
    written = parts.split_file(path, max_mib=4096 / (1 << 20))
    assert [p.name for p in written] == ["w.bin.part00", "w.bin.part01", "w.bin.part02"]
    assert [p.stat().st_size for p in written] == [4096, 4096, 2304]
    assert not path.exists() and parts.exists(path)
    assert parts.read_bytes(path) == data
    path.write_bytes(data)
    with pytest.raises(FileExistsError, match="already has parts"):
        parts.split_file(path)


def test_a_missing_part_or_file_is_named(tmp_path):
    path = tmp_path / "w.bin"
    path.write_bytes(b"x" * 3000)
    parts.split_file(path, max_mib=1000 / (1 << 20))
    (tmp_path / "w.bin.part01").unlink()
    with pytest.raises(FileNotFoundError, match=r"w\.bin\.part01 is missing"):
        parts.read_bytes(path)
    with pytest.raises(FileNotFoundError, match=r"nothere\.bin not found \(nor its parts"):
        parts.read_bytes(tmp_path / "nothere.bin")
    assert not parts.exists(tmp_path / "nothere.bin")


def test_joined_file_is_cached_by_content(tmp_path, hub):
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"a" * 300)
    assert parts.joined_file(path) == path  # a whole file is used where it is
    parts.split_file(path, max_mib=100 / (1 << 20))
    joined = parts.joined_file(path)
    assert joined.parent == hub / "checkpoints" / "multispike"
    assert joined.read_bytes() == b"a" * 300 and joined.suffix == ".safetensors"
    (tmp_path / "w.safetensors.part02").write_bytes(b"b" * 100)  # other content, other file
    other = parts.joined_file(path)
    assert other != joined and other.read_bytes() == b"a" * 200 + b"b" * 100


def test_a_checkpoint_in_parts_loads_like_the_whole_file(tmp_path, hub):
    model = load_model("ms_airbench_relu")
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    parts.split_file(path, max_mib=1.0)
    loaded = load_checkpoint(load_model("ms_airbench_relu"), path)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())


def test_committed_weights_in_parts_load_with_pretrained(tmp_path, hub, monkeypatch):
    model = load_model("ms_airbench_relu")
    file = tmp_path / "benchmarks" / "airbench.safetensors"
    file.parent.mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(file))
    parts.split_file(file, max_mib=1.0)
    monkeypatch.setattr(paths, "_REPOSITORY", tmp_path)
    monkeypatch.setitem(paths.REPO_WEIGHTS, "ms_airbench_relu", "benchmarks/airbench.safetensors")
    pretrained = load_model("ms_airbench_relu", pretrained=True)
    assert all(torch.equal(v, pretrained.state_dict()[k]) for k, v in model.state_dict().items())
    (tmp_path / "benchmarks" / "airbench.safetensors.part00").unlink()
    with pytest.raises(FileNotFoundError, match="part00 is missing"):
        load_model("ms_airbench_relu", pretrained=True)
