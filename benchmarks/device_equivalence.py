"""SNN(T=1, N=L) against its QANN, bit for bit, on any torch device (the GPU check).

    python benchmarks/device_equivalence.py --device cuda

For each model and L: calibrate a randomly initialised model (:func:`multispike.zoo.load_model`,
10 classes) on one batch of random images, convert it, and compare the two networks' logits on
another batch on ``--device`` (fp32; on CUDA with the backends' default TF32 convolutions) with
:class:`~multispike.distill.metrics.StepAgreement`: exact when the largest |Δlogit| is 0. No
data or weights are needed. Raw results go to ``--json_path`` (default
``benchmarks/results/device_equivalence.json``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from multispike.convert import calibrate, to_snn
from multispike.distill.metrics import StepAgreement
from multispike.pipelines.cli import run_function
from multispike.zoo import load_model

RESULTS = Path(__file__).resolve().parent / "results" / f"{Path(__file__).stem}.json"


def main(
    device: str = "cuda" if torch.cuda.is_available() else "cpu",
    models: list[str] = ["ms_resnet20", "resnet18"],  # noqa: B006  (never mutated)
    levels: list[int] = [2, 4, 8],  # noqa: B006
    batch_size: int = 128,
    threads: int | None = None,
    json_path: Path = RESULTS,
) -> None:
    """Compare every SNN(T=1, N=L) with its QANN on ``device``; write the raw results.

    Args:
        device: the torch device, e.g. ``cuda``, ``cuda:1`` or ``cpu``.
        models: timm/zoo model names taking 3×32×32 images.
        levels: the ``L`` of each conversion.
        batch_size: random images compared (the first half also calibrates).
        threads: torch intra-op threads (default: torch's).
        json_path: where the raw results go.
    """
    arguments = dict(device=device, models=models, levels=levels, batch_size=batch_size,
                     threads=threads, json_path=json_path)  # fmt: skip
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    rows = []
    for name in models:
        model = load_model(name, num_classes=10).to(device)
        x = torch.randn(batch_size, 3, 32, 32, device=device)
        for level in levels:
            qann = calibrate(model, [x[: batch_size // 2]], level, progress=False)
            snn = to_snn(qann, max_spikes=level, timesteps=1)
            agreement = StepAgreement(1).to(device)
            with torch.no_grad():
                agreement.update(snn(x), qann(x))
            diff = agreement.compute()["max_abs_logit_diff"].item()
            exact = diff == 0.0
            rows.append(dict(model=name, levels=level, exact=exact, max_abs_diff=diff))
            print(f"{device} {name} L={level} exact: {exact} max|diff| {diff}", flush=True)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    where = torch.device(device)
    name = torch.cuda.get_device_name(where) if where.type == "cuda" else where.type
    record = {"command": sys.argv, "args": arguments, "torch": torch.__version__, "device": name}
    record["rows"] = rows
    json_path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"raw results: {json_path}")


if __name__ == "__main__":
    sys.exit(run_function(main, sys.argv[1:], "python benchmarks/device_equivalence.py"))
