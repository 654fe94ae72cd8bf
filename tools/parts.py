"""Move a few files through a transfer that takes small files only, and check them on arrival.

``split`` puts the given files into one uncompressed tar archive, cuts it into parts of at most
``--max_mib`` MiB and writes ``manifest.json`` (the archive's and every part's SHA-256).
``join`` checks every part and the reassembled archive against the manifest, then unpacks it
(plain files only, no paths outside ``--output``)::

    python tools/parts.py split run/distill/student/* run/evaluate/metrics.json \\
        --output $OUT --name vgg16 --max_mib 15
    python tools/parts.py join DIR/manifest.json --output benchmarks/checkpoints/vgg16
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

from jsonargparse import ArgumentParser


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def split(files: list[Path], output: Path, name: str = "files", max_mib: float = 15.0) -> Path:
    """Write ``<name>.partNN`` files and ``manifest.json`` to ``output``; returns the manifest.

    Raises:
        SystemExit: one of ``files`` is not a file.
    """
    missing = [str(f) for f in files if not Path(f).is_file()]
    if missing:
        raise SystemExit(f"not files: {missing}")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for file in files:
            archive.add(file, arcname=file.name)
    data = buffer.getvalue()
    size = int(max_mib * (1 << 20))
    output.mkdir(parents=True, exist_ok=True)
    parts = []
    for index, start in enumerate(range(0, len(data), size)):
        chunk = data[start : start + size]
        part = output / f"{name}.part{index:02d}"
        part.write_bytes(chunk)
        parts.append({"file": part.name, "sha256": _sha256(chunk), "bytes": len(chunk)})
    manifest = {"archive_sha256": _sha256(data), "files": [f.name for f in files], "parts": parts}
    path = output / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def join(manifest_path: Path, output: Path) -> list[Path]:
    """Check and reassemble the parts listed in ``manifest_path``; unpack into ``output``.

    Raises:
        SystemExit: a part is missing or does not match its SHA-256, or an archive entry is
            not a plain file name; nothing is written then.
    """
    manifest = json.loads(manifest_path.read_text())
    chunks = []
    for part in manifest["parts"]:
        path = manifest_path.parent / part["file"]
        if not path.is_file():
            raise SystemExit(f"{path} is missing: copy every part listed in {manifest_path}")
        chunk = path.read_bytes()
        if _sha256(chunk) != part["sha256"]:
            raise SystemExit(f"{path} does not match its SHA-256 in {manifest_path}: copy it again")
        chunks.append(chunk)
    data = b"".join(chunks)
    if _sha256(data) != manifest["archive_sha256"]:
        raise SystemExit(f"the parts of {manifest_path} do not rebuild its archive")
    output.mkdir(parents=True, exist_ok=True)
    written = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as archive:
        for member in archive.getmembers():
            if not member.isfile() or Path(member.name).name != member.name:
                raise SystemExit(f"{manifest_path}: refusing archive entry {member.name!r}")
            target = output / member.name
            target.write_bytes(archive.extractfile(member).read())
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    cut = ArgumentParser(description=split.__doc__.splitlines()[0])
    cut.add_argument("files", type=Path, nargs="+", help="the files to carry")
    cut.add_argument("--output", type=Path, required=True, help="folder of the parts")
    cut.add_argument("--name", default="files", help="prefix of the part files")
    cut.add_argument("--max_mib", type=float, default=15.0, help="largest part, MiB")
    glue = ArgumentParser(description=join.__doc__.splitlines()[0])
    glue.add_argument("manifest", type=Path, help="the manifest.json that split wrote")
    glue.add_argument("--output", type=Path, required=True, help="folder of the unpacked files")
    commands = parser.add_subcommands(dest="command")
    commands.add_subcommand("split", cut, help="archive files and cut the archive into parts")
    commands.add_subcommand("join", glue, help="check the parts, rebuild and unpack the archive")
    args = parser.parse_args(argv)
    if args.command == "split":
        print(split(args.split.files, args.split.output, args.split.name, args.split.max_mib))
    else:
        for path in join(args.join.manifest, args.join.output):
            print(path)


if __name__ == "__main__":
    main()
