"""Average saved models of one network weight by weight, score the average on CIFAR-10, save it.

The averaged model is ``Σ_i c_i · θ_i`` over the state dicts of ``--models`` (weights,
biases and thresholds alike), ``c`` from ``--coefficients`` (equal by default, summing to 1),
e.g. a distilled SNN and a continuation of it (a "model soup" of two)::

    python benchmarks/average_models.py --models benchmarks/checkpoints/snn_L4_N4_T1 \\
        runs/q/snn_L4_N4_T1_last --output runs/soup/snn_L4_N4_T1

Prints the top-1 of every input and of the average on the first ``--test-images`` test
images (an SNN's mean output over its T steps), so the inputs are rescored beside it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import nn

from multispike.distill.data import CIFAR10DataModule
from multispike.distill.metrics import StepAccuracy
from multispike.pipelines import load, save


@torch.no_grad()
def top1(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 250) -> float:
    """Top-1 (%) of a QANN, or of an SNN's mean output over its T steps (``StepAccuracy``)."""
    model.eval()
    metric = None
    for start in range(0, len(images), batch):
        out = model(images[start : start + batch])
        out = out if out.dim() == 3 else out.unsqueeze(0)  # (T, B, classes)
        metric = metric or StepAccuracy(out.shape[0])
        metric.update(out, labels[start : start + batch])
    return round(100.0 * float(metric.compute().reshape(-1)[-1]), 2)  # of float32 counts


def average_state(states: list[dict[str, torch.Tensor]], coefficients: list[float]) -> dict:
    """``Σ_i c_i · states[i]`` key by key; the keys and shapes must agree."""
    keys = set(states[0])
    for i, state in enumerate(states[1:], 1):
        if set(state) != keys:
            raise ValueError(
                f"model {i} has other tensors than model 0: {sorted(keys ^ set(state))}"
            )
        for k in keys:
            if state[k].shape != states[0][k].shape:
                raise ValueError(
                    f"{k}: model {i} has shape {tuple(state[k].shape)}, model 0 "
                    f"{tuple(states[0][k].shape)}: average models of one network"
                )
    return {
        k: sum(c * s[k].double() for c, s in zip(coefficients, states, strict=True)).to(
            states[0][k].dtype
        )
        for k in states[0]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, nargs="+", required=True)
    parser.add_argument("--coefficients", type=float, nargs="*", default=None)
    parser.add_argument("--output", type=Path, default=None, help="save the average here")
    parser.add_argument("--test-images", type=int, default=10000)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    coefficients = args.coefficients or [1 / len(args.models)] * len(args.models)
    if len(coefficients) != len(args.models) or abs(sum(coefficients) - 1) > 1e-6:
        parser.error(f"--coefficients {coefficients}: give one per model, summing to 1")
    for path in args.models:
        if not (path / "config.json").is_file():
            parser.error(f"--models {path}: no config.json there (a multispike.pipelines.save dir)")

    data = CIFAR10DataModule()
    data.setup()
    test = torch.utils.data.Subset(data.test_dataset, range(args.test_images))
    images, labels = map(torch.stack, zip(*[(x, torch.tensor(y)) for x, y in test], strict=True))
    models = [load(path) for path in args.models]
    rows = [
        {"model": str(p), "top1": top1(m, images, labels)}
        for p, m in zip(args.models, models, strict=True)
    ]
    average = models[0]
    average.load_state_dict(average_state([m.state_dict() for m in models], coefficients))
    rows.append({"model": f"average, coefficients {coefficients}",
                 "top1": top1(average, images, labels)})  # fmt: skip
    print(json.dumps(rows, indent=1))
    if args.output is not None:
        config = json.loads((args.models[0] / "config.json").read_text())["architecture"]
        save(average, args.output, model_name=config["model_name"],
             model_kwargs=config.get("model_kwargs") or None)  # fmt: skip


if __name__ == "__main__":
    main()
