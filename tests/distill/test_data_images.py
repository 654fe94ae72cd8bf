"""Image DataModules: digits, random, CIFAR (fake npz, fake torchvision root, the real npz)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from multispike.pipelines.data import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    DataNotFoundError,
    DataSpecError,
    DigitsDataModule,
    ImageTransform,
    RandomDataModule,
    TensorImageDataset,
)


def _all(loader):
    xs, ys = zip(*loader, strict=True)
    return torch.cat(xs), torch.cat(ys)


@pytest.fixture
def fake_cifar(tmp_path):
    """A tiny CIFAR-10 npz with known pixels: image i is filled with value 10 * i."""
    rng = np.random.default_rng(0)
    train_x = np.stack([np.full((32, 32, 3), 10 * i, np.uint8) for i in range(12)])
    train_x[:, 0, 0, :] = [0, 128, 255]  # one distinct pixel per channel
    test_x = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    path = tmp_path / "tiny.npz"
    np.savez(path, train_x=train_x, train_y=np.arange(12) % 10, test_x=test_x, test_y=np.arange(6))
    return path, train_x, test_x


def test_digits_shapes_split_and_determinism():
    dm = DigitsDataModule(batch_size=1000, augment=False, normalize=False)
    train, val, test = (
        _all(loader()) for loader in (dm.train_dataloader, dm.val_dataloader, dm.test_dataloader)
    )
    assert dm.input_shape == (1, 8, 8) and dm.num_classes == 10
    assert len(train[0]) + len(val[0]) + len(test[0]) == 1797
    assert len(test[0]) == round(0.2 * 1797) and len(val[0]) == 144
    assert train[0].min() >= 0 and train[0].max() == 1.0  # pixels 0..16 scaled to [0, 1]
    assert set(torch.cat([train[1], val[1], test[1]]).tolist()) == set(range(10))
    again = DigitsDataModule(batch_size=1000, augment=False, normalize=False)
    assert torch.equal(_all(again.test_dataloader())[0], test[0])  # fixed split
    # the three splits partition the 1,797 images: same multiset of (image, label) pairs
    from sklearn.datasets import load_digits

    digits = load_digits()
    probe = torch.rand(64, dtype=torch.float64)

    def keys(images, labels):
        return torch.sort(images.double().flatten(1) @ probe + 100 * labels.double()).values

    everything = [torch.cat(parts) for parts in zip(train, val, test, strict=True)]
    reference = torch.as_tensor(digits.images, dtype=torch.float32) / 16.0
    assert torch.equal(keys(*everything), keys(reference, torch.as_tensor(digits.target)))


def test_digits_resize_channels_and_normalisation():
    dm = DigitsDataModule(image_size=16, channels=3, batch_size=8, augment=False)
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (8, 3, 16, 16) and dm.input_shape == (3, 16, 16)
    assert torch.equal(x[:, 0], x[:, 2])
    raw = DigitsDataModule(image_size=16, channels=3, batch_size=8, augment=False, normalize=False)
    x_raw, _ = next(iter(raw.test_dataloader()))
    assert torch.allclose(x, (x_raw - 0.3053) / 0.3760, atol=1e-6)


def test_digits_augmentation_shifts_train_only():
    aug, plain = DigitsDataModule(seed=1), DigitsDataModule(seed=1, augment=False)
    (xa, ya), (xp, yp) = next(iter(aug.train_dataloader())), next(iter(plain.train_dataloader()))
    assert torch.equal(ya, yp)  # same seeded shuffle, so the same images
    assert not torch.equal(xa, xp)
    assert torch.equal(next(iter(aug.test_dataloader()))[0], next(iter(plain.test_dataloader()))[0])


def test_random_module_is_seeded_and_shaped():
    dm = RandomDataModule(input_shape=(2, 5, 7), num_classes=3, num_samples=20, batch_size=8)
    x, y = _all(dm.train_dataloader())
    assert x.shape == (18, 2, 5, 7) and y.max() < 3 and dm.mean == (0.0, 0.0)  # 2 held out
    x2, _ = _all(
        RandomDataModule(
            input_shape=(2, 5, 7), num_classes=3, num_samples=20
        ).calibration_dataloader(18)
    )
    assert torch.equal(x.sort(0).values, x2.sort(0).values)
    with pytest.raises(ValueError, match="input_shape"):
        RandomDataModule(input_shape=(3, 32))


def test_cifar_npz_exact_pixels_and_normalisation(fake_cifar):
    path, train_x, test_x = fake_cifar
    dm = CIFAR10DataModule(
        path, batch_size=4, augment=False, mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0)
    )
    x, y = _all(dm.test_dataloader())
    expected = (torch.from_numpy(test_x).permute(0, 3, 1, 2).float() / 255 - 0.5) / torch.tensor(
        [0.25, 0.5, 1.0]
    ).view(3, 1, 1)
    assert torch.allclose(x, expected, atol=1e-6) and torch.equal(y, torch.arange(6))
    assert dm.std == (0.25, 0.5, 1.0)
    default = CIFAR10DataModule(path, augment=False)
    assert default.mean == (0.485, 0.456, 0.406) and default.std == (0.229, 0.224, 0.225)


def test_cifar_augmentation_is_crop_and_flip(fake_cifar):
    path, train_x, _ = fake_cifar
    dm = CIFAR10DataModule(path, batch_size=12, normalize=False, seed=3)
    x, y = _all(dm.train_dataloader())
    assert x.shape == (11, 3, 32, 32)  # one of the 12 held out for validation
    levels = (x * 255).round().long()
    for img, label in zip(levels, y, strict=True):
        fills = {
            10 * int(label),
            10 * (int(label) + 10),
        }  # image i (label i % 10) is filled with 10 * i
        assert set(torch.unique(img).tolist()) <= fills | {0, 128, 255}
    assert (x == 0).any()  # padding appears somewhere after random crops


def test_cifar_val_holdout_and_calibration(fake_cifar):
    path, _, _ = fake_cifar
    dm = CIFAR10DataModule(path, batch_size=32, val_size=4, augment=False)
    train, val = _all(dm.train_dataloader()), _all(dm.val_dataloader())
    assert len(train[0]) == 8 and len(val[0]) == 4
    calib = _all(dm.calibration_dataloader(100))[0]
    assert len(calib) == 8  # only training images, never the hold-out
    means = {round(v, 4) for v in train[0][:, :, 5, 5].mean(1).tolist()}
    assert means == {round(v, 4) for v in calib[:, :, 5, 5].mean(1).tolist()}
    with pytest.raises(DataSpecError, match="val_size=12"):
        CIFAR10DataModule(path, val_size=12).setup()


def test_setup_builds_only_the_stage_splits(fake_cifar):
    dm = CIFAR10DataModule(fake_cifar[0], val_size=2)
    dm.setup("test")
    assert dm.train_dataset is None and dm.val_dataset is None and len(dm.test_dataset) == 6
    assert set(dm._arrays) == {"test"}  # the training arrays were not even loaded
    dm.setup("fit")
    assert len(dm.train_dataset) == 10 and len(dm.val_dataset) == 2
    loader = dm.val_dataloader()
    assert loader.dataset is dm.val_dataset


def test_cifar_missing_data_errors(tmp_path):
    with pytest.raises(DataNotFoundError, match="cifar-10-batches-py.*download=True"):
        CIFAR10DataModule(tmp_path / "nowhere").setup()
    with pytest.raises(DataNotFoundError, match="nope.npz"):
        CIFAR10DataModule(tmp_path / "nope.npz").setup()
    bad = tmp_path / "bad.npz"
    np.savez(bad, images=np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(DataNotFoundError, match="lacks 'train_x'"):
        CIFAR10DataModule(bad).setup()
    (tmp_path / "broken" / "cifar-10-batches-py").mkdir(parents=True)
    with pytest.raises(DataNotFoundError, match="missing or corrupt"):
        CIFAR10DataModule(tmp_path / "broken").setup()


def test_a_data_folder_setting_that_is_not_a_folder_is_named(tmp_path, monkeypatch):
    from multispike.pipelines.data import NMNISTDataModule

    monkeypatch.setenv("MULTISPIKE_DATA", str(tmp_path / "typo"))
    with pytest.raises(DataNotFoundError, match=r"MULTISPIKE_DATA=\S*typo is not a folder"):
        CIFAR10DataModule().setup()
    with pytest.raises(DataNotFoundError, match=r"MULTISPIKE_DATA=\S*typo is not a folder"):
        NMNISTDataModule().setup()


def test_cifar_torchvision_download_only_when_allowed(tmp_path, monkeypatch):
    import torchvision.datasets

    calls = []

    class FakeCIFAR10:
        def __init__(self, root, train, download, transform=None):
            calls.append((root, train, download))

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    with pytest.raises(DataNotFoundError):
        CIFAR10DataModule(tmp_path).prepare_data()
    CIFAR10DataModule(tmp_path, download=True).prepare_data()
    assert calls == [(str(tmp_path), True, True), (str(tmp_path), False, True)]


def test_cifar100_npz_with_all_labels_subset(tmp_path):
    path = tmp_path / "c100.npz"
    np.savez(
        path,
        train_x=np.zeros((3, 32, 32, 3), np.uint8),
        test_x=np.zeros((2, 32, 32, 3), np.uint8),
        train_fine_labels_all=np.array([99, 5, 7, 1, 1]),
        test_fine_labels_all=np.array([42, 0, 3]),
    )
    dm = CIFAR100DataModule(path, batch_size=8)
    assert dm.num_classes == 100 and dm.mean == (0.5071, 0.4865, 0.4409)
    assert _all(dm.train_dataloader())[1].sort().values.tolist() == [5, 7, 99]
    assert _all(dm.test_dataloader())[1].tolist() == [42, 0]


@pytest.mark.slow
def test_real_cifar10_npz(need_data):
    path = need_data("cifar10/cifar10-full.npz")
    dm = CIFAR10DataModule(path, batch_size=500, augment=False)
    dm.setup()
    assert len(dm.train_dataset) == 45000 and len(dm.test_dataset) == 10000
    assert len(dm.val_dataset) == 5000  # held out of the 50,000 training images
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (500, 3, 32, 32) and y.min() >= 0 and y.max() <= 9
    with np.load(path) as arrays:
        first = torch.from_numpy(arrays["test_x"][:500]).permute(0, 3, 1, 2).float() / 255
        assert torch.equal(y, torch.from_numpy(arrays["test_y"][:500]).long())
    mean, std = torch.tensor(dm.mean).view(3, 1, 1), torch.tensor(dm.std).view(3, 1, 1)
    assert torch.allclose(x, (first - mean) / std, atol=1e-5)
    assert abs(x.mean().item()) < 0.3  # roughly centred by the ImageNet statistics


def test_calibration_loader_feeds_calibrate():
    from torch import nn

    from multispike.convert import calibrate, quantizers

    dm = DigitsDataModule(batch_size=32)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
    qann = calibrate(model, dm.calibration_dataloader(64), levels=4, progress=False)
    assert all(q.threshold.item() > 0 for q in quantizers(qann).values())
    x, _ = next(iter(dm.test_dataloader()))
    assert qann(x).shape == (32, 10)


def test_batched_transform_equals_per_image():
    images = torch.randint(0, 256, (6, 3, 5, 5), dtype=torch.uint8)
    transform = ImageTransform(mean=(0.1, 0.2, 0.3), std=(0.5, 0.6, 0.7))
    dataset = TensorImageDataset(images, torch.arange(6), transform)
    batched = dataset.__getitems__([4, 1, 2])
    single = [dataset[i] for i in (4, 1, 2)]
    for (xb, yb), (xs, ys) in zip(batched, single, strict=True):
        assert torch.equal(xb, xs) and yb == ys
    expected = (
        images[4].float() / 255 - torch.tensor([0.1, 0.2, 0.3]).view(3, 1, 1)
    ) / torch.tensor([0.5, 0.6, 0.7]).view(3, 1, 1)
    assert torch.allclose(single[0][0], expected, atol=1e-6)
    flip = ImageTransform([v2.RandomHorizontalFlip(p=1.0)], random=True)
    flipped = TensorImageDataset(images, torch.arange(6), flip).__getitems__([0, 3])
    assert torch.allclose(flipped[1][0], images[3].flip(-1).float() / 255, atol=1e-6)


def test_batch_crop_and_flip_match_the_per_image_transforms():
    from multispike.pipelines.data.batch_augment import random_crop, random_flip

    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6) + 1
    generator = torch.Generator().manual_seed(0)
    crops = [random_crop(x, 2, generator) for _ in range(20)]
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    offsets = set()
    for crop in crops:
        assert crop.shape == x.shape
        for b in range(2):  # every image is the padded image at one offset in [0, 4]²
            found = [(dy, dx) for dy in range(5) for dx in range(5)
                     if torch.equal(crop[b], padded[b, :, dy : dy + 6, dx : dx + 6])]  # fmt: skip
            assert len(found) == 1
            offsets.add(found[0])
    assert len(offsets) > 10  # offsets are drawn per image, across the whole range
    flips = random_flip(x, torch.Generator().manual_seed(1))
    for b in range(2):
        assert torch.equal(flips[b], x[b]) or torch.equal(flips[b], x[b].flip(-1))
    again = random_crop(x, 2, torch.Generator().manual_seed(0))
    assert torch.equal(again, crops[0])  # seeded


def test_reflect_translation_is_a_window_of_the_mirrored_image(fake_cifar):
    """crop_padding=2, padding_mode='reflect' (airbench's translate): every training image, per
    image or batched, is a 32×32 window of the image mirrored by 2 pixels (numpy's pad)."""
    dm = CIFAR10DataModule(fake_cifar[0], crop_padding=2, padding_mode="reflect")
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    mirrored = torch.as_tensor(np.pad(images.numpy(), ((0, 0), (0, 0), (2, 2), (2, 2)), "reflect"))
    windows = lambda b: [mirrored[b, :, i : i + 32, j : j + 32] for i in range(5) for j in range(5)]  # noqa: E731
    generator = torch.Generator().manual_seed(0)
    per_image = v2.Compose(dm.default_augmentation())
    seen = set()
    for _ in range(5):
        batch = dm.batch_augmentation(images, generator)
        for b in range(3):
            for out in (batch[b], per_image(images[b])):
                found = [
                    k
                    for k, w in enumerate(windows(b))
                    for f in (w, w.flip(-1))
                    if torch.equal(out, f)
                ]
                assert len(found) == 1
                seen.add(found[0])
    assert len(seen) > 5  # translations drawn over the whole range


@pytest.mark.parametrize(
    ("kwargs", "culprit"),
    [
        ({"crop_padding": -1}, "crop_padding"),
        ({"crop_padding": 32}, "crop_padding"),
        ({"padding_mode": "edge"}, "padding_mode"),
    ],  # fmt: skip
)
def test_bad_crop_options_are_refused_by_name(fake_cifar, kwargs, culprit):
    with pytest.raises(ValueError, match=culprit):
        CIFAR10DataModule(fake_cifar[0], **kwargs)


def test_augment_on_device_hands_over_raw_training_batches(fake_cifar):
    import lightning as L

    path, train_x, _ = fake_cifar
    dm = CIFAR10DataModule(path, batch_size=4, augment_on_device=True, channels_last=True)
    raw, labels = next(iter(dm.train_dataloader()))
    assert raw.dtype == torch.uint8 and raw.shape == (4, 3, 32, 32)
    assert next(iter(dm.val_dataloader()))[0].dtype == torch.float32  # other splits unchanged

    class Training:
        training = True

    dm.trainer = Training()
    x, y = dm.on_after_batch_transfer([raw, labels], 0)
    assert x.is_contiguous(memory_format=torch.channels_last) and torch.equal(y, labels)
    mean = torch.tensor(dm.mean).view(1, 3, 1, 1)
    std = torch.tensor(dm.std).view(1, 3, 1, 1)
    pixels = (x * std + mean) * 255  # back to pixel values: each a crop of a raw image (or 0)
    allowed = set(raw.unique().tolist()) | {0}
    assert set(pixels.round().unique().tolist()) <= allowed
    dm.trainer = L.Trainer(logger=False, enable_progress_bar=False)  # not training: untouched
    assert dm.on_after_batch_transfer([raw, labels], 0)[0] is raw


def test_channels_last_reaches_every_loader_with_the_same_values(fake_cifar):
    path, _, _ = fake_cifar
    plain = CIFAR10DataModule(path, batch_size=4, val_size=8)
    nhwc = CIFAR10DataModule(path, batch_size=4, val_size=8, channels_last=True)
    for dm in (plain, nhwc):
        dm.setup("fit")
    for name in ("val_dataloader", "test_dataloader", "calibration_dataloader"):
        (x, y), (x_cl, y_cl) = (next(iter(getattr(dm, name)())) for dm in (plain, nhwc))
        assert x_cl.is_contiguous(memory_format=torch.channels_last), name
        assert not x_cl.is_contiguous() and x.is_contiguous(), name
        assert torch.equal(x, x_cl) and torch.equal(y, y_cl), name


def test_a_file_that_is_not_an_npz_is_named(tmp_path):
    text = tmp_path / "notes.npz"
    text.write_text("hello, world\n")
    with pytest.raises(DataNotFoundError, match=f"{text}: not an .npz archive .*b'hell'"):
        CIFAR10DataModule(text).setup("test")
    empty = tmp_path / "empty.npz"
    empty.touch()
    with pytest.raises(DataNotFoundError, match="not an .npz archive \\(it is empty\\)"):
        CIFAR10DataModule(empty).setup("test")
    array = tmp_path / "array.npz"
    with open(array, "wb") as file:  # a .npy under an .npz name
        np.save(file, np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(DataNotFoundError, match="not an .npz archive \\(it is a single .npy array"):
        CIFAR10DataModule(array).setup("test")


@pytest.mark.parametrize(
    ("labels", "words"),
    [
        ([0, 10, 3, -1], r"'test_y' holds labels outside 0..9 \(10 classes\): -1, 10;"),
        ([0.0, 1.5, 2.0, 3.0], "'test_y' holds float64 labels; expected integers"),
    ],
)
def test_labels_outside_the_classes_are_refused(tmp_path, labels, words):
    path = tmp_path / "bad.npz"
    images = np.zeros((4, 32, 32, 3), np.uint8)
    np.savez(path, train_x=images, train_y=np.arange(4), test_x=images, test_y=np.array(labels))
    with pytest.raises(DataSpecError, match=f"{path}: {words}"):
        CIFAR10DataModule(path).setup("test")
    assert len(CIFAR100DataModule(path).train_dataloader().dataset) == 4  # train_y is fine
