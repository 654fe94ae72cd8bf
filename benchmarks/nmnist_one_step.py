"""One step against three on N-MNIST, with intervals: the ``nmnist`` recipe over data seeds.

    python benchmarks/nmnist_one_step.py --seeds '[0,1,2,3,4]' [--output runs/nmnist_one_step]

Each seed ``s`` runs ``multispike run --recipe nmnist`` with the data seed ``s`` (which 100
of the 1,000 training recordings are held out for validation, the calibration subset, the
shuffling): calibrate L = 8 on the summed frames, distill a one-step student that sees the 3
frames summed from the ANN teacher that sees the 3 frames, the epoch chosen on the held-out
recordings. Then, on the 100 test recordings (read once per seed), per recording: the
one-step SNN (N = L = 8, T = 1) and two 3-step references, the ANN and the L = 8 QANN
calibrated on single frames, both on the 3 frames with logits averaged (``teacher_logits``).
The reference QANN is what ``multispike convert`` makes of the 3-frame data with the options
of the recipe's convert stage (read from the run's ``convert/report.json``;
``--calibration_images`` overrides its count): the calibration of a frame-per-step network.
Reported: top-1 per seed, mean and standard deviation over seeds, and a paired bootstrap
(recordings resampled, seeds pooled) of the one-step minus 3-step difference with its 95 %
interval.

Why not k-fold over all 1,100 recordings: the teacher (the NIR paper's CNN) was trained on
the N-MNIST training set, which holds the 1,000 training recordings, so a test fold drawn
from them would flatter the multi-step teacher; only the 100 test recordings are unseen.
Raw results: ``--json_path`` (default ``benchmarks/results/nmnist_one_step.json``).
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import torch

from multispike.pipelines.cli import run_function

RESULTS = Path(__file__).resolve().parent / "results" / f"{Path(__file__).stem}.json"
DATA = "multispike.pipelines.data.NMNISTDataModule"


def reference_qann(run_dir: Path, seed: int, calibration_images: int | None) -> torch.nn.Module:
    """The 3-step reference: the recipe's calibration (its convert stage's options, from
    ``report.json``) run by ``multispike convert`` on single frames of the 3-frame data."""
    from multispike.pipelines import load
    from multispike.pipelines.commands.convert import main as convert_main

    report = json.loads((run_dir / "convert" / "report.json").read_text())
    conversion, calibration = report["conversion"], report["calibration"]
    folder = run_dir / "reference_qann"
    argv = [
        "--model", conversion["model"], "--pretrained", "true",
        "--data", DATA, "--data.frames", "3", "--data.batch_size", "50", "--data.seed", str(seed),
        "--levels", str(conversion["levels"]),
        "--per_channel", str(conversion["per_channel"]).lower(),
        "--calibration", calibration["method"], "--percentile", str(calibration["percentile"]),
        "--calibration_images", str(calibration_images or calibration["images"]),
        "--output", str(folder), "--progress", "false",
    ]  # fmt: skip
    if calibration["method"] == "reconstruct":
        argv += ["--reconstruct_iterations", str(calibration["reconstruct_iterations"])]
    if convert_main(argv) != 0:
        raise SystemExit(f"multispike convert failed for the reference QANN: {folder}")
    return load(folder, kind="qann").eval()


def predictions(
    run_dir: Path, seed: int, calibration_images: int | None
) -> dict[str, torch.Tensor]:
    """Per test recording: whether each model is right (the per-recording hits the paired
    bootstrap resamples)."""
    from multispike.distill.frames import student_input, teacher_logits
    from multispike.pipelines import load
    from multispike.pipelines.data import NMNISTDataModule
    from multispike.pipelines.sources import ann_and_data

    data = NMNISTDataModule(frames=3, batch_size=50, seed=seed)
    ann, _ = ann_and_data("ms_nir_nmnist_cnn", data, pretrained=True)
    snn = load(run_dir / "distill" / "student").eval()
    qann = reference_qann(run_dir, seed, calibration_images)
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


def main(
    seeds: list[int] = [0, 1, 2, 3, 4],  # noqa: B006  (never mutated)
    output: Path = Path("runs/nmnist_one_step"),
    calibration_images: int | None = None,
    resamples: int = 10_000,
    json_path: Path = RESULTS,
) -> None:
    """Run the ``nmnist`` recipe once per data seed and compare one step with three.

    Args:
        seeds: data seeds, one recipe run each (``OUTPUT/seed<s>``).
        output: folder of the runs (a rerun resumes them).
        calibration_images: training recordings the 3-step reference QANN calibrates on
            (default: the recipe's ``convert.calibration_images``).
        resamples: bootstrap resamples of the paired difference.
        json_path: where the raw results go.
    """
    from multispike.pipelines.recipes.runner import run, split_overrides

    rows, right = [], {}
    for seed in seeds:
        start = time.perf_counter()
        run_dir = output / f"seed{seed}"
        _, overrides = split_overrides(["--convert.data.init_args.seed", str(seed),
                                        "--distill.data.init_args.seed", str(seed)])  # fmt: skip
        run("nmnist", run_dir, overrides, progress=False)
        got = predictions(run_dir, seed, calibration_images)
        for key, value in got.items():
            right.setdefault(key, []).append(value)
        rows.append({"seed": seed, "seconds": round(time.perf_counter() - start, 1),
                     **{k: float(v.mean()) for k, v in got.items()}})  # fmt: skip
        print(rows[-1], flush=True)
    stacked = {k: torch.stack(v) for k, v in right.items()}
    command = f"python benchmarks/nmnist_one_step.py --seeds '[{','.join(map(str, seeds))}]'"
    if calibration_images is not None:
        command += f" --calibration_images {calibration_images}"
    summary = {
        key: {"mean": float(v.mean(1).mean()), "sd": float(v.mean(1).std()) if len(v) > 1 else 0.0}
        for key, v in stacked.items()
    }
    result = {
        "command": command,
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}",
        "test_recordings": int(stacked["one_step"].shape[1]),
        "seeds": rows,
        "top1": summary,
        "one_step_minus_qann_3": paired_bootstrap(
            stacked["one_step"], stacked["qann_3"], resamples
        ),
        "one_step_minus_ann_3": paired_bootstrap(stacked["one_step"], stacked["ann_3"], resamples),
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("top1", "one_step_minus_qann_3")}, indent=2))


if __name__ == "__main__":
    sys.exit(run_function(main, sys.argv[1:], "python benchmarks/nmnist_one_step.py"))
