"""SNN(T=1, N=L) against its QANN, bit for bit, on any torch device (the GPU check).

    python benchmarks/device_equivalence.py --device cuda

For each model and L: calibrate a randomly initialised model (:func:`multispike.zoo.load_model`,
10 classes) on one batch of random images, convert it, and compare the two networks' logits on
another batch on ``--device`` (fp32; on CUDA with the backends' default TF32 convolutions). No
data or weights are needed. Raw results go to ``--json`` (default
``benchmarks/results/device_equivalence.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from multispike.convert import calibrate, to_snn
from multispike.zoo import load_model

RESULTS = Path(__file__).resolve().parent / "results" / f"{Path(__file__).stem}.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", default=["ms_resnet20", "resnet18"])
    parser.add_argument("--levels", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--json", type=Path, default=RESULTS, help="raw results (JSON)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for name in args.models:
        model = load_model(name, num_classes=10).to(args.device)
        x = torch.randn(args.batch_size, 3, 32, 32, device=args.device)
        for levels in args.levels:
            qann = calibrate(model, [x[: args.batch_size // 2]], levels, progress=False)
            snn = to_snn(qann, max_spikes=levels, timesteps=1)
            with torch.no_grad():
                expected, got = qann(x), snn(x).mean(0)
            exact = torch.equal(expected, got)
            diff = (expected - got).abs().max().item()
            rows.append(dict(model=name, levels=levels, exact=exact, max_abs_diff=diff))
            print(f"{args.device} {name} L={levels} exact: {exact} max|diff| {diff}", flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    record = {"command": sys.argv, "args": vars(args), "torch": torch.__version__, "device": name}
    record["rows"] = rows
    args.json.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"raw results: {args.json}")


if __name__ == "__main__":
    main()
