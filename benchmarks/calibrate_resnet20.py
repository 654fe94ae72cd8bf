"""Calibration-only conversion of the pretrained CIFAR-10 ResNet-20 on the real test set.

    python benchmarks/calibrate_resnet20.py --levels 2 4 8 --calib-images 1024

For each L and threshold variant (per layer / per channel, percentile / MSE init): ANN,
QANN and SNN(T=1, N=L) top-1 on all 10,000 CIFAR-10 test images of ``$MULTISPIKE_DATA``
(default ../shared/data), and whether the SNN's logits equal the QANN's on every image.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import timm
import torch

from multispike.convert import calibrate, to_snn
from multispike.zoo import load_checkpoint, pretrained_path, shared_data_dir

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def images(x: np.ndarray) -> torch.Tensor:
    return (torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255 - MEAN) / STD


@torch.no_grad()
def logits(model, x: torch.Tensor, batch: int = 500) -> torch.Tensor:
    return torch.cat([model(chunk) for chunk in x.split(batch)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ms_resnet20")
    parser.add_argument("--levels", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--calib-images", type=int, default=1024)
    parser.add_argument("--test-images", type=int, default=10000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--variants", nargs="+", default=["layer:percentile", "channel:percentile", "channel:mse"],
        help="thresholds:init pairs, thresholds in {layer, channel}, init in {percentile, mse}",
    )  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    arrays = np.load(shared_data_dir() / "cifar10" / "cifar10-full.npz")
    calib = images(arrays["train_x"][: args.calib_images]).split(128)
    x = images(arrays["test_x"][: args.test_images])
    y = torch.from_numpy(arrays["test_y"][: args.test_images]).long()
    model = load_checkpoint(timm.create_model(args.model), pretrained_path(args.model)).eval()
    ann = (logits(model, x).argmax(1) == y).float().mean().item()
    print(f"{args.model}: ANN top-1 {100 * ann:.2f}% on {len(y)} test images")
    print("| L | thresholds | init | QANN top-1 | SNN(T=1) top-1 | SNN == QANN | seconds |")
    print("|---|---|---|---|---|---|---|")
    for levels in args.levels:
        for variant in args.variants:
            kind, _, method = variant.partition(":")
            per_channel = kind == "channel"
            start = time.perf_counter()
            qann = calibrate(model, calib, levels=levels, per_channel=per_channel,
                             method=method, progress=False)  # fmt: skip
            snn = to_snn(qann, timesteps=1)
            q = logits(qann, x)
            s = logits(lambda b, net=snn: net(b)[0], x)
            seconds = time.perf_counter() - start
            q_acc = (q.argmax(1) == y).float().mean().item()
            s_acc = (s.argmax(1) == y).float().mean().item()
            print(f"| {levels} | {kind} | {method} | {100 * q_acc:.2f} | {100 * s_acc:.2f} | "
                  f"{torch.equal(q, s)} | {seconds:.0f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
