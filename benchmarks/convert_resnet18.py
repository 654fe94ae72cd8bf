"""Calibrate + convert timm resnet18 at 224×224, then compare SNN(T=1) and ANN throughput on CPU.

    python benchmarks/convert_resnet18.py --calib-images 256 --batch 32 --threads 2

Prints seconds and peak resident memory of calibration + conversion, and images/s of the ANN,
the QANN and the SNN at T=1 (and their ratio). The model comes from
:func:`multispike.zoo.load_model` with its random initialisation, and the images are random:
timing only. Raw results go to ``--json`` (default ``benchmarks/results/convert_resnet18.json``).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

from multispike.convert import calibrate, to_snn
from multispike.zoo import load_model

RESULTS = Path(__file__).resolve().parent / "results" / f"{Path(__file__).stem}.json"


def images_per_second(fn, x: torch.Tensor, repeats: int) -> float:
    with torch.inference_mode():
        fn(x)  # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            fn(x)
        return repeats * x.shape[0] / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--calib-images", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--levels", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=RESULTS, help="raw results (JSON)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = load_model(args.model)
    data = [torch.randn(args.batch, 3, 224, 224) for _ in range(args.calib_images // args.batch)]
    start = time.perf_counter()
    qann = calibrate(model, data, levels=args.levels)
    snn = to_snn(qann, timesteps=1)
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    data_mib = sum(d.numel() for d in data) * 4 / 2**20
    print(
        f"calibrate+convert {args.model} ({args.calib_images} images): {seconds:.1f} s, "
        f"peak RSS {peak_mib:.0f} MiB (includes the calibration data, {data_mib:.0f} MiB)"
    )
    x = torch.randn(args.batch, 3, 224, 224)
    ann = images_per_second(model, x, args.repeats)
    q = images_per_second(qann, x, args.repeats)
    s = images_per_second(snn, x, args.repeats)
    print(
        f"images/s  ANN {ann:.1f}  QANN {q:.1f}  SNN(T=1) {s:.1f}  "
        f"SNN/ANN {s / ann:.2f}x  (batch {args.batch}, {args.threads} threads)"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "command": sys.argv, "args": vars(args), "torch": torch.__version__,
        "convert_seconds": seconds, "peak_rss_mib": peak_mib, "calibration_data_mib": data_mib,
        "images_per_s": {"ann": ann, "qann": q, "snn_t1": s},
    }  # fmt: skip
    args.json.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"raw results: {args.json}")


if __name__ == "__main__":
    main()
