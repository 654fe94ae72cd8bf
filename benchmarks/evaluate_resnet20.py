"""Full `multispike evaluate` report of the pretrained CIFAR-10 ResNet-20, calibration only.

Two QANNs (L = 4 and L = 8 levels, 99.9th-percentile thresholds from 512 training images);
for each, the multi-level SNN at (N, T) = (L, 1) beside the binary SNN at (1, L), a sweep of
further (N, T) for accuracy against energy, and Gaussian input noise. Prints the summary
table recorded in BENCHMARKS.md; the reports land in runs/evaluate_resnet20/L{4,8}/.

    .venv/bin/python benchmarks/evaluate_resnet20.py --limit 1000 --sweep-images 500 \
        --noise-images 200
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from multispike.pipelines.commands.evaluate import main as evaluate_main
from multispike.zoo import pretrained_path

SWEEPS = {4: "1x1,1x2,1x8,2x1", 8: "1x4,1x16,2x1,4x1"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, help="test images (default all 10,000)")
    parser.add_argument("--sweep-images", type=int, default=500)
    parser.add_argument("--noise-images", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("runs/evaluate_resnet20"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    checkpoint = str(pretrained_path("ms_resnet20"))
    for levels in (4, 8):
        start = time.perf_counter()
        argv = [
            "--model", "ms_resnet20", "--checkpoint", checkpoint, "--data", "cifar10",
            "--levels", str(levels), "--timesteps", "1", "--binary-timesteps", str(levels),
            "--sweep", SWEEPS[levels], "--sweep-images", str(args.sweep_images),
            "--noise", "0,0.1,0.2,0.5", "--noise-images", str(args.noise_images),
            "--batch-size", "250", "--output", str(args.out / f"L{levels}"), "--no-progress",
        ]  # fmt: skip
        if args.limit:
            argv += ["--limit", str(args.limit)]
        if evaluate_main(argv) != 0:
            raise SystemExit(f"evaluate failed for L={levels}")
        print(f"L={levels}: {time.perf_counter() - start:.0f} s")
    print(summary(args.out))


def summary(out: Path) -> str:
    """Markdown table of both reports."""
    rows = ["| L | SNN (N, T) | images | top-1 % | synops/img | energy µJ (ops / +memory) |",
            "|---|---|---|---|---|---|"]  # fmt: skip
    notes = []
    for levels in (4, 8):
        m = json.loads((out / f"L{levels}" / "metrics.json").read_text())
        snn, energy = m["snn"], m["ann_energy"]
        notes.append(
            f"L={levels}: ANN {100 * m['ann']['top1']:.2f} %, QANN {100 * m['qann']['top1']:.2f} "
            f"%, SNN–QANN agreement {100 * snn['agreement_with_qann']:.2f} %, max |logit diff| "
            f"{snn['max_abs_logit_diff']:.2g}; ANN energy {energy['ops'] / 1e6:.1f} / "
            f"{energy['total'] / 1e6:.1f} µJ"
        )
        for r in m["sweep"]:
            rows.append(
                f"| {levels} | {r['label']} | {r['images']} | {100 * r['top1']:.2f} | "
                f"{r['synops']:.3g} | {r['energy']['ops'] / 1e6:.2f} / "
                f"{r['energy']['total'] / 1e6:.2f} |"
            )
        for match in m["matched_energy"]:
            ratio = (
                "not reached"
                if match["ratio"] is None
                else (
                    f"{match['binary']}: {match['ratio']:.2f}× (ops only {match['ratio_ops']:.2f}×)"
                )
            )
            notes.append(f"L={levels} {match['multi_level']} vs binary at matched top-1: {ratio}")
        noise = m.get("robustness", {})
        notes.append(f"L={levels} robustness (σ: top-1): " + "; ".join(
            f"{name} " + ", ".join(f"{float(s):g}: {100 * a:.1f}" for s, a in by.items())
            for name, by in noise.items()
        ))  # fmt: skip
    return "\n".join(rows + [""] + [f"- {n}" for n in notes])


if __name__ == "__main__":
    main()
