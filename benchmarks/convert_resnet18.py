"""Calibrate + convert timm resnet18 at 224×224, then compare SNN(T=1) and ANN throughput on CPU.

    python benchmarks/convert_resnet18.py --calib-images 256 --batch 32 --threads 2

Prints seconds and peak resident memory of calibration + conversion, and images/s of the ANN,
the QANN and the SNN at T=1 (and their ratio). Random weights and images: timing only.
"""

from __future__ import annotations

import argparse
import resource
import time

import timm
import torch

from multispike.convert import calibrate, to_snn


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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = timm.create_model(args.model).eval()
    data = [torch.randn(args.batch, 3, 224, 224) for _ in range(args.calib_images // args.batch)]
    start = time.perf_counter()
    qann = calibrate(model, data, levels=args.levels)
    snn = to_snn(qann, timesteps=1)
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"calibrate+convert {args.model} ({args.calib_images} images): {seconds:.1f} s, "
        f"peak RSS {peak_mib:.0f} MiB (includes the calibration data, "
        f"{sum(d.numel() for d in data) * 4 / 2**20:.0f} MiB)"
    )
    x = torch.randn(args.batch, 3, 224, 224)
    ann = images_per_second(model, x, args.repeats)
    q = images_per_second(qann, x, args.repeats)
    s = images_per_second(snn, x, args.repeats)
    print(
        f"images/s  ANN {ann:.1f}  QANN {q:.1f}  SNN(T=1) {s:.1f}  "
        f"SNN/ANN {s / ann:.2f}x  (batch {args.batch}, {args.threads} threads)"
    )


if __name__ == "__main__":
    main()
