"""Output checks: an output that cannot be written is refused before any work, creating
nothing; an error while writing is one line naming the file."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from multispike.pipelines.outputs import OutputError, check_output, writing


def _tree(root: Path) -> dict[Path, bytes | None]:
    """Every path under ``root`` with its bytes (``None`` for folders)."""
    return {p: (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


@pytest.fixture
def read_only(tmp_path) -> Path:
    """A folder that refuses new files: chmod 555, or ``/sys`` where permissions do not bind
    (root)."""
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError:
        yield folder
    else:
        sys_dir = Path("/sys")
        try:
            tempfile.TemporaryFile(dir=sys_dir).close()
        except OSError:
            yield sys_dir
        else:
            pytest.skip("no folder here refuses new files")
    finally:
        folder.chmod(0o755)


def test_writable_outputs_pass_and_nothing_is_created(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.onnx").write_bytes(b"old")
    before = _tree(tmp_path)
    assert check_output(tmp_path / "a" / "b" / "run", "folder") == tmp_path / "a" / "b" / "run"
    check_output(tmp_path, "folder")  # an existing folder is written into
    check_output(tmp_path / "new" / "model.onnx", "file")
    check_output(tmp_path / "model.onnx", "file")  # an existing file is written over
    check_output("relative-run", "folder")
    assert _tree(tmp_path) == before


@pytest.mark.parametrize(
    ("case", "kind", "words"),
    [
        ("file where a folder goes", "folder", "is an existing file, but a folder is expected"),
        ("folder where a file goes", "file", "is an existing folder, but a file is expected"),
        ("parent is a file", "file", "cannot be created: {tmp}/notes.txt is a file"),
        ("parent is a file", "folder", "cannot be created: {tmp}/notes.txt is a file"),
    ],
)
def test_unwritable_outputs_are_one_line_naming_flag_and_path(tmp_path, case, kind, words):
    (tmp_path / "notes.txt").write_text("keep me\n")
    (tmp_path / "out").mkdir()
    path = {
        "file where a folder goes": tmp_path / "notes.txt",
        "folder where a file goes": tmp_path / "out",
        "parent is a file": tmp_path / "notes.txt" / "sub" / "x",
    }[case]
    before = _tree(tmp_path)
    with pytest.raises(OutputError) as info:
        check_output(path, kind, flag="--output")
    message = str(info.value)
    assert message.startswith(f"--output {path} ") and "\n" not in message
    assert words.format(tmp=tmp_path) in message
    assert _tree(tmp_path) == before


def test_a_read_only_location_is_refused(read_only):
    with pytest.raises(OutputError, match=f"--out {read_only} is not writable"):
        check_output(read_only, "folder", flag="--out")
    with pytest.raises(OutputError, match=f"cannot be created: {read_only} is not writable"):
        check_output(read_only / "run" / "report", "folder", flag="--out")
    with pytest.raises(OutputError, match=f"{read_only} is not writable"):
        check_output(read_only / "model.onnx", "file", flag="--out")
    assert not (read_only / "run").exists() and not (read_only / "model.onnx").exists()


def test_a_read_only_file_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"old")
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != path)  # root ignores chmod
    with pytest.raises(OutputError, match=f"--output {path} is read-only"):
        check_output(path, "file")
    assert path.read_bytes() == b"old"


def test_an_error_while_writing_names_the_file(tmp_path):
    target = tmp_path / "run" / "report.json"
    with pytest.raises(OutputError) as info, writing(tmp_path / "run"):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))
    message = str(info.value)
    assert message == (
        f"--output {tmp_path / 'run'}: writing {target} failed (No space left on device); "
        "free some disk space or choose another --output"
    )
    gone = tmp_path / "gone"
    words = r"--output .*/gone: writing .*/gone failed \(.*I/O"
    with pytest.raises(OutputError, match=words), writing(gone):  # safetensors' own error type
        save_file({"w": torch.zeros(2)}, str(gone / "model.safetensors"))
    with pytest.raises(KeyError), writing(tmp_path):  # only errors of writing are translated
        raise KeyError("bug")
