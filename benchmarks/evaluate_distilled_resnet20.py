"""`multispike evaluate` on the distilled CIFAR-10 ResNet-20 SNNs, and the multi-level/binary
energy ratio at matched accuracy across them.

Reads the model directories written by ``benchmarks/distill_cifar10_resnet20.py --save-dir``
(``snn_L{L}_N{N}_T{T}``), evaluates each one against the pretrained ANN (one report each under
``--out``), then compares every multi-level SNN with the cheapest binary SNN (distilled, or the
undistilled binary run beside a multi-level one) that reaches its top-1 within 0.5 point::

    python benchmarks/evaluate_distilled_resnet20.py --models runs/distill_full/models \\
        --eval-images 10000 --noise-images 500 [--only snn_L8_N8_T1 ...] [--summary-only] \\
        [--sweep 1x16,1x32 --sweep-images 1000]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from multispike.pipelines.commands.evaluate import main as evaluate_main
from multispike.pipelines.evaluate import matched_energy_ratio
from multispike.zoo import pretrained_path


def evaluate_dir(model_dir: Path, out: Path, args: argparse.Namespace) -> None:
    """One `multispike evaluate --model-dir` report (ANN = the pretrained ResNet-20)."""
    argv = [
        "--model-dir", str(model_dir), "--model", "ms_resnet20",
        "--checkpoint", str(pretrained_path("ms_resnet20")), "--data", "cifar10",
        "--eval-images", str(args.eval_images), "--noise", "0,0.1,0.2,0.5",
        "--noise-images", str(args.noise_images), "--batch-size", "250",
        "--output", str(out), "--no-progress",
    ]  # fmt: skip
    if args.sweep:
        argv += ["--sweep", args.sweep, "--sweep-images", str(args.sweep_images)]
    start = time.perf_counter()
    if evaluate_main(argv) != 0:
        raise SystemExit(f"evaluate failed for {model_dir}")
    print(f"{model_dir.name}: {time.perf_counter() - start:.0f} s", flush=True)


def summary(reports: dict[str, dict]) -> str:
    """Markdown: one row per evaluated SNN, the matched-accuracy energy ratios, robustness."""
    rows = [
        "| model | SNN (N, T) | distilled | images | top-1 % | synops/img | events/neuron/step | "
        "silent % | mean latency | energy µJ (ops / +memory) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    multi, binary, notes = [], [], []
    for name, m in reports.items():
        runs = [(m["snn"], "yes")]
        if m["binary"]["label"] != m["snn"]["label"]:
            runs.append((m["binary"], "no (same λ, N=1)"))
        for run, distilled in runs:
            total, energy = run["activity"]["total"], run["energy"]
            rows.append(
                f"| {name} | {run['label']} | {distilled} | {run['images']} | "
                f"{100 * run['top1']:.2f} | {total['synops']:.3g} | "
                f"{total['events_per_neuron_step']:.3f} | {100 * total['silent_fraction']:.1f} | "
                f"{run['latency']['mean']:.2f} | {energy['ops'] / 1e6:.2f} / "
                f"{energy['total'] / 1e6:.2f} |"
            )
            entry = {"label": f"{name} {run['label']}", "top1": run["top1"], "energy": energy}
            (multi if run["max_spikes"] > 1 else binary).append(entry)
        for r in m.get("sweep", [])[len(runs) :]:  # extra (N, T) of the same thresholds
            rows.append(
                f"| {name} | {r['label']} | no (same λ) | {r['images']} | {100 * r['top1']:.2f} | "
                f"{r['synops']:.3g} | | | | {r['energy']['ops'] / 1e6:.2f} / "
                f"{r['energy']['total'] / 1e6:.2f} |"
            )
            entry = {"label": f"{name} {r['label']}", "top1": r["top1"], "energy": r["energy"]}
            (multi if r["max_spikes"] > 1 else binary).append(entry)
        noise = m.get("robustness", {})
        notes.append(f"{name} robustness (σ: top-1 %): " + "; ".join(
            f"{model} " + ", ".join(f"{float(s):g}: {100 * a:.1f}" for s, a in by.items())
            for model, by in noise.items()
        ))  # fmt: skip
    first = next(iter(reports.values()))
    ann = first["ann_energy"]
    notes.insert(0, f"ANN top-1 {100 * first['ann']['top1']:.2f} % on the same images; dense "
                 f"energy {ann['ops'] / 1e6:.1f} / {ann['total'] / 1e6:.1f} µJ")  # fmt: skip
    for m in multi:
        match = matched_energy_ratio(m, binary)
        if match["ratio"] is None:
            text = f"no binary SNN here reaches {100 * m['top1']:.2f} % − 0.5"
        else:
            text = (
                f"{match['binary']} ({100 * match['binary_top1']:.2f} %): "
                f"{match['ratio']:.2f}× the energy (ops only {match['ratio_ops']:.2f}×)"
            )
        notes.append(f"matched top-1: {m['label']} ({100 * m['top1']:.2f} %) vs {text}")
    return "\n".join(rows + [""] + [f"- {n}" for n in notes])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path("runs/distill_full/models"))
    parser.add_argument("--only", nargs="*", default=None, help="model directory names")
    parser.add_argument("--eval-images", type=int, default=10000)
    parser.add_argument("--noise-images", type=int, default=500)
    parser.add_argument("--sweep", default="", help="extra NxT of each model's thresholds")
    parser.add_argument("--sweep-images", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path("runs/evaluate_distilled"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--summary-only", action="store_true", help="only summarise reports")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dirs = sorted(d for d in args.models.iterdir() if (d / "config.json").is_file())
    if args.only:
        dirs = [d for d in dirs if d.name in args.only]
    if not args.summary_only:
        for model_dir in dirs:
            evaluate_dir(model_dir, args.out / model_dir.name, args)
    reports = {
        d.name: json.loads(path.read_text())
        for d in dirs
        if (path := args.out / d.name / "metrics.json").is_file()
    }
    print(summary(reports))


if __name__ == "__main__":
    main()
