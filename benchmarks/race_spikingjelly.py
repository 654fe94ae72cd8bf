"""Race: SpikingJelly's ann2snn against multispike on the pretrained CIFAR-10 ResNet-20.

    python benchmarks/race_spikingjelly.py --eval_images 1000 --timesteps 256 --threads 2
    python benchmarks/race_spikingjelly.py --eval_images null   # all 10,000 test images

Needs ``pip install -e ".[bench]"`` (SpikingJelly) and the local data folder
(``MULTISPIKE_DATA``: the akamaster ResNet-20 checkpoint and ``cifar10/cifar10-full.npz``).
The same ANN (``ms_resnet20``, ``pretrained=True``), calibrated on the same
``--calibration_images`` training images (``--data``'s ``calibration_dataloader``: a seeded
choice of training images, never the validation hold-out), is converted three ways:

- ``sj-rate``: SpikingJelly ``RateCodingRecipe(mode="99.9%")`` — binary IF neurons whose
  threshold is the 99.9th percentile of each ReLU's activations (rate coding);
- ``sj-ltb``: SpikingJelly ``LocalThresholdBalancingRecipe`` — per-channel thresholds that
  start at 0 and grow by twice the mean overflow on every calibration batch, so it is fed
  the calibration batches ``--ltb_passes`` times (one pass of a few batches leaves the
  thresholds far too low and the SNN at chance);
- ``ms-L{L}``: multispike ``calibrate(levels=L)`` + ``to_snn(max_spikes=L)`` — multi-level
  IF neurons (99.9th percentile thresholds, no fine-tuning).

The test images are the first ``--eval_images`` of the DataModule's test split, normalised
like the ANN's pretrained cfg (``adopt_model_config``) and held in memory before the race.
Each SNN runs ``--timesteps`` steps (multispike: ``--ms_timesteps``) once per image batch;
top-1 after t = 1, 2, 4, … steps (``StepAccuracy``: argmax of the mean of the first t
outputs) comes from that single pass (the networks are causal); the ANN's top-1 is a
one-step ``StepAccuracy`` of its logits. Wall time to reach t is measured on the
same pass for SpikingJelly (it steps one timestep per call); for multispike, whose SNN
processes all steps of a batch at once, ``T = 1`` is timed by itself. Raw results go to
``--json_path`` (default ``benchmarks/results/race_spikingjelly.json``).

The zoo's option-A shortcut (``F.pad(x[:, :, ::2, ::2])`` with zero channels) is a
``call_function`` to ``F.pad`` that SpikingJelly's step-mode graph rewriter rejects; it is
replaced, on SpikingJelly's copy only, by the identical fixed 1×1 convolution with stride 2
whose weight is the 0/1 matrix that puts input channel ``c`` on output channel ``c + pad``
(``embedding_conv``). A 1×1 conv is a stateless layer SpikingJelly wraps in multi-step
mode; each output is ``1·x`` plus exact zeros, so the ANN's logits do not change
(checked with ``torch.equal`` before the race).
"""

from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path

import torch
from jsonargparse import lazy_instance
from torch import Tensor, nn

from multispike.convert import calibrate, to_snn
from multispike.distill.metrics import StepAccuracy
from multispike.pipelines.cli import run_function
from multispike.pipelines.data import CIFAR10DataModule
from multispike.pipelines.sources import ann_and_data, first_images
from multispike.zoo import PadShortcut

RESULTS = Path(__file__).resolve().parent / "results" / f"{Path(__file__).stem}.json"
Batches = list[tuple[Tensor, Tensor]]


def spikingjelly():
    """SpikingJelly's ``ann2snn`` and ``functional`` modules (a benchmark-only dependency)."""
    try:
        from spikingjelly.activation_based import ann2snn, functional
    except ImportError as err:
        raise ModuleNotFoundError(
            "SpikingJelly is not installed: pip install -e '.[bench]' (or pip install spikingjelly)"
        ) from err
    return ann2snn, functional


def embedding_conv(shortcut: PadShortcut, in_chans: int) -> nn.Conv2d:
    """The option-A shortcut as a fixed 1×1 strided conv: channel ``c`` → ``c + pad``."""
    out_chans = in_chans + 2 * shortcut.pad
    conv = nn.Conv2d(in_chans, out_chans, 1, stride=shortcut.stride, bias=False)
    weight = torch.zeros(out_chans, in_chans, 1, 1)
    weight[torch.arange(in_chans) + shortcut.pad, torch.arange(in_chans)] = 1.0
    conv.weight.data.copy_(weight)
    conv.weight.requires_grad_(False)
    return conv


def traceable_for_spikingjelly(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose option-A shortcuts are :func:`embedding_conv` layers."""
    model = copy.deepcopy(model)
    for block in model.modules():
        shortcut = getattr(block, "shortcut", None)
        if isinstance(shortcut, PadShortcut):
            block.shortcut = embedding_conv(shortcut, block.conv1.in_channels)
    return model


def checkpoints(max_t: int) -> list[int]:
    """1, 2, 4, … up to ``max_t``."""
    return [2**k for k in range(max_t.bit_length()) if 2**k <= max_t]


def at_checkpoints(accuracy: StepAccuracy, marks: list[int]) -> dict[int, float]:
    """Top-1 (%) after each checkpoint step of a ``StepAccuracy``."""
    top1 = accuracy.compute().reshape(-1)
    return {t: 100.0 * float(top1[t - 1]) for t in marks}


@torch.inference_mode()
def race_spikingjelly(snn: nn.Module, batches: Batches, max_t: int) -> dict:
    """Step ``snn`` ``max_t`` times per batch: ``{t: (top-1 %, seconds to reach t)}``."""
    marks = checkpoints(max_t)
    accuracy = StepAccuracy(max_t)
    seconds = dict.fromkeys(marks, 0.0)
    _, functional = spikingjelly()
    snn.eval()
    for xb, yb in batches:
        functional.reset_net(snn)
        outputs = []
        start = time.perf_counter()
        for t in range(1, max_t + 1):
            outputs.append(snn(xb))
            if t in seconds:
                seconds[t] += time.perf_counter() - start
        accuracy.update(torch.stack(outputs), yb)
    top1 = at_checkpoints(accuracy, marks)
    return {t: (top1[t], seconds[t]) for t in marks}


@torch.inference_mode()
def race_multispike(snn: nn.Module, batches: Batches, max_t: int) -> tuple[dict, float]:
    """Top-1 after every checkpoint from one ``max_t``-step pass, with ``T = 1`` timed by
    itself: ``({t: (top-1 %, seconds or None)}, seconds of the sweep)``."""
    marks = checkpoints(max_t)
    accuracy = StepAccuracy(max_t)
    small = max(1, len(batches[0][1]) * 4 // max_t)  # keep T·B (the time-flattened batch) bounded
    start = time.perf_counter()
    for xb, yb in batches:
        for xs, ys in zip(xb.split(small), yb.split(small), strict=True):
            accuracy.update(snn(xs, timesteps=max_t), ys)
    sweep = time.perf_counter() - start
    start = time.perf_counter()
    for xb, _ in batches:
        snn(xb, timesteps=1)
    one_step = time.perf_counter() - start
    top1 = at_checkpoints(accuracy, marks)
    return {t: (top1[t], one_step if t == 1 else None) for t in marks}, sweep


def matched(results: dict, target: float) -> int | None:
    """The first checkpoint T whose top-1 is at least ``target``."""
    return next((t for t, (acc, _) in sorted(results.items()) if acc >= target), None)


def main(
    eval_images: int | None = 1000,
    calibration_images: int = 1000,
    timesteps: int = 256,
    ms_timesteps: int | None = None,
    levels: list[int] = [4, 8, 16],  # noqa: B006  (never mutated)
    ltb_passes: int = 20,
    data: CIFAR10DataModule = lazy_instance(CIFAR10DataModule, batch_size=100),  # noqa: B008
    threads: int = 2,
    json_path: Path = RESULTS,
) -> None:
    """Race SpikingJelly's converters against multispike's; print the tables, write the JSON.

    Args:
        eval_images: the first test images raced (null: all 10,000).
        calibration_images: training images every converter calibrates on.
        timesteps: steps every SNN runs (top-1 at t = 1, 2, 4, … up to it).
        ms_timesteps: multispike's steps (default ``timesteps``).
        levels: the ``L`` (= ``N``) of each multispike SNN.
        ltb_passes: calibration passes of SpikingJelly's threshold balancing.
        data: the CIFAR-10 DataModule (``--data.batch_size``: images per batch).
        threads: torch intra-op threads.
        json_path: where the raw results go.
    """
    arguments = dict(
        eval_images=eval_images, calibration_images=calibration_images, timesteps=timesteps,
        ms_timesteps=ms_timesteps, levels=levels, ltb_passes=ltb_passes,
        batch_size=data.batch_size, threads=threads, json_path=json_path,
    )  # fmt: skip
    ann2snn, _ = spikingjelly()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    ann, _ = ann_and_data("ms_resnet20", data, pretrained=True)  # data normalised like its weights
    data.setup("test")
    test = list(first_images(data.test_dataloader(), eval_images))
    calib = list(data.calibration_dataloader(calibration_images))
    images = sum(len(y) for _, y in test)
    print(
        f"CIFAR-10: {images} test images, {sum(len(y) for _, y in calib)} calibration images "
        f"(train split), {threads} threads, T up to {timesteps}"
    )

    top1 = StepAccuracy(1)  # one "step": the ANN's logits
    with torch.inference_mode():
        start = time.perf_counter()
        for xb, yb in test:
            top1.update(ann(xb).unsqueeze(0), yb)
        ann_seconds = time.perf_counter() - start
    ann_top1 = 100.0 * float(top1.compute())
    print(f"ANN ms_resnet20: top-1 {ann_top1:.2f}%  {images / ann_seconds:.0f} images/s")

    sj_ann = traceable_for_spikingjelly(ann).eval()
    with torch.inference_mode():
        same = torch.equal(sj_ann(test[0][0]), ann(test[0][0]))
    print(f"option-A shortcut as 1x1 embedding conv: logits identical to the ANN: {same}")

    results: dict[str, dict] = {}
    convert_seconds: dict[str, float] = {}
    sweep_seconds: dict[str, float] = {}
    recipes = {
        "sj-rate": lambda: ann2snn.RateCodingRecipe(dataloader=calib, mode="99.9%"),
        "sj-ltb": lambda: ann2snn.LocalThresholdBalancingRecipe(dataloader=calib * ltb_passes),
    }
    for name, recipe in recipes.items():
        start = time.perf_counter()
        snn = ann2snn.Converter(recipe=recipe()).convert(copy.deepcopy(sj_ann))
        convert_seconds[name] = time.perf_counter() - start
        results[name] = race_spikingjelly(snn, test, timesteps)
        print(
            f"{name}: converted in {convert_seconds[name]:.1f} s, "
            f"top-1 at T={timesteps}: {results[name][timesteps][0]:.2f}%"
        )
    for level in levels:
        name = f"ms-L{level}"
        start = time.perf_counter()
        qann = calibrate(ann, calib, levels=level, progress=False)
        snn = to_snn(qann, max_spikes=level, timesteps=1).eval()
        convert_seconds[name] = time.perf_counter() - start
        results[name], sweep_seconds[name] = race_multispike(snn, test, ms_timesteps or timesteps)
        print(
            f"{name}: converted in {convert_seconds[name]:.1f} s, "
            f"top-1 at T=1: {results[name][1][0]:.2f}%"
        )

    report(results, convert_seconds, sweep_seconds, ann_top1, images, timesteps, ms_timesteps)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "command": sys.argv, "args": arguments, "torch": torch.__version__, "images": images,
        "ann_top1": ann_top1, "shortcut_logits_identical": same,
        "convert_seconds": convert_seconds, "sweep_seconds": sweep_seconds,
        "results": {k: {str(t): v for t, v in r.items()} for k, r in results.items()},
    }  # fmt: skip
    json_path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"\nraw results: {json_path}")


def report(
    results: dict,
    convert_seconds: dict,
    sweep_seconds: dict,
    ann_top1: float,
    images: int,
    timesteps: int,
    ms_timesteps: int | None,
) -> None:
    """Print top-1 per T, throughput, and the speed ratio at matched accuracy."""
    names = list(results)
    print(f"\ntop-1 (%) on {images} CIFAR-10 test images; ANN {ann_top1:.2f}")
    print(f"{'T':>5}  " + "  ".join(f"{n:>9}" for n in names))
    for t in checkpoints(timesteps):
        cells = (f"{results[n][t][0]:9.2f}" if t in results[n] else f"{'-':>9}" for n in names)
        print(f"{t:>5}  " + "  ".join(cells))
    print(
        "\nwall time (s) and images/s to reach T (SpikingJelly: on the race pass; "
        "multispike: T=1 timed alone, the sweep's total time below)"
    )
    for n in names:
        cells = [
            f"T={t}: {sec:.1f}s {images / sec:.0f}/s"
            for t, (_, sec) in sorted(results[n].items())
            if sec is not None and t in (1, 8, 32, 64, 256)
        ]
        sweep = sweep_seconds.get(n)
        extra = f"  (T={ms_timesteps or timesteps} sweep {sweep:.1f}s)" if sweep else ""
        print(f"  {n:>8}: convert {convert_seconds[n]:.1f}s  " + "  ".join(cells) + extra)
    print("\nspeed at matched accuracy (within 1 point of the ANN, and at multispike's T=1):")
    for ms in (n for n in names if n.startswith("ms-")):
        ms_acc, ms_sec = results[ms][1]
        for target, label in ((ann_top1 - 1.0, "ANN-1"), (ms_acc, f"{ms} T=1")):
            if ms_acc < target:
                print(f"  {ms} T=1 ({ms_acc:.2f}%) is below {label} ({target:.2f}%): no match")
                continue
            for sj in (n for n in names if n.startswith("sj-")):
                t = matched(results[sj], target)
                if t is None:
                    print(
                        f"  {ms} T=1 ({ms_acc:.2f}%) vs {sj} to reach {label} "
                        f"({target:.2f}%): not reached by T={timesteps}"
                    )
                    continue
                sec = results[sj][t][1]
                print(
                    f"  {ms} T=1 ({ms_acc:.2f}%, {ms_sec:.1f}s) vs {sj} T={t} "
                    f"({results[sj][t][0]:.2f}%, {sec:.1f}s) to reach {label} ({target:.2f}%): "
                    f"multispike {sec / ms_sec:.1f}x faster"
                )


if __name__ == "__main__":
    sys.exit(run_function(main, sys.argv[1:], "python benchmarks/race_spikingjelly.py"))
