"""tools/pack_cifar10.py, through its command line (``main(argv)``, in this process): lossless
WebP parts rebuild the npz bit for bit, or the script says why not."""


import numpy as np
import pytest


@pytest.fixture(scope="module")
def tool(import_tool):
    """The ``tools/pack_cifar10.py`` module."""
    return import_tool("pack_cifar10")


@pytest.fixture(scope="module")
def packed(tool, tmp_path_factory):
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
    tool.main(["pack", "--source", str(folder / "src.npz"), "--output", str(folder / "packed"),
               "--parts", "2", "--processes", "1"])  # fmt: skip
    return arrays, folder / "packed"


def test_parts_rebuild_the_npz_bit_for_bit(tool, packed, tmp_path, capsys):
    arrays, parts = packed
    tool.main(["unpack", str(parts / "part1"), "--work", str(tmp_path / "work"),
               "--output", str(tmp_path / "data")])  # fmt: skip
    assert not (tmp_path / "data").exists()  # nothing is written before the last part
    tool.main(["unpack", str(parts / "part2"), "--work", str(tmp_path / "work"),
               "--output", str(tmp_path / "data")])  # fmt: skip
    assert "every array matches its SHA-256" in capsys.readouterr().out
    with np.load(tmp_path / "data" / "cifar10" / "cifar10-full.npz") as rebuilt:
        assert sorted(rebuilt.files) == sorted(arrays)
        for key, array in arrays.items():
            np.testing.assert_array_equal(rebuilt[key], array)


def test_a_missing_part_is_caught_by_the_hashes(tool, packed, tmp_path):
    _, parts = packed
    with pytest.raises(SystemExit) as alone:
        tool.main(["unpack", str(parts / "part2"), "--work", str(tmp_path / "work"),
                   "--output", str(tmp_path / "data")])  # fmt: skip
    assert alone.value.code != 0
    assert "part2: rebuilt arrays differ from the source's: train_x" in str(alone.value)
    assert "unpack every part, in order, into the same --work folder" in str(alone.value)
    assert not (tmp_path / "data").exists()
