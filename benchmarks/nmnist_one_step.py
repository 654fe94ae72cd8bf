"""One step against three on N-MNIST, with intervals: the ``nmnist`` recipe over data seeds.

    python benchmarks/nmnist_one_step.py --seeds 0 1 2 3 4 [--output runs/nmnist_one_step]

Each seed ``s`` runs ``multispike run --recipe nmnist`` with the data seed ``s`` (which 100
of the 1,000 training recordings are held out for validation, the calibration subset, the
shuffling): calibrate L = 8 on the summed frames, distill a one-step student that sees the 3
frames summed from the ANN teacher that sees the 3 frames, the epoch chosen on the held-out
recordings. Then, on the 100 test recordings (read once per seed), per recording: the
one-step SNN (N = L = 8, T = 1) and two 3-step references, the ANN and the L = 8 QANN
calibrated on single frames (the recipe's calibration for a frame-per-step network), both
on the 3 frames with logits averaged (``teacher_logits``). Reported: top-1 per seed, mean
and standard deviation over seeds, and a paired bootstrap (recordings resampled, seeds
pooled) of the one-step minus 3-step difference with its 95 % interval.

Why not k-fold over all 1,100 recordings: the teacher (the NIR paper's CNN) was trained on
the N-MNIST training set, which holds the 1,000 training recordings, so a test fold drawn
from them would flatter the multi-step teacher; only the 100 test recordings are unseen.
Raw results: ``--json`` (default ``benchmarks/results/nmnist_one_step.json``).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch


def predictions(run_dir: Path, seed: int) -> dict[str, torch.Tensor]:
    """Per test recording: whether each model is right."""
    from multispike.convert import calibrate
    from multispike.distill.frames import student_input, teacher_logits
    from multispike.pipelines import load
    from multispike.pipelines.data import NMNISTDataModule
    from multispike.pipelines.sources import ann_and_data

    data = NMNISTDataModule(frames=3, batch_size=50, seed=seed)
    ann, _ = ann_and_data("ms_nir_nmnist_cnn", data, pretrained=True)
    snn = load(run_dir / "distill" / "student").eval()
    data.setup("fit")
    qann = calibrate(ann.eval(), data.calibration_dataloader(500), 8, progress=False).eval()
    data.setup("test")
    right: dict[str, list[torch.Tensor]] = {"one_step": [], "qann_3": [], "ann_3": []}
    with torch.no_grad():
        for x, y in data.test_dataloader():
            one = snn(student_input(x, None, snn.timesteps)).mean(0)
            right["one_step"].append(one.argmax(-1) == y)
            right["qann_3"].append(teacher_logits(qann, x).argmax(-1) == y)
            right["ann_3"].append(teacher_logits(ann.eval(), x).argmax(-1) == y)
    return {k: torch.cat(v).float() for k, v in right.items()}


def paired_bootstrap(a: torch.Tensor, b: torch.Tensor, resamples: int, seed: int = 0) -> dict:
    """Mean of ``a − b`` over recordings (columns; rows are seeds) and its 95 % interval."""
    g = torch.Generator().manual_seed(seed)
    diff = (a - b).mean(0)  # per recording, averaged over seeds
    idx = torch.randint(diff.numel(), (resamples, diff.numel()), generator=g)
    means = diff[idx].mean(1)
    low, high = torch.quantile(means, torch.tensor([0.025, 0.975])).tolist()
    return {"mean": float(diff.mean()), "ci95": [low, high], "resamples": resamples}


def main() -> None:
    from multispike.pipelines.recipes.runner import run, split_overrides

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--output", type=Path, default=Path("runs/nmnist_one_step"))
    parser.add_argument("--resamples", type=int, default=10000)
    parser.add_argument(
        "--json", type=Path, default=Path("benchmarks/results/nmnist_one_step.json")
    )
    args = parser.parse_args()

    rows, right = [], {}
    for seed in args.seeds:
        start = time.perf_counter()
        run_dir = args.output / f"seed{seed}"
        _, overrides = split_overrides(["--convert.data.init_args.seed", str(seed),
                                        "--distill.data.init_args.seed", str(seed)])  # fmt: skip
        run("nmnist", run_dir, overrides, progress=False)
        got = predictions(run_dir, seed)
        for key, value in got.items():
            right.setdefault(key, []).append(value)
        rows.append({"seed": seed, "seconds": round(time.perf_counter() - start, 1),
                     **{k: float(v.mean()) for k, v in got.items()}})  # fmt: skip
        print(rows[-1], flush=True)
    stacked = {k: torch.stack(v) for k, v in right.items()}
    summary = {
        key: {"mean": float(v.mean(1).mean()), "sd": float(v.mean(1).std()) if len(v) > 1 else 0.0}
        for key, v in stacked.items()
    }
    result = {
        "command": "python benchmarks/nmnist_one_step.py --seeds " + " ".join(map(str, args.seeds)),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}",
        "test_recordings": int(stacked["one_step"].shape[1]),
        "seeds": rows,
        "top1": summary,
        "one_step_minus_qann_3": paired_bootstrap(
            stacked["one_step"], stacked["qann_3"], args.resamples
        ),
        "one_step_minus_ann_3": paired_bootstrap(
            stacked["one_step"], stacked["ann_3"], args.resamples
        ),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("top1", "one_step_minus_qann_3")}, indent=2))


if __name__ == "__main__":
    main()
