"""Weights files cut into parts, for hosts that take small files only (git: 16 MiB each).

A file ``model.safetensors`` may be stored as ``model.safetensors.part00``,
``model.safetensors.part01``, … whose bytes, joined in order, are the file's bytes (so the
file's SHA-256 still holds; ``cat model.safetensors.part* > model.safetensors`` rebuilds it).
Readers take either form: :func:`read_bytes` returns the bytes, :func:`joined_file` a real file
(joined once into torch's hub cache) for loaders that want a path, such as timm's.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import torch

__all__ = ["exists", "joined_file", "part_files", "read_bytes", "split_file"]

PART_SUFFIX = ".part"


def part_files(path: str | Path) -> list[Path]:
    """The parts of ``path`` (``path.part00``, ``path.part01``, …) in order; ``[]`` if none.

    Raises:
        FileNotFoundError: the numbering has a gap (a part is missing); names the first gap.
    """
    path = Path(path)
    found = sorted(path.parent.glob(f"{path.name}{PART_SUFFIX}[0-9][0-9]"))
    for index, part in enumerate(found):
        if part.name != f"{path.name}{PART_SUFFIX}{index:02d}":
            raise FileNotFoundError(
                f"{path.parent / f'{path.name}{PART_SUFFIX}{index:02d}'} is missing: the parts "
                f"of {path.name} are incomplete (found {[p.name for p in found]})"
            )
    return found


def exists(path: str | Path) -> bool:
    """Whether ``path`` is a file or has parts."""
    return Path(path).is_file() or bool(part_files(path))


def read_bytes(path: str | Path) -> bytes:
    """The bytes of ``path``, or of its parts joined in order.

    Raises:
        FileNotFoundError: neither the file nor its parts exist; names both.
    """
    path = Path(path)
    if path.is_file():
        return path.read_bytes()
    parts = part_files(path)
    if not parts:
        raise FileNotFoundError(f"{path} not found (nor its parts {path.name}{PART_SUFFIX}NN)")
    return b"".join(part.read_bytes() for part in parts)


def joined_file(path: str | Path) -> Path:
    """``path`` itself when it is a file; else its parts joined into one file of torch's hub
    cache (``torch.hub.get_dir()/checkpoints/multispike``), named by the content's SHA-256 so
    that changed parts never reuse a stale copy."""
    path = Path(path)
    if path.is_file():
        return path
    data = read_bytes(path)
    digest = hashlib.sha256(data).hexdigest()[:16]
    cache = Path(torch.hub.get_dir()) / "checkpoints" / "multispike"
    target = cache / f"{path.stem}-{digest}{path.suffix}"
    if not target.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cache, delete=False) as tmp:  # atomic: no half file
            tmp.write(data)
        os.replace(tmp.name, target)
    return target


def split_file(path: str | Path, max_mib: float = 15.0) -> list[Path]:
    """Cut ``path`` into ``path.partNN`` files of at most ``max_mib`` MiB and remove ``path``;
    returns the parts. :func:`read_bytes` of ``path`` gives the original bytes back.

    Raises:
        FileExistsError: ``path`` already has parts (remove them first).
    """
    path = Path(path)
    if part_files(path):
        raise FileExistsError(f"{path} already has parts ({path.name}{PART_SUFFIX}NN)")
    data = path.read_bytes()
    size = int(max_mib * (1 << 20))
    parts = []
    for index, start in enumerate(range(0, max(len(data), 1), size)):
        part = path.with_name(f"{path.name}{PART_SUFFIX}{index:02d}")
        part.write_bytes(data[start : start + size])
        parts.append(part)
    path.unlink()
    return parts
