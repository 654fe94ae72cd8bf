"""Event data: binning, clipping/normalisation, the three event DataModules, real N-MNIST."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from multispike.pipelines.data import (
    CIFAR10DVSDataModule,
    DataNotFoundError,
    DataSpecError,
    DVSGestureDataModule,
    EventFrames,
    NMNISTDataModule,
    events_to_frames,
    read_nmnist,
)
from multispike.pipelines.data import cifar10dvs as cifar10dvs_module

DTYPE = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])


def _stream(counts: np.ndarray, bin_us: int, seed: int = 0) -> np.ndarray:
    """Events realising ``counts[f, p, y, x]``, bin f covering ``[f * bin_us, (f + 1) * bin_us)``.

    The first bin starts with an event at t = 0 and the last ends with one at its last µs, so
    the recording spans exactly ``F * bin_us`` µs; both anchors are part of ``counts``.
    """
    rng = np.random.default_rng(seed)
    frames = counts.shape[0]
    rows = []
    for (f, p, y, x), n in np.ndenumerate(counts):
        for _ in range(n):
            rows.append((x, y, f * bin_us + int(rng.integers(1, bin_us - 1)), p))
    events = np.array(rows, dtype=DTYPE)
    first = np.flatnonzero(events["t"] < bin_us)[0]
    last = np.flatnonzero(events["t"] >= (frames - 1) * bin_us)[-1]
    events["t"][first], events["t"][last] = 0, frames * bin_us - 1
    return events[rng.permutation(len(events))]  # order must not matter


@pytest.mark.parametrize("frames", [1, 3, 4])
def test_binning_gives_exact_counts(frames):
    rng = np.random.default_rng(frames)
    counts = rng.integers(0, 4, size=(frames, 2, 5, 7))
    counts[0, 0, 0, 0] = counts[-1, 1, 4, 6] = 1  # bins holding the anchors are non-empty
    events = _stream(counts, bin_us=1000)
    got = events_to_frames(events, sensor_size=(7, 5, 2), frames=frames)
    assert got.shape == (frames, 2, 5, 7) and got.dtype == np.int64
    np.testing.assert_array_equal(got, counts)
    np.testing.assert_array_equal(events_to_frames(events, (7, 5, 2), 1)[0], counts.sum(0))


def test_binning_edge_cases():
    empty = np.zeros(0, dtype=DTYPE)
    assert events_to_frames(empty, (4, 3, 2), 2).shape == (2, 2, 3, 4)
    assert events_to_frames(empty, (4, 3, 2), 2).sum() == 0
    one = np.array([(1, 2, 50, 1)], dtype=DTYPE)
    frames = events_to_frames(one, (4, 3, 2), 3)
    assert frames[0, 1, 2, 1] == 1 and frames.sum() == 1
    with pytest.raises(ValueError, match="outside the sensor 4x3x2"):
        events_to_frames(np.array([(4, 0, 0, 0)], dtype=DTYPE), (4, 3, 2), 1)
    with pytest.raises(ValueError, match="frames must be >= 1"):
        events_to_frames(one, (4, 3, 2), 0)


def test_event_frames_clip_resize_normalise():
    counts = np.zeros((2, 2, 4, 4), dtype=np.int64)
    counts[0, 0, :2, :2] = [[1, 5], [0, 2]]
    counts[1, 1, 3, 3] = 7
    counts[0, 1, 0, 0] = counts[1, 0, 3, 3] = 1
    events = _stream(counts, bin_us=100)
    x = EventFrames((4, 4, 2), frames=2, clip=3)(events)
    assert torch.equal(x, torch.from_numpy(counts).float().clamp(max=3))
    pooled = EventFrames((4, 4, 2), frames=2, clip=3, image_size=2, mean=(0, 0), std=(3, 3))(events)
    assert pooled.shape == (2, 2, 2, 2)
    assert pooled[0, 0, 0, 0] == pytest.approx((1 + 3 + 0 + 2) / 4 / 3)
    assert pooled[1, 1, 1, 1] == pytest.approx(3 / 4 / 3)


def _write_nmnist(path, events) -> None:
    """Encode events in N-MNIST's 5-byte format (x, y, p<<7 | t>>16, t>>8, t)."""
    raw = np.zeros((len(events), 5), dtype=np.uint8)
    raw[:, 0], raw[:, 1] = events["x"], events["y"]
    raw[:, 2] = (events["p"] << 7) | ((events["t"] >> 16) & 0x7F)
    raw[:, 3], raw[:, 4] = (events["t"] >> 8) & 0xFF, events["t"] & 0xFF
    path.write_bytes(raw.tobytes())


@pytest.fixture
def fake_nmnist(tmp_path):
    """A tonic-style N-MNIST root: Train/<digit>/*.bin and Test/<digit>/*.bin."""
    rng = np.random.default_rng(0)
    recordings = {}
    for split, digits in (("Train", [0, 3, 3, 7]), ("Test", [1, 9])):
        for i, digit in enumerate(digits):
            counts = rng.integers(0, 3, size=(2, 2, 34, 34))
            counts[0, 0, 0, 0] = counts[-1, 1, 33, 33] = 1
            folder = tmp_path / "NMNIST" / split / str(digit)
            folder.mkdir(parents=True, exist_ok=True)
            _write_nmnist(folder / f"{i:05d}.bin", _stream(counts, bin_us=150_000, seed=i))
            recordings[(split, digit, i)] = counts
    return tmp_path, recordings


def test_nmnist_reader_round_trip_and_module(fake_nmnist):
    root, recordings = fake_nmnist
    dm = NMNISTDataModule(root, frames=2, batch_size=8, normalize=False)
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (2, 2, 2, 34, 34) and y.tolist() == [1, 9]
    assert torch.equal(x[0], torch.from_numpy(recordings[("Test", 1, 0)]).float())
    x, y = next(iter(NMNISTDataModule(root, frames=1).train_dataloader()))  # 4 * 10 % → no val
    assert x.shape == (4, 1, 2, 34, 34) and sorted(y.tolist()) == [0, 3, 3, 7]
    calib_x, calib_y = next(iter(dm.calibration_dataloader(3)))
    assert calib_x.shape == (6, 2, 34, 34) and calib_y.shape == (6,)
    assert calib_y[0] == calib_y[1]  # the two frames of one recording share its label


def test_nmnist_download_only_when_allowed(tmp_path, monkeypatch):
    import tonic

    calls = []
    monkeypatch.setattr(tonic.datasets, "NMNIST", lambda save_to, train: calls.append(train))
    NMNISTDataModule(tmp_path).prepare_data()
    assert calls == []
    NMNISTDataModule(tmp_path, download=True).prepare_data()
    assert calls == [True, False]
    with pytest.raises(
        DataNotFoundError, match=r"train\*.txt.*Train/<digit>/\*.bin.*download=True"
    ):
        NMNISTDataModule(tmp_path).setup()


def test_nmnist_sample_lists_name_missing_files(tmp_path):
    (tmp_path / "train9.txt").write_text("#sample #class\n1 5\n2 0\n")
    (tmp_path / "test9.txt").write_text("#sample #class\n3 1\n")
    _write_nmnist(tmp_path / "1.bs2", np.array([(1, 1, 0, 0)], dtype=DTYPE))
    with pytest.raises(DataNotFoundError, match=r"train9.txt lists 1 recordings absent.*2.bin"):
        NMNISTDataModule(tmp_path).setup()
    (tmp_path / "test9.txt").write_text("3 one\n")
    with pytest.raises(DataNotFoundError, match=r"test9.txt:1: expected '<id> <label>'"):
        NMNISTDataModule(tmp_path)._listing("test")


def test_real_nmnist_samples(need_data):
    root = need_data("nmnist")
    path = root / "1.bs2"
    events = read_nmnist(path)
    assert len(events) == path.stat().st_size // 5  # no overflow markers in these files
    assert (
        events["x"].max() <= 33
        and events["y"].max() <= 33
        and set(np.unique(events["p"])) == {0, 1}
    )
    assert 250_000 < events["t"].max() < 350_000  # ~300 ms, three saccades
    frames = events_to_frames(events, (34, 34, 2), 3)
    assert frames.sum() == len(events) and (frames.sum((1, 2, 3)) > 0).all()
    dm = NMNISTDataModule(root, frames=3, batch_size=4, normalize=False, val_size=0)
    dm.setup()
    assert len(dm.train_dataset) == 1000 and len(dm.test_dataset) == 100
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (4, 3, 2, 34, 34) and y.tolist() == [7, 2, 1, 0]  # test100.txt, first four
    first = read_nmnist(root / "60001.bs2")
    assert torch.equal(x[0], torch.from_numpy(events_to_frames(first, (34, 34, 2), 3)).float())
    clipped = NMNISTDataModule(root, frames=1, clip=2, batch_size=4)
    xc, _ = next(iter(clipped.test_dataloader()))
    assert xc.max() == 1.0 and xc.min() == 0.0 and clipped.std == (2.0, 2.0)


def test_dvsgesture_fake_tree(tmp_path):
    rows = np.array([[3, 4, 1, 0], [3, 4, 1, 5], [127, 0, 0, 9]], dtype=np.int64)  # x y p t(ms)
    for split, user, label in (("Train", 1, 4), ("Train", 2, 10), ("Test", 24, 0)):
        folder = tmp_path / "DVSGesture" / f"ibmGesture{split}" / f"user{user:02d}_led"
        folder.mkdir(parents=True)
        np.save(folder / f"{label}.npy", rows)
    dm = DVSGestureDataModule(tmp_path, frames=2, batch_size=4, normalize=False)
    assert dm.num_classes == 11 and dm.input_shape == (2, 128, 128)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (2, 2, 2, 128, 128) and sorted(y.tolist()) == [4, 10]
    assert x[0, 0, 1, 4, 3] == 1 and x[0, 1, 1, 4, 3] == 1 and x[0, 1, 0, 0, 127] == 1
    assert x.sum() == 6
    import shutil

    shutil.rmtree(tmp_path / "DVSGesture" / "ibmGestureTest")
    with pytest.raises(DataNotFoundError, match="test split not found: expected ibmGestureTest"):
        DVSGestureDataModule(tmp_path).setup()


def test_cifar10dvs_split_and_reader(tmp_path, monkeypatch):
    for name in cifar10dvs_module.CLASSES:
        (tmp_path / name).mkdir()
        for i in range(10):
            (tmp_path / name / f"cifar10_{name}_{i}.aedat4").touch()
    dtype = np.dtype([("t", np.uint64), ("x", np.uint16), ("y", np.uint16), ("p", bool)])
    monkeypatch.setattr(
        cifar10dvs_module,
        "read_cifar10dvs",
        lambda path: np.array([(0, 5, 6, True), (10, 5, 6, True)], dtype=dtype),
    )
    dm = CIFAR10DVSDataModule(tmp_path, image_size=32, batch_size=200, normalize=False)
    dm.setup()
    assert len(dm.train_dataset) == 81 and len(dm.val_dataset) == 9 and len(dm.test_dataset) == 10
    assert all(f.name.endswith("_9.aedat4") for f in dm.test_dataset.files)
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (10, 1, 2, 32, 32) and y.tolist() == list(range(10))
    assert x[0, 0, 1, 1, 1] == pytest.approx(2 / 16)  # 2 events in a 4x4 area-pooled cell
    with pytest.raises(DataNotFoundError, match="one folder per class"):
        CIFAR10DVSDataModule(tmp_path / "missing").setup()


@pytest.mark.parametrize("cls", [CIFAR10DVSDataModule, DVSGestureDataModule])
def test_dvs_download_only_when_allowed(cls, tmp_path, monkeypatch):
    import tonic

    calls = []

    def fake(save_to, train=None):
        calls.append((save_to, train))

    monkeypatch.setattr(tonic.datasets, cls.__name__.removesuffix("DataModule"), fake)
    cls(tmp_path).prepare_data()
    assert calls == []
    cls(tmp_path, download=True).prepare_data()
    assert calls and all(save_to == str(tmp_path) for save_to, _ in calls)


def test_event_options_are_hyperparameters(fake_nmnist):
    dm = NMNISTDataModule(fake_nmnist[0], frames=4, clip=2.0, batch_size=3)
    assert dict(dm.hparams) | {"frames": 4, "clip": 2.0, "batch_size": 3} == dict(dm.hparams)
    assert dm.input_shape == (2, 34, 34) and dm.std == (2.0, 2.0) and dm.mean == (0.0, 0.0)


@pytest.mark.parametrize("size", [0, 2, 7])
def test_a_truncated_nmnist_recording_is_named(fake_nmnist, size):
    root, _ = fake_nmnist
    bad = root / "NMNIST" / "Test" / "9" / "00001.bin"
    bad.write_bytes(bad.read_bytes()[:size])
    with pytest.raises(DataNotFoundError, match=f"{bad}: {size} bytes, not a whole number of 5"):
        read_nmnist(bad)
    dataset = NMNISTDataModule(root)._source("test", None)
    assert len(dataset[0][0]) > 0  # the good recording still reads
    with pytest.raises(DataNotFoundError, match=f"{bad}: {size} bytes") as info:
        dataset[1]
    assert "\n" not in str(info.value)


def test_an_unreadable_recording_is_named(fake_nmnist):
    root, _ = fake_nmnist
    bad = root / "NMNIST" / "Test" / "9" / "00001.bin"
    _write_nmnist(bad, np.array([(40, 1, 0, 0), (1, 1, 9, 1)], dtype=DTYPE))  # x beyond 33
    dataset = NMNISTDataModule(root)._source("test", NMNISTDataModule(root).transform(False))
    with pytest.raises(DataNotFoundError, match=f"recording {bad} cannot be used .*outside"):
        dataset[1]


def test_labels_outside_the_classes_are_named(tmp_path):
    (tmp_path / "train9.txt").write_text("#sample #class\n1 5\n2 10\n")
    with pytest.raises(DataSpecError, match=r"train9.txt:3: label 10 is outside 0..9"):
        NMNISTDataModule(tmp_path)._listing("train")
    rows = np.array([[3, 4, 1, 0]], dtype=np.int64)
    for name in ("3", "11", "left"):
        folder = tmp_path / "DVSGesture" / "ibmGestureTrain" / f"user01_{name}"
        folder.mkdir(parents=True)
        np.save(folder / f"{name}.npy", rows)
        if name == "3":
            assert DVSGestureDataModule(tmp_path)._source("train", None).labels == [3]
            continue
        with pytest.raises(DataSpecError, match=f"{folder / name}.npy: the file name must be"):
            DVSGestureDataModule(tmp_path)._source("train", None)
        (folder / f"{name}.npy").unlink()
