"""Reconstruction calibration of the pretrained CIFAR-10 ResNet-20, against statistics calibration.

    python benchmarks/reconstruct.py --levels '[2,4,8]'              # validation only: choose
    python benchmarks/reconstruct.py --levels '[2,4,8]' --test true  # the one read of the test set
    python benchmarks/reconstruct.py --levels '[4]' --hflip true --json_path runs/r.json  # variant
    python benchmarks/reconstruct.py --sanity resnet18               # 224 px timing, random data

Protocol: ``--calibration_images`` unlabeled training images (``calibration_dataloader``)
calibrate and reconstruct; every setting is chosen on the DataModule's validation hold-out
(``--data.val_size`` other training images); ``--test true`` then scores all 10,000 test
images once per L. Rows, per L: QANN top-1 after percentile and MSE calibration (per channel)
and after :func:`multispike.convert.reconstruct` from ``--init``, whether SNN(T=1, N=L) logits
equal the QANN's on every scored image (both from
:func:`multispike.pipelines.evaluation.accuracy_summary`: max |Δlogit| 0), and the
reconstruction's wall time with ``--threads`` threads. The pretrained ResNet-20 saw every
training image, so validation top-1 measures how closely the QANN follows the ANN (99.8 % on
the hold-out), not generalisation; test top-1 does.

``--sanity NAME`` times the reconstruction of a random-weight timm model at 224 px on random
images instead, with its peak resident memory. Raw results go to ``--json_path`` (default
``benchmarks/results/reconstruct_<model>.json``).
"""

from __future__ import annotations

import json
import platform
import resource
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import torch
from jsonargparse import lazy_instance

from multispike.convert import calibrate, reconstruct, to_snn
from multispike.distill.metrics import StepAccuracy
from multispike.pipelines.cli import run_function
from multispike.pipelines.data import CIFAR10DataModule
from multispike.pipelines.evaluation import accuracy_summary
from multispike.pipelines.sources import ann_and_data
from multispike.zoo import load_model

RESULTS = Path(__file__).resolve().parent / "results"
CALIBRATION_BATCH = 128
Start = Literal["layer:percentile", "layer:mse", "channel:percentile", "channel:mse"]


def score(qann: torch.nn.Module, loader: Iterable) -> tuple[float, bool]:
    """Top-1 of the QANN and whether the SNN(T=1) logits equal the QANN's on every image."""
    summary = accuracy_summary(None, qann, to_snn(qann, timesteps=1), loader, progress=False)
    return summary["qann.top1"], summary["snn.max_abs_logit_diff"] == 0.0


@torch.no_grad()
def top1(model: torch.nn.Module, loader: Iterable) -> float:
    """Top-1 of a classifier (a one-step ``StepAccuracy`` of its logits)."""
    metric = StepAccuracy(1)
    for x, y in loader:
        metric.update(model(x).unsqueeze(0), y)
    return float(metric.compute())


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cifar(model: str, data: CIFAR10DataModule, levels: list[int], init: str, test: bool,
          hflip: bool, calibration_images: int, options: dict) -> dict:  # fmt: skip
    """The table: every L, every calibration, validation (and test) top-1."""
    ann, _ = ann_and_data(model, data, pretrained=True)
    calib = data.calibration_dataloader(calibration_images, batch_size=CALIBRATION_BATCH)
    data.setup("validate")
    val = list(data.val_dataloader())
    val_images = sum(len(y) for _, y in val)
    ann_val = top1(ann, val)
    print(f"{model}: ANN top-1 {100 * ann_val:.2f} % on {val_images} held-out images")
    print(
        "| L | method | val top-1 | test top-1 | SNN == QANN | seconds |\n|---|---|---|---|---|---|"
    )
    test_batches = None
    rows = []
    for level in levels:
        qanns, seconds = {}, {}
        for method in ("percentile", "mse"):
            qanns[method] = calibrate(ann, calib, level, per_channel=True, method=method,
                                      progress=False)  # fmt: skip
        kind, _, method = init.partition(":")
        start = qanns[method] if kind == "channel" else calibrate(
            ann, calib, level, method=method, progress=False
        )  # fmt: skip
        begin = time.perf_counter()
        fit_data, fit_options = calib, dict(options, images=calibration_images)
        if hflip:  # the same images and their mirror images: 2 × calibration_images inputs
            images = [x for x, _ in calib]
            fit_data = images + [x.flip(-1) for x in images]
            fit_options["images"] = 2 * calibration_images
        qanns["reconstruct"] = reconstruct(start, fit_data, **fit_options)
        seconds["reconstruct"] = time.perf_counter() - begin
        if test and test_batches is None:
            data.setup("test")
            test_batches = list(data.test_dataloader())
        for name, qann in qanns.items():
            val_top1, val_equal = score(qann, val)
            test_top1, test_equal = score(qann, test_batches) if test else (None, True)
            rows.append(dict(
                levels=level, method=name, val_top1=val_top1, test_top1=test_top1,
                snn_equal=val_equal and test_equal, seconds=seconds.get(name),
            ))  # fmt: skip
            test_text = f"{100 * test_top1:.2f}" if test_top1 is not None else "-"
            secs = f"{seconds[name]:.0f}" if name in seconds else "-"
            print(f"| {level} | {name} | {100 * val_top1:.2f} | {test_text} | "
                  f"{rows[-1]['snn_equal']} | {secs} |", flush=True)  # fmt: skip
    return dict(ann_val_top1=ann_val, rows=rows)


def random_model(name: str, size: int, calibration_images: int, options: dict) -> dict:
    """Seconds and peak memory of reconstructing a random-weight ``name`` at ``size`` px."""
    torch.manual_seed(options["seed"])
    model = load_model(name)
    data = [torch.randn(32, 3, size, size) for _ in range(-(-calibration_images // 32))]
    qann = calibrate(model, data, 8, per_channel=True, method="mse", progress=False)
    before = peak_mib()
    begin = time.perf_counter()
    reconstruct(qann, data, images=calibration_images, **options)
    seconds = time.perf_counter() - begin
    result = dict(seconds=seconds, peak_rss_mib_before=before, peak_rss_mib=peak_mib(),
                  input_size=size, levels=8)  # fmt: skip
    print(json.dumps(result))
    return result


def main(
    model: str = "ms_resnet20",
    levels: list[int] = [2, 4, 8],  # noqa: B006  (never mutated)
    init: Start = "channel:mse",
    calibration_images: int = 1024,
    reconstruct_iterations: int = 500,
    reconstruct_batch_size: int = 32,
    lr: float = 1e-3,
    weight_lr: float = 1e-3,
    drop_prob: float = 0.5,
    cache_mib: float = 1024,
    seed: int = 0,
    hflip: bool = False,
    test: bool = False,
    data: CIFAR10DataModule = lazy_instance(CIFAR10DataModule, val_size=5000, batch_size=500),  # noqa: B008
    sanity: str | None = None,
    sanity_size: int = 224,
    threads: int = 2,
    progress: bool = False,
    json_path: Path | None = None,
) -> None:
    """Compare percentile, MSE and reconstruction calibration per L; write the raw results.

    Args:
        model: a zoo model with pretrained CIFAR-10 weights.
        levels: the ``L`` of each row.
        init: the thresholds reconstruction starts from: ``{layer,channel}:{percentile,mse}``.
        calibration_images: training images that calibrate and reconstruct.
        reconstruct_iterations: optimiser steps per block.
        reconstruct_batch_size: images per optimiser step of the reconstruction.
        lr: Adam learning rate of ``log λ`` and of the biases.
        weight_lr: Adam learning rate of the weights; 0 keeps them fixed.
        drop_prob: QDrop ``p``, the probability that an input element is the quantized one.
        cache_mib: memory for cached block inputs and targets, in MiB.
        seed: seed of the batch sampling and QDrop masks (and of the sanity model).
        hflip: reconstruct on the images and their horizontal flips.
        test: also score the test set (once).
        data: the CIFAR-10 DataModule (``--data.val_size``: the hold-out that chooses).
        sanity: time a random-weight timm model of this name instead.
        sanity_size: image size of the sanity run.
        threads: torch intra-op threads.
        progress: show the reconstruction's progress bars.
        json_path: where the raw results go (default:
            ``benchmarks/results/reconstruct_<model>.json``).
    """
    arguments = dict(
        model=model, levels=levels, init=init, calibration_images=calibration_images,
        reconstruct_iterations=reconstruct_iterations,
        reconstruct_batch_size=reconstruct_batch_size, lr=lr, weight_lr=weight_lr,
        drop_prob=drop_prob, cache_mib=cache_mib, seed=seed, hflip=hflip, test=test,
        val_size=data.val_size, sanity=sanity, sanity_size=sanity_size, threads=threads,
        progress=progress,
    )  # fmt: skip
    options = dict(  # reconstruct's keyword options
        iterations=reconstruct_iterations, batch_size=reconstruct_batch_size, lr=lr,
        weight_lr=weight_lr, drop_prob=drop_prob, cache_mib=cache_mib, seed=seed,
        progress=progress,
    )  # fmt: skip
    torch.set_num_threads(threads)
    if sanity:
        result = random_model(sanity, sanity_size, calibration_images, options)
    else:
        result = cifar(model, data, levels, init, test, hflip, calibration_images, options)
    record = dict(
        model=sanity or model, arguments=arguments, torch=torch.__version__,
        machine=platform.processor() or platform.machine(), threads=threads, **result,
    )  # fmt: skip
    path = json_path or RESULTS / f"reconstruct_{sanity or model}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(run_function(main, sys.argv[1:], "python benchmarks/reconstruct.py"))
