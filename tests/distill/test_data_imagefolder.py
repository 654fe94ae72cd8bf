"""ImageFolder DataModule on tiny generated trees: single tree, ImageNet-style train/val, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from multispike.pipelines.data import DataNotFoundError, ImageFolderDataModule

COLOURS = {"cat": (255, 0, 0), "dog": (0, 255, 0), "emu": (0, 0, 255)}


def _tree(root, per_class: int, size=(12, 10)) -> None:
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", size, colour).save(root / name / f"{i}.png")


def _all(loader):
    xs, ys = zip(*loader, strict=True)
    return torch.cat(xs), torch.cat(ys)


def test_single_tree_split_and_eval_geometry(tmp_path):
    _tree(tmp_path, per_class=5)
    dm = ImageFolderDataModule(tmp_path, image_size=8, batch_size=16, normalize=False, val_size=0)
    assert dm.classes == ["cat", "dog", "emu"] and dm.num_classes == 3
    assert dm.input_shape == (3, 8, 8) and dm.resize_size == 9 and dm.mean == (0.485, 0.456, 0.406)
    (x_test, y_test), (x_train, y_train) = _all(dm.test_dataloader()), _all(dm.train_dataloader())
    assert len(x_test) == 3 and len(x_train) == 12 and x_test.shape[1:] == (3, 8, 8)
    assert torch.bincount(y_train).tolist() == [4, 4, 4]  # one image per class for test
    for img, label in zip(x_test, y_test, strict=True):  # solid colours survive resize + crop
        expected = torch.tensor(COLOURS[dm.classes[label]], dtype=torch.float32) / 255
        assert torch.allclose(img, expected.view(3, 1, 1).expand(3, 8, 8))
    assert x_train.shape[1:] == (3, 8, 8)  # random resized crop gives the same size


def test_imagenet_layout_normalised(tmp_path):
    _tree(tmp_path / "train", per_class=2)
    _tree(tmp_path / "val", per_class=1, size=(20, 30))
    dm = ImageFolderDataModule(tmp_path, image_size=16, augment=False, batch_size=8)
    x, y = _all(dm.test_dataloader())  # DIR/val is the test split
    assert x.shape == (3, 3, 16, 16) and y.tolist() == [0, 1, 2]
    mean, std = torch.tensor(dm.mean).view(3, 1, 1), torch.tensor(dm.std).view(3, 1, 1)
    assert torch.allclose(
        x[0], ((torch.tensor([1.0, 0, 0]).view(3, 1, 1) - mean) / std).expand(3, 16, 16)
    )
    assert len(_all(dm.train_dataloader())[0]) == 5  # one of the 6 held out for validation
    assert len(_all(dm.val_dataloader())[0]) == 1


def test_imagefolder_errors(tmp_path):
    with pytest.raises(DataNotFoundError, match="does not exist; expected DIR/<class>/<image>"):
        ImageFolderDataModule(tmp_path / "none").setup()
    with pytest.raises(DataNotFoundError) as err:  # classes (what --data's num_classes reads)
        _ = ImageFolderDataModule(tmp_path / "none").num_classes
    assert str(err.value).count("expected") == 1
    (tmp_path / "train" / "cat").mkdir(parents=True)
    with pytest.raises(DataNotFoundError, match="neither .*val nor .*test"):
        ImageFolderDataModule(tmp_path).setup()
    (tmp_path / "val" / "dog").mkdir(parents=True)
    with pytest.raises(DataNotFoundError, match="train"):  # class folders without images
        ImageFolderDataModule(tmp_path).setup()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "train" / "cat" / "a.png")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "val" / "dog" / "a.png")
    with pytest.raises(DataNotFoundError, match=r"has classes \['dog'\].*\['cat'\]"):
        ImageFolderDataModule(tmp_path).setup()


def test_eval_geometry_follows_the_models_pretrained_cfg(tmp_path):
    import timm

    _tree(tmp_path, per_class=2)
    resnet50 = timm.create_model("resnet50", pretrained=False)  # crop_pct 0.95, bicubic
    dm = ImageFolderDataModule(tmp_path)
    assert (dm.image_size, dm.resize_size) == (224, 256)  # no model yet: 224 / 0.875
    dm.adopt_model_config(resnet50)
    assert (dm.input_shape, dm.resize_size) == ((3, 224, 224), 235)  # ⌊224 / 0.95⌋
    resize, crop = dm.eval_geometry()
    assert (
        resize.size == [235] and resize.interpolation.value == "bicubic" and crop.size == (224, 224)
    )
    given = ImageFolderDataModule(tmp_path, image_size=96, resize_size=100)
    given.adopt_model_config(resnet50)
    assert (given.image_size, given.resize_size) == (96, 100)  # explicit values win


def test_a_corrupt_image_is_named(tmp_path):
    _tree(tmp_path, per_class=2)
    good = tmp_path / "cat" / "0.png"
    truncated = tmp_path / "cat" / "1.jpg"
    Image.new("RGB", (12, 10), (255, 0, 0)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])  # a JPEG cut short
    garbage = tmp_path / "dog" / "1.jpg"
    garbage.write_bytes(b"not a picture\n")
    dm = ImageFolderDataModule(tmp_path, image_size=8, batch_size=16, val_size=0)
    dataset = dm._folder(tmp_path, dm.transform(False))
    assert dataset[dataset.samples.index((str(good), 0))][0].shape == (3, 8, 8)
    for path in (truncated, garbage):
        index = [p for p, _ in dataset.samples].index(str(path))
        with pytest.raises(DataNotFoundError, match=f"image {path} cannot be decoded") as info:
            dataset[index]
        assert "\n" not in str(info.value)
    with pytest.raises(DataNotFoundError, match="cannot be decoded"):
        _all(dm.train_dataloader())
