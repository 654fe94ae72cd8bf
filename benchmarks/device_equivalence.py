"""SNN(T=1, N=L) against its QANN, bit for bit, on any torch device (the GPU check).

    python benchmarks/device_equivalence.py --device cuda

For each model and L: calibrate a randomly initialised model on one batch, convert it, and
compare the two networks' logits on another batch on ``--device`` (fp32; on CUDA with the
backends' default TF32 convolutions). No data or weights are needed.
"""

from __future__ import annotations

import argparse

import timm
import torch

import multispike.zoo  # noqa: F401  (registers the ms_* models)
from multispike.convert import calibrate, to_snn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", default=["ms_resnet20", "resnet18"])
    parser.add_argument("--levels", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    torch.manual_seed(0)
    for name in args.models:
        model = timm.create_model(name, num_classes=10).to(args.device).eval()
        x = torch.randn(args.batch_size, 3, 32, 32, device=args.device)
        for levels in args.levels:
            qann = calibrate(model, [x[: args.batch_size // 2]], levels, progress=False)
            snn = to_snn(qann, max_spikes=levels, timesteps=1)
            with torch.no_grad():
                expected, got = qann(x), snn(x).mean(0)
            print(
                f"{args.device} {name} L={levels} exact: {torch.equal(expected, got)} "
                f"max|diff| {(expected - got).abs().max().item()}",
                flush=True,
            )


if __name__ == "__main__":
    main()
