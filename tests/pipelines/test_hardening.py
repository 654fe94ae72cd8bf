"""Bad input, case by case: every user mistake or hostile file is one clear line and exit code
2, nothing is written, and no code named by a file runs. Then a bounded fuzz of the loaders."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import multispike.zoo  # noqa: F401  (registers the zoo)
from multispike.convert import calibrate, to_snn
from multispike.pipelines import load, save
from multispike.pipelines.cli import main
from multispike.pipelines.data import DataNotFoundError
from multispike.pipelines.data.cifar import load_npz_split
from multispike.pipelines.folder.checkpoints import HashedCheckpointIO, verify_checkpoint
from multispike.pipelines.folder.schema import ModelFileError
from multispike.zoo import CheckpointError

MODEL = "ms_nir_nmnist_cnn"  # a small registered model: 2x34x34 inputs, 10 classes


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A valid SNN model folder."""
    torch.manual_seed(0)
    ann = timm.create_model(MODEL).eval()
    qann = calibrate(ann, [torch.rand(8, 2, 34, 34)], levels=2, progress=False)
    path = tmp_path_factory.mktemp("folder") / "snn"
    save(to_snn(qann), path, model_name=MODEL)
    return path


@pytest.fixture(scope="module")
def npz(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "c.npz"
    images = np.random.default_rng(0).integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    np.savez(
        path, train_x=images, train_y=np.arange(12) % 10, test_x=images[:4], test_y=np.arange(4)
    )
    return path


def _edited(folder: Path, tmp: Path, edit) -> Path:
    """A copy of ``folder`` whose config.json went through ``edit(config)``."""
    copy = Path(shutil.copytree(folder, tmp / "edited"))
    config = json.loads((copy / "config.json").read_text())
    edit(config)
    (copy / "config.json").write_text(json.dumps(config))
    return copy


def _set(path: str, value):
    def edit(config):
        *parents, leaf = path.split(".")
        node = config
        for key in parents:
            node = node[key]
        if value is KeyError:
            del node[leaf]
        else:
            node[leaf] = value

    return edit


# (case, edit of config.json, words the message must hold)
FOLDER_CASES = [
    ("missing levels", _set("levels", KeyError), "levels: an integer >= 1, got None"),
    ("mistyped levels", _set("levels", "4"), "levels: an integer >= 1, got '4'"),
    ("zero max_spikes", _set("max_spikes", 0), "max_spikes: an integer >= 1"),
    ("null input_shape", _set("input_shape", None), "input_shape: a list of 1 to 4"),
    ("bool per_channel", _set("per_channel", "yes"), "per_channel: true or false"),
    ("qann with spikes", _set("kind", "qann"), "null for a QANN"),
    ("unknown kind", _set("kind", "ann"), "kind: 'qann' or 'snn'"),
    ("weights outside", _set("weights.file", "/etc/hostname"), "must be a file name inside"),
    ("weights upward", _set("weights.file", "../snn/model.safetensors"), "a file name inside"),
    ("bad sha", _set("weights.sha256", "abc"), "weights.sha256: 64 lowercase hex"),
    (
        "loading kwarg",
        _set("architecture.model_kwargs", {"checkpoint_path": "/x"}),
        "model_kwargs.checkpoint_path: only plain architecture options",
    ),
    ("infinite threshold", _set("layers.act1.threshold", float("inf")), "act1.threshold: a finite"),
    (
        "transform options",
        _set("transforms", [{"name": "residual", "mode": "sew", "data": 1}]),
        "a residual transform is",
    ),
]


@pytest.mark.parametrize(("case", "edit", "words"), FOLDER_CASES, ids=[c[0] for c in FOLDER_CASES])
def test_a_bad_model_config_is_one_line_naming_the_field(
    folder, tmp_path, capsys, case, edit, words
):
    bad = _edited(folder, tmp_path, edit)
    out = tmp_path / "out.onnx"
    code = main(["export", "--model_dir", str(bad), "--format", "onnx", "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and words in err, err
    assert err.count("\n") == 1 and "Traceback" not in err  # one line
    assert not out.exists()


def test_a_config_never_imports_the_module_it_names(folder, tmp_path, monkeypatch, capsys):
    marker = tmp_path / "imported"
    (tmp_path / "evil_module.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    def edit(config):
        config["architecture"].update(model_name="evil_net", module="evil_module")

    with pytest.raises(ModelFileError, match="'evil_net' is not a model in timm's registry"):
        load(_edited(folder, tmp_path, edit))
    assert not marker.exists() and "evil_module" not in sys.modules


def test_a_weights_file_outside_the_folder_is_never_read(folder, tmp_path):
    outside = tmp_path / "outside.safetensors"
    shutil.copy(folder / "model.safetensors", outside)
    with pytest.raises(ModelFileError, match="weights.file"):
        load(_edited(folder, tmp_path, _set("weights.file", str(outside))))


def _checkpoint(tmp_path: Path, corrupt: bool = False) -> Path:
    path = tmp_path / "last.ckpt"
    HashedCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(64, 64)}}, path)
    if corrupt:
        data = bytearray(path.read_bytes())
        middle = len(data) // 2
        data[middle : middle + 64] = bytes(64)
        path.write_bytes(bytes(data))
    return path


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned-by-checkpoint",))


def _cli_cases(tmp_path: Path, npz: Path) -> list[tuple[str, list[str], str]]:
    text = tmp_path / "notes.pth"
    text.write_text("hello, world\n")
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(npz.read_bytes()[:500])
    mismatch = tmp_path / "mismatch.npz"
    images = np.zeros((6, 32, 32, 3), np.uint8)
    np.savez(mismatch, train_x=images, train_y=np.arange(4), test_x=images, test_y=np.arange(6))
    text_npz = tmp_path / "notes.npz"
    text_npz.write_text("hello, world\n")
    out_of_range = tmp_path / "labels.npz"
    np.savez(out_of_range, train_x=images, train_y=np.array([0, 10, 3, -1, 2, 1]))
    unsafe = tmp_path / "unsafe.ckpt"
    torch.save({"state_dict": {}, "payload": _Payload()}, unsafe)
    distill = [
        "distill",
        "--model.teacher",
        '{"class_path": "multispike.zoo.load_model", "init_args": {"model_name": "ms_resnet20"}}',
        "--data",
        "DigitsDataModule",
    ]
    convert = ["convert", "--model", "ms_resnet20", "--output", str(tmp_path / "out")]
    cifar = ["--data", "CIFAR10DataModule", "--data.path"]
    return [
        (
            "checkpoint is a text file",
            [*convert, "--data", "DigitsDataModule", "--checkpoint", str(text)],
            "not a PyTorch checkpoint",
        ),
        ("truncated npz", [*convert, *cifar, str(truncated)], "not a readable .npz archive"),
        ("labels do not match", [*convert, *cifar, str(mismatch)], "6 images in 'train_x' but 4"),
        ("text as npz", [*convert, *cifar, str(text_npz)], f"{text_npz}: not an .npz archive"),
        (
            "labels out of range",
            [*convert, *cifar, str(out_of_range)],
            f"{out_of_range}: 'train_y' holds labels outside 0..9 (10 classes): -1, 10;",
        ),
        (
            "zero levels",
            [*convert, "--data", "DigitsDataModule", "--levels", "0"],
            "--levels must be >= 1",
        ),
        (
            "zero spikes",
            [*convert, "--data", "DigitsDataModule", "--max_spikes", "0"],
            "--max_spikes must be >= 1",
        ),
        (
            "missing ckpt_path",
            [*distill, "--ckpt_path", str(tmp_path / "none.ckpt")],
            "--ckpt_path: checkpoint",
        ),
        ("truncated ckpt_path", [*distill, "--ckpt_path", str(text)], "not a PyTorch checkpoint"),
        (
            "corrupted ckpt_path",
            [*distill, "--ckpt_path", str(_checkpoint(tmp_path, True))],
            "does not match its SHA-256",
        ),
        ("unsafe ckpt_path", [*distill, "--ckpt_path", str(unsafe)], "cannot be read safely"),
    ]


def test_every_bad_cli_input_is_one_line_and_exit_2(tmp_path, npz, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cases = _cli_cases(tmp_path, npz)
    for case, argv, words in cases:
        before = {p for p in tmp_path.rglob("*")}
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2, (case, err)
        assert words in err and "Traceback" not in err, (case, err)
        assert err.strip().count("\n") == 0, (case, err)  # one line
        assert {p for p in tmp_path.rglob("*")} == before, case  # nothing written
    assert not (tmp_path / "pwned-by-checkpoint").exists()  # the pickle's payload never ran


@pytest.mark.skipif(
    torch.cuda.is_available() or torch.backends.mps.is_available(),
    reason="asks for a GPU that this machine lacks",
)
@pytest.mark.parametrize("command", ["convert", "train"])
def test_an_accelerator_this_machine_lacks_is_one_line(tmp_path, capsys, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    loader = {"class_path": "multispike.zoo.load_model", "init_args": {"model_name": MODEL}}
    argv = {
        "convert": ["convert", "--model", "ms_resnet20", "--output", str(tmp_path / "out")],
        "train": ["train", "--model.model", json.dumps(loader)],
    }[command]
    code = main([*argv, "--data", "RandomDataModule", "--trainer.accelerator", "gpu"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and err.strip().count("\n") == 0, err
    assert re.search(r"accelerator|gpu", err, re.IGNORECASE), err
    assert not (tmp_path / "out").exists()


def test_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MULTISPIKE_DEBUG", "0")  # --debug sets it: put back as it was after
    argv = ["export", "--model_dir", str(tmp_path), "--format", "onnx", "--output", "x.onnx"]
    assert main(["--debug", *argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "holds no config.json" in err


def test_hashed_checkpoints_round_trip_and_refuse_changes(tmp_path):
    path = _checkpoint(tmp_path)
    assert (tmp_path / "last.ckpt.sha256").is_file()
    loaded = HashedCheckpointIO().load_checkpoint(path)
    assert torch.equal(loaded["state_dict"]["w"], torch.ones(64, 64))
    corrupt = _checkpoint(tmp_path, corrupt=True)
    with pytest.raises(CheckpointError, match="last.ckpt does not match its SHA-256"):
        HashedCheckpointIO().load_checkpoint(corrupt)
    HashedCheckpointIO().remove_checkpoint(corrupt)
    assert not (tmp_path / "last.ckpt.sha256").exists()


def test_snn_inputs_are_checked(folder):
    snn = load(folder)
    x = torch.rand(3, 2, 34, 34)
    assert torch.equal(snn(x.numpy()), snn(x))  # numpy is converted
    bad = x.clone()
    bad[0, 0, :2, 0] = float("inf")
    with pytest.raises(ValueError, match="2 non-finite value"):
        snn(bad)
    snn.nonfinite = "warn"
    with pytest.warns(RuntimeWarning, match="non-finite"):
        snn(bad)
    frames = x.unsqueeze(0).expand(3, -1, -1, -1, -1)
    with pytest.raises(ValueError, match="3 frames but the network runs 1 steps"):
        snn(frames)
    assert snn(frames, timesteps=3).shape == (3, 3, 10)  # asked for: one frame per step
    with pytest.raises(TypeError, match="torch.Tensor or numpy array"):
        snn([[0.0]])


# --------------------------------------------------------------------------- bounded fuzzing

_FUZZ = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 1 << 40) | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def _flip(data: bytes, positions: list[int], value: int) -> bytes:
    out = bytearray(data)
    for p in positions:
        out[p % len(out)] ^= value or 1
    return bytes(out)


@_FUZZ
@given(
    key=st.sampled_from(
        [
            "kind",
            "levels",
            "per_channel",
            "input_shape",
            "max_spikes",
            "timesteps",
            "transforms",
            "layers",
            "weights",
            "architecture",
            "versions",
        ]
    ),
    value=_JSON,
)
def test_fuzzed_configs_load_cleanly_or_raise_a_documented_error(folder, tmp_path, key, value):
    shutil.rmtree(tmp_path / "edited", ignore_errors=True)
    bad = _edited(folder, tmp_path, _set(key, value))
    with contextlib.suppress(ModelFileError, FileNotFoundError):
        load(bad)


@_FUZZ
@given(
    positions=st.lists(st.integers(0, 1 << 20), min_size=1, max_size=8),
    value=st.integers(0, 255),
    target=st.sampled_from(["config.json", "model.safetensors"]),
)
def test_fuzzed_folder_bytes_load_cleanly_or_raise_a_documented_error(
    folder, tmp_path, positions, value, target
):
    copy = tmp_path / "edited"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(folder, copy)
    file = copy / target
    file.write_bytes(_flip(file.read_bytes(), positions, value))
    with contextlib.suppress(ModelFileError, FileNotFoundError):
        load(copy)


@_FUZZ
@given(
    positions=st.lists(st.integers(0, 1 << 16), min_size=1, max_size=8), value=st.integers(0, 255)
)
def test_fuzzed_checkpoints_and_npz_read_cleanly_or_raise_a_documented_error(
    tmp_path, npz, positions, value
):
    ckpt = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {"w": torch.arange(100.0)}}, ckpt)
    ckpt.write_bytes(_flip(ckpt.read_bytes(), positions, value))
    with contextlib.suppress(CheckpointError):
        verify_checkpoint(ckpt, load=True)
    broken = tmp_path / "broken.npz"
    broken.write_bytes(_flip(npz.read_bytes(), positions, value))
    with contextlib.suppress(DataNotFoundError):
        load_npz_split(broken, "train", ("y",))


# --------------------------------------------------------------------------- outputs, data, flags


def _tree(root: Path) -> dict[Path, bytes | None]:
    return {p: p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


def _refused(argv: list[str], words: str, root: Path, capsys) -> str:
    """Run ``multispike argv``: exit 2, one line holding ``words``, nothing under ``root``
    written or changed; returns the line."""
    before = _tree(root)
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and words in err and "Traceback" not in err, (argv, err)
    assert err.strip().count("\n") == 0, err  # one line
    assert _tree(root) == before, argv
    return err


@pytest.fixture
def no_loading(monkeypatch):
    """Models and model folders may not be loaded: the checks come first."""
    from multispike.pipelines import folder, sources

    def never(*args, **kwargs):
        raise AssertionError("a model was loaded before the options were checked")

    monkeypatch.setattr(sources, "ann_and_data", never)
    monkeypatch.setattr(folder, "load", never)


def _command(name: str, folder: Path, output: Path, *extra: str) -> list[str]:
    digits = ["--data", "DigitsDataModule", "--output", str(output), *extra]
    return {
        "convert": ["convert", "--model", "ms_resnet20", *digits],
        "avalanche": ["avalanche", "--model", "ms_resnet20", *digits],
        "evaluate": ["evaluate", "--model_dir", str(folder), *digits],
        "export": ["export", "--model_dir", str(folder), "--output", str(output), *extra],
    }[name]


@pytest.mark.usefixtures("no_loading")
@pytest.mark.parametrize("command", ["convert", "evaluate", "avalanche", "export"])
def test_an_unwritable_output_is_refused_before_any_work(
    folder, tmp_path, capsys, monkeypatch, command
):
    monkeypatch.chdir(tmp_path)
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me\n")
    (tmp_path / "reports").mkdir()
    extra = ["--format", "onnx"] if command == "export" else []
    wrong = tmp_path / ("reports" if command == "export" else "notes.txt")
    kind = "a file" if command == "export" else "a folder"
    err = _refused(_command(command, folder, wrong, *extra), f"--output {wrong}", tmp_path, capsys)
    assert f"is an existing {'folder' if command == 'export' else 'file'}, but {kind}" in err
    below_file = notes / "sub" / "out"
    words = f"--output {below_file} cannot be created: {notes} is a file"
    _refused(_command(command, folder, below_file, *extra), words, tmp_path, capsys)

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)  # root ignores chmod: simulate it
    new = tmp_path / "reports" / "new"
    words = f"--output {new} cannot be created: {tmp_path / 'reports'} is not writable"
    _refused(_command(command, folder, new, *extra), words, tmp_path, capsys)


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_while_exporting_is_one_line_naming_the_file(
    folder, tmp_path, capsys, monkeypatch
):
    from multispike.pipelines import export

    monkeypatch.setattr(export, "export_onnx", _disk_full)
    out = tmp_path / "model.onnx"
    words = f"--output {out}: writing {out} failed (No space left on device)"
    _refused(["export", "--model_dir", str(folder), "--format", "onnx", "--output", str(out)],
             words, tmp_path, capsys)  # fmt: skip


def test_a_full_disk_after_calibration_is_one_line_naming_the_file(tmp_path, capsys, monkeypatch):
    from multispike.pipelines import folder

    def save(model, directory, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(directory / "model.safetensors"))

    monkeypatch.setattr(folder, "save", save)
    out = tmp_path / "run"
    argv = _command("convert", tmp_path, out, "--calibration_images", "16", "--eval_images", "8",
                    "--progress", "false")  # fmt: skip
    _refused(argv, f"--output {out}: writing {out / 'model.safetensors'} failed (No space left",
             tmp_path, capsys)  # fmt: skip


FLAG_CASES = [
    ("evaluate", ["--timesteps", "0"], "--timesteps must be >= 1 and <= 4096, got 0"),
    ("evaluate", ["--max_spikes", "0"], "--max_spikes must be >= 1 and <= 65535, got 0"),
    ("evaluate", ["--binary_timesteps", "0"], "--binary_timesteps must be >= 1"),
    ("evaluate", ["--timesteps", "-3"], "--timesteps must be >= 1 and <= 4096, got -3"),
    ("evaluate", ["--timesteps", str(10**6)], "--timesteps must be >= 1 and <= 4096, got 1000000"),
    ("evaluate", ["--sweep", "[2x5000]"], "--sweep 2x5000: timesteps 5000 is more than 4096"),
    ("evaluate", ["--eval_images", "0"], "--eval_images must be >= 1, got 0"),
    ("evaluate", ["--sweep_images", "0"], "--sweep_images must be >= 1, got 0"),
    ("evaluate", ["--noise_images", "-2"], "--noise_images must be >= 1, got -2"),
    ("convert", ["--eval_images", "0"], "--eval_images must be >= 1, got 0"),
    ("avalanche", ["--eval_images", "0"], "--eval_images must be >= 1, got 0"),
    ("convert", ["--levels", str(2**70)], f"--levels must be >= 1 and <= 65535, got {2**70}"),
    ("convert", ["--max_spikes", "65536"], "--max_spikes must be >= 1 and <= 65535, got 65536"),
    ("convert", ["--timesteps", "4097"], "--timesteps must be >= 1 and <= 4096, got 4097"),
    ("avalanche", ["--timesteps", "0"], "--timesteps must be >= 1 and <= 4096, got 0"),
    ("avalanche", ["--levels", "-1"], "--levels must be >= 1 and <= 65535, got -1"),
    ("avalanche", ["--calibration_images", "0"], "--calibration_images must be >= 1, got 0"),
]


@pytest.mark.usefixtures("no_loading")
@pytest.mark.parametrize(("command", "flags", "words"), FLAG_CASES, ids=lambda v: str(v)[:24])
def test_counts_out_of_bounds_are_one_line_naming_the_flag(
    folder, tmp_path, capsys, command, flags, words
):
    _refused(_command(command, folder, tmp_path / "out", *flags), words, tmp_path, capsys)


def test_a_model_folder_on_other_data_is_one_line_naming_both(folder, tmp_path, capsys):
    words = f"model folder {folder} takes 2 input channels, --data DigitsDataModule has 1"
    _refused(_command("evaluate", folder, tmp_path / "out"), words, tmp_path, capsys)


def _corrupt_images(root: Path) -> None:
    """Two class folders of JPEGs cut short."""
    from PIL import Image

    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (12, 12), (200, 10, 10)).save(root / name / f"{i}.jpg")
            (root / name / f"{i}.jpg").write_bytes((root / name / f"{i}.jpg").read_bytes()[:150])


def _short_recordings(root: Path) -> None:
    """An N-MNIST tree whose recordings hold 2 bytes, not 5-byte events."""
    for split in ("Train", "Test"):
        for digit in (1, 7):
            (root / split / str(digit)).mkdir(parents=True)
            (root / split / str(digit) / "00000.bin").write_bytes(b"\x01\x02")


DATA_CASES = [
    ("corrupt jpeg", _corrupt_images, "ms_resnet20", "ImageFolderDataModule",
     ["--data.image_size", "8"], r"image \S+/(cat|dog)/[01]\.jpg cannot be decoded"),
    ("2-byte recording", _short_recordings, "ms_nir_nmnist_cnn", "NMNISTDataModule", [],
     r"\S+/Train/[17]/00000\.bin: 2 bytes, not a whole number of 5-byte N-MNIST events"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "make", "model", "data", "extra", "pattern"),
    DATA_CASES,
    ids=[c[0] for c in DATA_CASES],
)
def test_a_broken_data_file_is_one_line_naming_it(
    tmp_path, capsys, case, make, model, data, extra, pattern
):
    make(tmp_path / "data")
    out = tmp_path / "out"
    argv = ["convert", "--model", model, "--data", data, "--data.path", str(tmp_path / "data"),
            *extra, "--calibration_images", "8", "--output", str(out),
            "--progress", "false"]  # fmt: skip
    err = _refused(argv, "", tmp_path, capsys)
    assert re.search(pattern, err), err
    assert str(tmp_path / "data") in err and not out.exists()


def test_to_snn_returns_the_mode_of_its_qann_with_checks_on():
    torch.manual_seed(0)
    ann = timm.create_model(MODEL).eval()
    qann = calibrate(ann, [torch.rand(8, 2, 34, 34)], levels=2, progress=False)
    snn = to_snn(qann)
    assert not any(m.training for m in snn.modules())  # eval mode, as calibrate and load give
    x = torch.rand(3, 2, 34, 34)
    assert torch.equal(snn(x)[0], qann(x))  # N = L, T = 1: bit-identical, as before
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="1 non-finite value"):
        snn(bad)  # the input check runs without a call to .eval()
    training = to_snn(qann.train())  # a QANN in training (distillation) keeps its mode
    assert training.training and all(n.training for n in training.net.modules())
    assert torch.equal(training(x), snn(x))  # no value depends on the mode (no dropout here)
    training(bad)  # no check, no sync, in training


def test_sinabs_export_without_sinabs_says_how_to_install_it(folder, tmp_path, capsys, monkeypatch):
    for name in ("sinabs", "sinabs.layers", "sinabs.activation"):
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    out = tmp_path / "model.sinabs.pt"
    argv = ["export", "--model_dir", str(folder), "--format", "sinabs", "--output", str(out)]
    err = _refused(argv, "--format sinabs needs sinabs", tmp_path, capsys)
    assert "pip install --no-deps sinabs pbr" in err and not out.exists()
