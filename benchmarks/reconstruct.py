"""Reconstruction calibration of the pretrained CIFAR-10 ResNet-20, against statistics calibration.

    python benchmarks/reconstruct.py --levels 2 4 8                  # validation only: choose
    python benchmarks/reconstruct.py --levels 2 4 8 --test           # the one read of the test set
    python benchmarks/reconstruct.py --levels 4 --hflip --json runs/r.json  # a variant: validation
    python benchmarks/reconstruct.py --sanity resnet18               # 224 px timing, random data

Protocol: ``--images`` unlabeled training images (``calibration_dataloader``) calibrate and
reconstruct; every setting is chosen on ``--val-size`` other training images (the DataModule's
``val_size`` hold-out); ``--test`` then scores all 10,000 test images once per L. Rows, per L:
QANN top-1 after percentile and MSE calibration (per channel) and after
:func:`multispike.convert.reconstruct` from ``--init``, whether SNN(T=1, N=L) logits equal the
QANN's on every scored image, and the reconstruction's wall time with ``--threads`` threads.
The pretrained ResNet-20 saw every training image, so validation top-1 measures how closely
the QANN follows the ANN (99.8 % on the hold-out), not generalisation; test top-1 does.

``--sanity NAME`` times the reconstruction of a random-weight timm model at 224 px on random
images instead, with its peak resident memory. Raw results go to ``--json`` (default
``benchmarks/results/reconstruct_<model>.json``).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from pathlib import Path

import timm
import torch

import multispike.zoo
from multispike.convert import calibrate, reconstruct, to_snn
from multispike.pipelines.data import CIFAR10DataModule

RESULTS = Path(__file__).resolve().parent / "results"


@torch.no_grad()
def score(qann, batches: list) -> tuple[float, bool]:
    """Top-1 of the QANN and whether the SNN(T=1) logits equal the QANN's on every image."""
    snn, correct, equal, count = to_snn(qann, timesteps=1), 0, True, 0
    for x, y in batches:
        logits = qann(x)
        equal &= torch.equal(snn(x)[0], logits)
        correct += (logits.argmax(1) == y).sum().item()
        count += len(y)
    return correct / count, equal


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def options(args: argparse.Namespace) -> dict:
    return dict(
        images=args.images, iterations=args.iterations, batch_size=args.batch_size, lr=args.lr,
        weight_lr=args.weight_lr, drop_prob=args.drop_prob, cache_mib=args.cache_mib,
        progress=args.progress,
    )  # fmt: skip


def cifar(args: argparse.Namespace) -> dict:
    data = CIFAR10DataModule(val_size=args.val_size, batch_size=500)
    calib = data.calibration_dataloader(args.images, batch_size=128)
    data.setup("validate")
    val = list(data.val_dataloader())
    model = multispike.zoo.load_checkpoint(
        timm.create_model(args.model), multispike.zoo.pretrained_path(args.model)
    ).eval()
    with torch.no_grad():
        ann_val = sum((model(x).argmax(1) == y).sum().item() for x, y in val) / args.val_size
    print(f"{args.model}: ANN top-1 {100 * ann_val:.2f} % on {args.val_size} held-out images")
    print(
        "| L | method | val top-1 | test top-1 | SNN == QANN | seconds |\n|---|---|---|---|---|---|"
    )
    test = None
    rows = []
    for levels in args.levels:
        qanns, seconds = {}, {}
        for method in ("percentile", "mse"):
            qanns[method] = calibrate(model, calib, levels, per_channel=True, method=method,
                                      progress=False)  # fmt: skip
        kind, _, method = args.init.partition(":")
        start = qanns[method] if kind == "channel" else calibrate(
            model, calib, levels, method=method, progress=False
        )  # fmt: skip
        begin = time.perf_counter()
        fit_data, fit_options = calib, options(args)
        if args.hflip:  # the same images and their mirror images: 2 × --images inputs
            images = [x for x, _ in calib]
            fit_data = images + [x.flip(-1) for x in images]
            fit_options["images"] = 2 * args.images
        qanns["reconstruct"] = reconstruct(start, fit_data, seed=args.seed, **fit_options)
        seconds["reconstruct"] = time.perf_counter() - begin
        if args.test and test is None:
            data.setup("test")
            test = list(data.test_dataloader())
        for name, qann in qanns.items():
            val_top1, val_equal = score(qann, val)
            test_top1, test_equal = score(qann, test) if args.test else (None, True)
            rows.append(dict(
                levels=levels, method=name, val_top1=val_top1, test_top1=test_top1,
                snn_equal=val_equal and test_equal, seconds=seconds.get(name),
            ))  # fmt: skip
            test_text = f"{100 * test_top1:.2f}" if test_top1 is not None else "-"
            secs = f"{seconds[name]:.0f}" if name in seconds else "-"
            print(f"| {levels} | {name} | {100 * val_top1:.2f} | {test_text} | "
                  f"{rows[-1]['snn_equal']} | {secs} |", flush=True)  # fmt: skip
    return dict(ann_val_top1=ann_val, rows=rows)


def sanity(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    model = timm.create_model(args.sanity).eval()
    size = args.sanity_size
    data = [torch.randn(32, 3, size, size) for _ in range(-(-args.images // 32))]
    qann = calibrate(model, data, 8, per_channel=True, method="mse", progress=False)
    before = peak_mib()
    begin = time.perf_counter()
    reconstruct(qann, data, seed=args.seed, **options(args))
    seconds = time.perf_counter() - begin
    result = dict(seconds=seconds, peak_rss_mib_before=before, peak_rss_mib=peak_mib(),
                  input_size=size, levels=8)  # fmt: skip
    print(json.dumps(result))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ms_resnet20")
    parser.add_argument("--levels", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--init", default="channel:mse", help="{layer,channel}:{percentile,mse}")
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-lr", type=float, default=1e-3)
    parser.add_argument("--drop-prob", type=float, default=0.5)
    parser.add_argument("--cache-mib", type=float, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--hflip", action="store_true", help="reconstruct on the images and their horizontal flips"
    )
    parser.add_argument("--val-size", type=int, default=5000)
    parser.add_argument("--test", action="store_true", help="also score the test set (once)")
    parser.add_argument("--sanity", metavar="NAME", help="time a random timm model instead")
    parser.add_argument("--sanity-size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--json", type=Path, help="raw results (JSON)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = sanity(args) if args.sanity else cifar(args)
    record = dict(
        model=args.sanity or args.model, arguments=vars(args) | {"json": None},
        torch=torch.__version__, machine=platform.processor() or platform.machine(),
        threads=args.threads, **result,
    )  # fmt: skip
    path = args.json or RESULTS / f"reconstruct_{args.sanity or args.model}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
