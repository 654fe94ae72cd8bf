"""How fast the DataModules deliver batches on CPU (single process, no workers).

    python benchmarks/data_loading.py [--train_images 10000] [--batch_size 500] [--threads 2]

Measures, on the local data folder (``MULTISPIKE_DATA``): ``CIFAR10DataModule.setup()``
(reading the CIFAR-10 ``.npz``), one pass over the 10,000 test images (no augmentation) and
over ``--train_images`` training images with crop + flip augmentation; and
``NMNISTDataModule(frames=3)``: N-MNIST sample recordings → 3 count frames (all 1,100
recordings). Raw results go to ``--json_path`` (default ``benchmarks/results/data_loading.json``).
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from pathlib import Path

import torch

from multispike.pipelines.cli import run_function
from multispike.pipelines.data import CIFAR10DataModule, NMNISTDataModule

RESULTS = Path(__file__).resolve().parent / "results" / f"{Path(__file__).stem}.json"


def timed_pass(loader, limit: int | None = None) -> tuple[int, float]:
    """Items seen and seconds spent iterating ``loader`` (stopping after ``limit`` items)."""
    start, seen = time.perf_counter(), 0
    for x, _ in loader:
        seen += x.shape[0]
        if limit is not None and seen >= limit:
            break
    return seen, time.perf_counter() - start


def main(
    train_images: int = 10_000,
    batch_size: int = 500,
    threads: int = 2,
    json_path: Path = RESULTS,
) -> None:
    """Time the DataModules' passes; print the table and write the raw numbers.

    Args:
        train_images: CIFAR-10 training images of the augmented pass.
        batch_size: CIFAR-10 images per batch.
        threads: torch intra-op threads.
        json_path: where the raw results go.
    """
    torch.set_num_threads(threads)
    arguments = dict(train_images=train_images, batch_size=batch_size, threads=threads,
                     json_path=json_path)  # fmt: skip

    rows = []
    cifar = CIFAR10DataModule(batch_size=batch_size)
    start = time.perf_counter()
    cifar.setup()
    rows.append(("CIFAR-10 npz: setup (load 60,000 images)", 60_000, time.perf_counter() - start))
    rows.append(("CIFAR-10 test pass, no augmentation", *timed_pass(cifar.test_dataloader())))
    train = timed_pass(cifar.train_dataloader(), train_images)
    rows.append(("CIFAR-10 train pass, crop + flip", *train))

    nmnist = NMNISTDataModule(frames=3, batch_size=100, val_size=0)
    loaders = itertools.chain(nmnist.train_dataloader(), nmnist.test_dataloader())
    rows.append(("N-MNIST samples -> 3 frames (1,100 recordings)", *timed_pass(loaders)))

    print("| step | items | seconds | items/s |")
    print("|---|---|---|---|")
    for name, items, seconds in rows:
        print(f"| {name} | {items} | {seconds:.2f} | {items / seconds:,.0f} |")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "command": sys.argv, "args": arguments, "torch": torch.__version__,
        "rows": [dict(step=n, items=i, seconds=s, items_per_s=i / s) for n, i, s in rows],
    }  # fmt: skip
    json_path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"raw results: {json_path}")


if __name__ == "__main__":
    sys.exit(run_function(main, sys.argv[1:], "python benchmarks/data_loading.py"))
