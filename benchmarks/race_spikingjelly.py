"""Race: SpikingJelly's ann2snn against multispike on the pretrained CIFAR-10 ResNet-20.

    python benchmarks/race_spikingjelly.py --images 1000 --max-t 256 --threads 2
    python benchmarks/race_spikingjelly.py --full          # all 10,000 test images

Needs ``pip install -e ".[bench]"`` (SpikingJelly) and the shared data folder (the akamaster
ResNet-20 checkpoint and ``cifar10/cifar10-full.npz``). The same ANN (``ms_resnet20`` from
the zoo), calibrated on the same training images, is converted three ways:

- ``sj-rate``: SpikingJelly ``RateCodingRecipe(mode="99.9%")`` — binary IF neurons whose
  threshold is the 99.9th percentile of each ReLU's activations (rate coding);
- ``sj-ltb``: SpikingJelly ``LocalThresholdBalancingRecipe`` — per-channel thresholds that
  start at 0 and grow by twice the mean overflow on every calibration batch, so it is fed
  the calibration batches ``--ltb-passes`` times (one pass of a few batches leaves the
  thresholds far too low and the SNN at chance);
- ``ms-L{L}``: multispike ``calibrate(levels=L)`` + ``to_snn(max_spikes=L)`` — multi-level
  IF neurons (99.9th percentile thresholds, no fine-tuning).

Each SNN runs ``max_t`` steps (multispike: ``--ms-max-t``) once per image batch; top-1 of
the accumulated output after t = 1, 2, 4, … steps comes from that single pass (the networks
are causal). Wall time to
reach t is measured on the same pass for SpikingJelly (it steps one timestep per call); for
multispike, whose SNN processes all steps of a batch at once, ``T = 1`` is timed by itself.

The zoo's option-A shortcut (``F.pad(x[:, :, ::2, ::2])`` with zero channels) is a
``call_function`` to ``F.pad`` that SpikingJelly's step-mode graph rewriter rejects; it is
replaced, on SpikingJelly's copy only, by the identical fixed 1×1 convolution with stride 2
whose weight is the 0/1 matrix that puts input channel ``c`` on output channel ``c + pad``
(``embedding_conv``). A 1×1 conv is a stateless layer SpikingJelly wraps in multi-step
mode; each output is ``1·x`` plus exact zeros, so the ANN's logits do not change
(checked with ``torch.equal`` before the race).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import timm
import torch
from torch import nn

import multispike.zoo  # noqa: F401  (registers ms_resnet20 in timm)
from multispike.convert import calibrate, cumulative_mean, to_snn
from multispike.zoo.checkpoints import pretrained_path
from multispike.zoo.cifar_resnet import PadShortcut
from multispike.zoo.paths import shared_data_dir

try:
    from spikingjelly.activation_based import ann2snn, functional
except ImportError as err:  # pragma: no cover - benchmark-only dependency
    raise SystemExit(
        "SpikingJelly is not installed: pip install -e '.[bench]' (or pip install spikingjelly)"
    ) from err


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


def load_cifar10(path: Path, mean, std, test_images: int, calib_images: int):
    """Normalised test images/labels (the first ``test_images``) and calibration images."""
    arrays = np.load(path)
    mean_t = torch.tensor(mean).view(1, 3, 1, 1)
    std_t = torch.tensor(std).view(1, 3, 1, 1)

    def prep(a: np.ndarray) -> torch.Tensor:
        return (torch.from_numpy(a).permute(0, 3, 1, 2).float().div(255) - mean_t) / std_t

    x = prep(arrays["test_x"][:test_images])
    y = torch.from_numpy(arrays["test_y"][:test_images]).long()
    calib = prep(arrays["train_x"][:calib_images])
    return x, y, calib


def batches(x: torch.Tensor, size: int) -> Iterator[torch.Tensor]:
    for i in range(0, x.shape[0], size):
        yield x[i : i + size]


def checkpoints(max_t: int) -> list[int]:
    steps, t = [], 1
    while t <= max_t:
        steps.append(t)
        t *= 2
    return steps


@torch.inference_mode()
def race_spikingjelly(snn: nn.Module, x, y, max_t: int, batch: int) -> dict:
    """Step ``snn`` ``max_t`` times per batch; correct counts and wall time at each checkpoint."""
    marks = checkpoints(max_t)
    correct = dict.fromkeys(marks, 0)
    seconds = dict.fromkeys(marks, 0.0)
    snn.eval()
    for xb, yb in zip(batches(x, batch), batches(y, batch), strict=True):
        functional.reset_net(snn)
        start = time.perf_counter()
        total = 0
        for t in range(1, max_t + 1):
            total = total + snn(xb)
            if t in correct:
                seconds[t] += time.perf_counter() - start
                correct[t] += int((total.argmax(1) == yb).sum())
    return {t: (100.0 * correct[t] / len(y), seconds[t]) for t in marks}


@torch.inference_mode()
def race_multispike(snn: nn.Module, x, y, max_t: int, batch: int) -> dict:
    """Top-1 after every checkpoint from one ``max_t``-step pass; T = 1 timed by itself."""
    marks = checkpoints(max_t)
    correct = dict.fromkeys(marks, 0)
    small = max(1, batch * 4 // max_t)  # keep T·B (the time-flattened batch) bounded
    start = time.perf_counter()
    for xb, yb in zip(batches(x, small), batches(y, small), strict=True):
        mean = cumulative_mean(snn(xb, timesteps=max_t))
        for t in marks:
            correct[t] += int((mean[t - 1].argmax(1) == yb).sum())
    sweep = time.perf_counter() - start
    start = time.perf_counter()
    for xb in batches(x, batch):
        snn(xb, timesteps=1)
    one_step = time.perf_counter() - start
    return {t: (100.0 * correct[t] / len(y), one_step if t == 1 else None) for t in marks} | {
        "sweep_seconds": sweep
    }


def matched(results: dict, target: float) -> int | None:
    """The first checkpoint T whose top-1 is at least ``target``."""
    for t, (acc, _) in sorted((k, v) for k, v in results.items() if isinstance(k, int)):
        if acc >= target:
            return t
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000, help="first N CIFAR-10 test images")
    parser.add_argument("--full", action="store_true", help="all 10,000 test images")
    parser.add_argument("--calib-images", type=int, default=1000, help="first N train images")
    parser.add_argument("--max-t", type=int, default=256)
    parser.add_argument("--ms-max-t", type=int, help="multispike's sweep length (default --max-t)")
    parser.add_argument("--levels", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--ltb-passes", type=int, default=20, help="calibration passes of LTB")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    root = shared_data_dir()
    if root is None:
        raise SystemExit("shared data folder not found: set MULTISPIKE_DATA")
    ann = timm.create_model(
        "ms_resnet20",
        pretrained=True,
        pretrained_cfg_overlay=dict(file=str(pretrained_path("ms_resnet20"))),
    ).eval()
    cfg = ann.pretrained_cfg
    n_test = 10_000 if args.full else args.images
    x, y, calib = load_cifar10(
        root / "cifar10" / "cifar10-full.npz", cfg["mean"], cfg["std"], n_test, args.calib_images
    )
    calib_batches = list(batches(calib, args.batch))
    print(
        f"CIFAR-10: {len(y)} test images, {len(calib)} calibration images (train set), "
        f"{args.threads} threads, T up to {args.max_t}"
    )

    with torch.inference_mode():
        start = time.perf_counter()
        logits = torch.cat([ann(xb) for xb in batches(x, args.batch)])
        ann_seconds = time.perf_counter() - start
    ann_top1 = 100.0 * float((logits.argmax(1) == y).float().mean())
    print(f"ANN ms_resnet20: top-1 {ann_top1:.2f}%  {len(y) / ann_seconds:.0f} images/s")

    sj_ann = traceable_for_spikingjelly(ann).eval()
    with torch.inference_mode():
        same = torch.equal(sj_ann(x[: args.batch]), ann(x[: args.batch]))
    print(f"option-A shortcut as 1x1 embedding conv: logits identical to the ANN: {same}")

    results: dict[str, dict] = {}
    convert_seconds: dict[str, float] = {}
    recipes = {
        "sj-rate": lambda: ann2snn.RateCodingRecipe(dataloader=calib_batches, mode="99.9%"),
        "sj-ltb": lambda: ann2snn.LocalThresholdBalancingRecipe(
            dataloader=calib_batches * args.ltb_passes
        ),
    }
    for name, recipe in recipes.items():
        start = time.perf_counter()
        snn = ann2snn.Converter(recipe=recipe()).convert(copy.deepcopy(sj_ann))
        convert_seconds[name] = time.perf_counter() - start
        results[name] = race_spikingjelly(snn, x, y, args.max_t, args.batch)
        print(
            f"{name}: converted in {convert_seconds[name]:.1f} s, "
            f"top-1 at T={args.max_t}: {results[name][args.max_t][0]:.2f}%"
        )
    for levels in args.levels:
        name = f"ms-L{levels}"
        start = time.perf_counter()
        qann = calibrate(ann, calib_batches, levels=levels, progress=False)
        snn = to_snn(qann, max_spikes=levels, timesteps=1).eval()
        convert_seconds[name] = time.perf_counter() - start
        results[name] = race_multispike(snn, x, y, args.ms_max_t or args.max_t, args.batch)
        print(
            f"{name}: converted in {convert_seconds[name]:.1f} s, "
            f"top-1 at T=1: {results[name][1][0]:.2f}%"
        )

    report(results, convert_seconds, ann_top1, len(y), args)
    if args.json:
        args.json.write_text(json.dumps({
            "images": len(y), "ann_top1": ann_top1, "convert_seconds": convert_seconds,
            "results": {k: {str(t): v for t, v in r.items()} for k, r in results.items()},
        }, indent=2))  # fmt: skip


def report(results: dict, convert_seconds: dict, ann_top1: float, images: int, args) -> None:
    """Print top-1 per T, throughput, and the speed ratio at matched accuracy."""
    marks = checkpoints(args.max_t)
    names = list(results)
    print(f"\ntop-1 (%) on {images} CIFAR-10 test images; ANN {ann_top1:.2f}")
    print(f"{'T':>5}  " + "  ".join(f"{n:>9}" for n in names))
    for t in marks:
        cells = (f"{results[n][t][0]:9.2f}" if t in results[n] else f"{'-':>9}" for n in names)
        print(f"{t:>5}  " + "  ".join(cells))
    print(
        "\nwall time (s) and images/s to reach T (SpikingJelly: on the race pass; "
        "multispike: T=1 timed alone, the sweep's total time below)"
    )
    for n in names:
        cells = [
            f"T={t}: {sec:.1f}s {images / sec:.0f}/s"
            for t, (_, sec) in sorted((k, v) for k, v in results[n].items() if isinstance(k, int))
            if sec is not None and t in (1, 8, 32, 64, 256)
        ]
        sweep = results[n].get("sweep_seconds")
        extra = f"  (T={args.ms_max_t or args.max_t} sweep {sweep:.1f}s)" if sweep else ""
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
                        f"({target:.2f}%): not reached by T={args.max_t}"
                    )
                    continue
                sec = results[sj][t][1]
                print(
                    f"  {ms} T=1 ({ms_acc:.2f}%, {ms_sec:.1f}s) vs {sj} T={t} "
                    f"({results[sj][t][0]:.2f}%, {sec:.1f}s) to reach {label} ({target:.2f}%): "
                    f"multispike {sec / ms_sec:.1f}x faster"
                )


if __name__ == "__main__":
    main()
