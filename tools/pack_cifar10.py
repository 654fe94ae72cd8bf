"""Pack the shared CIFAR-10 npz into lossless WebP parts, and rebuild it bit for bit elsewhere.

For a machine that receives files under a size cap (a lent GPU machine takes 64 MiB a call):
``pack`` writes each part as one folder (``part1/``, ``part2/``, ...) of WebP strips of 100
images (about 54 % of the raw bytes, 49 MB for 30,000 images), the labels and other small
arrays, and the SHA-256 of every array. ``unpack`` decodes one part at a time into a work
folder (so the parts can arrive in separate transfers); given the last part, it rebuilds the
npz, checks every array against those hashes and writes ``--output``/cifar10/cifar10-full.npz,
the file ``CIFAR10DataModule`` reads from a data folder::

    python tools/pack_cifar10.py pack --output .gpu --parts 2
    # on the other machine, each part as it arrives (earlier parts kept in --work):
    python tools/pack_cifar10.py unpack .gpu/part1 --work /tmp/pack
    python tools/pack_cifar10.py unpack .gpu/part2 --work /tmp/pack --output /tmp/msdata

Then ``MULTISPIKE_DATA=/tmp/msdata`` (with ``weights/`` copied beside ``cifar10/``). ``pack``
reads ``--source``, by default the npz ``CIFAR10DataModule`` reads (``cifar10/cifar10-full.npz``
of the local data folder, ``MULTISPIKE_DATA``). The npz arrays are read here as they are: this
script moves the file, it does not load CIFAR-10 for a model.
"""

from __future__ import annotations

import hashlib
import io
import json
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from jsonargparse import ArgumentParser
from PIL import Image

DATA_FILE = "cifar10/cifar10-full.npz"  # CIFAR10DataModule's file inside a data folder
TILE = 100  # images per WebP strip (32 x 3200 pixels)
IMAGE_KEYS = ("train_x", "test_x")
_ARRAYS: dict[str, np.ndarray] = {}


def _load(path: str) -> None:
    with np.load(path) as data:
        _ARRAYS.update({key: data[key] for key in IMAGE_KEYS})


def _encode(job: tuple[str, int]) -> bytes:
    key, start = job
    strip = np.concatenate(list(_ARRAYS[key][start : start + TILE]), axis=1)
    buffer = io.BytesIO()
    Image.fromarray(strip).save(buffer, format="WEBP", lossless=True, quality=100, method=4)
    return buffer.getvalue()


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def pack(source: Path | None, output: Path, parts: int = 2, processes: int = 2) -> None:
    """Split the image arrays' strips into ``parts`` folders of about equal size.

    ``source=None`` reads the npz ``CIFAR10DataModule`` reads (:data:`DATA_FILE` of the local
    data folder, ``MULTISPIKE_DATA``).

    Raises:
        SystemExit: no ``source`` given and none in a local data folder.
    """
    if source is None:  # where CIFAR10DataModule(path=None) looks
        from multispike.pipelines.data.paths import local_data

        source = local_data(DATA_FILE)
        if source is None or not source.is_file():
            raise SystemExit(
                f"no {DATA_FILE} in a local data folder: pass --source or set MULTISPIKE_DATA"
            )
    with np.load(source) as data:
        small = {key: data[key] for key in data.files if key not in IMAGE_KEYS}
        sizes = {key: len(data[key]) for key in IMAGE_KEYS}
        digests = {key: _digest(data[key]) for key in data.files}
    jobs = [(key, start) for key in IMAGE_KEYS for start in range(0, sizes[key], TILE)]
    share = -(-len(jobs) // parts)
    with Pool(processes, initializer=_load, initargs=(str(source),)) as pool:
        for index in range(parts):
            chunk = jobs[index * share : (index + 1) * share]
            blobs = pool.map(_encode, chunk, chunksize=10)
            folder = output / f"part{index + 1}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "strips.bin").write_bytes(b"".join(blobs))
            index_file = {"part": index + 1, "parts": parts, "strips": chunk,
                          "bytes": [len(b) for b in blobs], "sha256": digests}  # fmt: skip
            (folder / "index.json").write_text(json.dumps(index_file))
            np.savez_compressed(folder / "small.npz", **small)
            print(f"{folder}: {len(chunk)} strips, {sum(map(len, blobs)) / 1e6:.1f} MB")


def unpack(part: Path, work: Path, output: Path | None = None) -> None:
    """Decode one part into ``work``; after the last part, write and verify the npz.

    Raises:
        SystemExit: the rebuilt arrays do not match the source's hashes (a part is missing,
            out of order, or ``work`` holds other strips); nothing is written then.
    """
    index = json.loads((part / "index.json").read_text())
    raw, position = (part / "strips.bin").read_bytes(), 0
    work.mkdir(parents=True, exist_ok=True)
    for (key, start), size in zip(index["strips"], index["bytes"], strict=True):
        strip = np.asarray(Image.open(io.BytesIO(raw[position : position + size])).convert("RGB"))
        position += size
        images = strip.reshape(32, -1, 32, 3).transpose(1, 0, 2, 3)
        np.save(work / f"{key}_{start:06d}.npy", images)
    print(f"{part}: {len(index['strips'])} strips decoded into {work}")
    if index["part"] < index["parts"]:
        return
    strips = {key: [np.load(f) for f in sorted(work.glob(f"{key}_*.npy"))] for key in IMAGE_KEYS}
    arrays = {key: np.concatenate(s) if s else np.empty((0, 32, 32, 3), np.uint8)
              for key, s in strips.items()}  # fmt: skip
    with np.load(part / "small.npz") as small:
        arrays |= {key: small[key] for key in small.files}
    wrong = [key for key, digest in index["sha256"].items() if _digest(arrays[key]) != digest]
    if wrong:
        raise SystemExit(
            f"{part}: rebuilt arrays differ from the source's: {', '.join(wrong)}; unpack every "
            f"part, in order, into the same --work folder ({work}), holding nothing else"
        )
    if output is not None:
        (output / DATA_FILE).parent.mkdir(parents=True, exist_ok=True)
        np.savez(output / DATA_FILE, **arrays)
        print(f"{output / DATA_FILE}: every array matches its SHA-256")


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    packing = ArgumentParser(description=pack.__doc__.splitlines()[0])
    packing.add_argument(
        "--source", type=Path, default=None,
        help=f"the npz (default: {DATA_FILE} of the local data folder, MULTISPIKE_DATA)",
    )  # fmt: skip
    packing.add_argument("--output", type=Path, required=True, help="folder of the parts")
    packing.add_argument("--parts", type=int, default=2, help="how many parts")
    packing.add_argument("--processes", type=int, default=2, help="encoding processes")
    unpacking = ArgumentParser(description=unpack.__doc__.splitlines()[0])
    unpacking.add_argument("part", type=Path, help="a part folder written by pack")
    unpacking.add_argument("--work", type=Path, required=True, help="decoded strips so far")
    unpacking.add_argument("--output", type=Path, default=None,
                           help="data folder for the rebuilt npz (with the last part)")  # fmt: skip
    commands = parser.add_subcommands(dest="command")
    commands.add_subcommand("pack", packing, help="write the parts")
    commands.add_subcommand("unpack", unpacking, help="decode one part; rebuild after the last")
    args = parser.parse_args(argv)
    if args.command == "pack":
        pack(args.pack.source, args.pack.output, args.pack.parts, args.pack.processes)
    else:
        unpack(args.unpack.part, args.unpack.work, args.unpack.output)


if __name__ == "__main__":
    main()
