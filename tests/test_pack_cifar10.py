"""benchmarks/pack_cifar10.py, run as a user runs it: lossless WebP parts rebuild the npz bit for
bit, or the script says why not."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "pack_cifar10.py"


def run_script(*args: object) -> subprocess.CompletedProcess:
    """``python benchmarks/pack_cifar10.py ARGS`` in a subprocess (output captured)."""
    command = [sys.executable, str(SCRIPT), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """A CIFAR-10-shaped npz (250 train / 120 test images: strips that end short too), packed
    into 2 parts by ``pack``; returns the arrays and the parts' folder.

    Each image is one random colour plus 3 random bits per pixel: every pixel still has to
    come back exactly, and WebP encodes it 4x faster than full-range noise.
    """
    folder = tmp_path_factory.mktemp("pack")
    rng = np.random.default_rng(0)

    def images(n: int) -> np.ndarray:
        colour = rng.integers(0, 248, (n, 1, 1, 3), dtype=np.uint8)
        return colour + rng.integers(0, 8, (n, 32, 32, 3), dtype=np.uint8)

    arrays = {
        "train_x": images(250),
        "test_x": images(120),
        "train_y": rng.integers(0, 10, 250, dtype=np.uint8),
        "test_y": rng.integers(0, 10, 120, dtype=np.uint8),
        "label_names": np.array([f"class{i}" for i in range(10)]),
    }
    np.savez(folder / "src.npz", **arrays)
    done = run_script("pack", "--source", folder / "src.npz", "--output", folder / "packed",
                      "--parts", 2, "--processes", 1)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return arrays, folder / "packed"


def test_parts_rebuild_the_npz_bit_for_bit(packed, tmp_path):
    arrays, parts = packed
    first = run_script("unpack", parts / "part1", "--work", tmp_path / "work",
                       "--output", tmp_path / "data")  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert not (tmp_path / "data").exists()  # nothing is written before the last part
    last = run_script("unpack", parts / "part2", "--work", tmp_path / "work",
                      "--output", tmp_path / "data")  # fmt: skip
    assert last.returncode == 0, last.stderr
    assert "every array matches its SHA-256" in last.stdout
    with np.load(tmp_path / "data" / "cifar10" / "cifar10-full.npz") as rebuilt:
        assert sorted(rebuilt.files) == sorted(arrays)
        for key, array in arrays.items():
            np.testing.assert_array_equal(rebuilt[key], array)


def test_a_missing_part_is_caught_by_the_hashes(packed, tmp_path):
    _, parts = packed
    alone = run_script("unpack", parts / "part2", "--work", tmp_path / "work",
                       "--output", tmp_path / "data")  # fmt: skip
    assert alone.returncode != 0
    assert "part2: rebuilt arrays differ from the source's: train_x" in alone.stderr
    assert "unpack every part, in order, into the same --work folder" in alone.stderr
    assert not (tmp_path / "data").exists()
