"""benchmarks/pack_cifar10.py: lossless WebP parts rebuild the npz bit for bit, or say why not."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "pack_cifar10.py"
spec = importlib.util.spec_from_file_location("pack_cifar10", SCRIPT)
pack_cifar10 = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = pack_cifar10  # the worker pool pickles its functions by module
spec.loader.exec_module(pack_cifar10)


@pytest.fixture
def source(tmp_path):
    """A CIFAR-10-shaped npz: 250 train / 120 test images (strips that end short too)."""
    rng = np.random.default_rng(0)
    arrays = {
        "train_x": rng.integers(0, 256, (250, 32, 32, 3), dtype=np.uint8),
        "test_x": rng.integers(0, 256, (120, 32, 32, 3), dtype=np.uint8),
        "train_y": rng.integers(0, 10, 250, dtype=np.uint8),
        "test_y": rng.integers(0, 10, 120, dtype=np.uint8),
        "label_names": np.array([f"class{i}" for i in range(10)]),
    }
    path = tmp_path / "src.npz"
    np.savez(path, **arrays)
    return path, arrays


def test_parts_rebuild_the_npz_bit_for_bit(source, tmp_path):
    path, arrays = source
    pack_cifar10.pack(path, tmp_path / "packed", parts=2, processes=1)
    pack_cifar10.unpack(tmp_path / "packed" / "part1", tmp_path / "work", tmp_path / "data")
    assert not (tmp_path / "data").exists()  # nothing is written before the last part
    pack_cifar10.unpack(tmp_path / "packed" / "part2", tmp_path / "work", tmp_path / "data")
    with np.load(tmp_path / "data" / "cifar10" / "cifar10-full.npz") as rebuilt:
        assert sorted(rebuilt.files) == sorted(arrays)
        for key, array in arrays.items():
            np.testing.assert_array_equal(rebuilt[key], array)


def test_a_missing_part_is_caught_by_the_hashes(source, tmp_path):
    path, _ = source
    pack_cifar10.pack(path, tmp_path / "packed", parts=2, processes=1)
    with pytest.raises(SystemExit, match="part2: rebuilt arrays differ .*train_x"):
        pack_cifar10.unpack(tmp_path / "packed" / "part2", tmp_path / "work", tmp_path / "data")
