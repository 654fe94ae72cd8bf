"""Outputs of the commands: checked before the expensive work, write errors as one line.

:func:`check_output` refuses an ``--output`` the command could not write (an existing file
where a folder goes, a folder where a file goes, a read-only location, a parent that cannot
be created) before any model or data is loaded; :func:`writing` turns an error raised while
the outputs are written (a full disk) into one line naming the file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

__all__ = ["OutputError", "check_output", "writing"]


class OutputError(ValueError):
    """An output the command cannot write; the message names the flag and the path."""


def check_output(path: str | Path, kind: Literal["folder", "file"], flag: str = "--output") -> Path:
    """Refuse an output that cannot be written, creating nothing.

    A ``folder`` output must be a folder or not exist yet, a ``file`` output must not be a
    folder (an existing file must be writable). The folder that will hold a new output (or
    its nearest existing parent) must take a new file: a temporary one is created there and
    removed at once.

    Args:
        path: the output, as given.
        kind: ``"folder"`` (the command writes files into it) or ``"file"``.
        flag: the option that named it, for the message.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputError: one line naming ``flag`` and ``path``.
    """
    path = Path(path).expanduser()
    try:
        exists, is_dir = path.exists(), path.is_dir()
    except OSError as err:  # e.g. a parent that may not be searched
        raise OutputError(f"{flag} {path} cannot be checked ({_reason(err)})") from None
    if kind == "folder" and exists and not is_dir:
        raise OutputError(
            f"{flag} {path} is an existing file, but a folder is expected: remove it or "
            f"choose another {flag}"
        )
    if kind == "file" and is_dir:
        raise OutputError(
            f"{flag} {path} is an existing folder, but a file is expected: give a file path"
        )
    if kind == "file" and exists:  # written over in place
        if not os.access(path, os.W_OK):
            raise OutputError(
                f"{flag} {path} is read-only: make it writable or choose another {flag}"
            )
        return path
    parent = _nearest_existing(path if kind == "folder" else path.parent, path, flag)
    if not parent.is_dir():
        raise OutputError(
            f"{flag} {path} cannot be created: {parent} is a file, not a folder; choose "
            f"another {flag}"
        )
    _probe(parent, path, flag)
    return path


def _nearest_existing(folder: Path, path: Path, flag: str) -> Path:
    """``folder`` or its nearest existing parent."""
    try:
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
    except OSError as err:
        raise OutputError(f"{flag} {path}: {folder} cannot be checked ({_reason(err)})") from None
    return folder


def _probe(folder: Path, path: Path, flag: str) -> None:
    """Create and remove a temporary file in ``folder``, or raise naming ``flag``."""
    try:
        handle, name = tempfile.mkstemp(prefix=".multispike-write-test-", dir=folder)
    except OSError as err:
        problem = "is" if folder == path else f"cannot be created: {folder} is"
        raise OutputError(
            f"{flag} {path} {problem} not writable ({_reason(err)}); choose another {flag} or "
            "fix the permissions"
        ) from None
    os.close(handle)
    os.remove(name)


@contextmanager
def writing(path: str | Path, flag: str = "--output") -> Iterator[None]:
    """Raise an error of writing ``path`` (a full disk, a vanished folder) as one line.

    Wraps the code that writes a command's outputs: an ``OSError`` (or safetensors' I/O
    error) becomes an :class:`OutputError` naming the file and ``flag``.
    """
    from safetensors import SafetensorError

    try:
        yield
    except (OSError, SafetensorError) as err:
        target = getattr(err, "filename", None) or path
        raise OutputError(
            f"{flag} {path}: writing {target} failed ({_reason(err)}); free some disk space "
            f"or choose another {flag}"
        ) from err


def _reason(err: BaseException) -> str:
    """The error's own words, on one line."""
    text = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return " ".join(str(text).split())
