"""N-MNIST: the NIR paper's CNN as teacher, multi-level SNN students at 1 step and at 10.

Students: one summed multi-level frame in one step (``--steps 1``), or one frame per step
over 10 steps (``--steps 10``). The teacher sees ``--teacher-frames`` frames (3: the binning
the CNN was trained on) for the 1-step student and the student's own 10 frames for the
10-step one, logits averaged. Reports top-1 on the test recordings before (calibration only)
and after step-wise distillation::

    python benchmarks/distill_nmnist.py --epochs 10 --json runs/distill_nmnist.json

Uses the 1,000/100 shared samples unless ``--path`` names the full dataset.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import lightning as L
import torch

from multispike.distill.data.nmnist import NMNISTDataModule
from multispike.distill.module import StepwiseDistillation
from multispike.distill.students import Stage, timm_model


def run(steps: int, args) -> dict:
    """Calibrate, validate, distill and validate a ``steps``-step student."""
    frames = args.teacher_frames if steps == 1 else steps
    data = NMNISTDataModule(path=args.path, frames=frames, batch_size=args.batch_size)
    system = StepwiseDistillation(
        timm_model("ms_nir_nmnist_cnn", pretrained=True), levels=args.levels,
        stages=[Stage("snn", timesteps=steps)], student_frames=1 if steps == 1 else steps,
        calibration_images=args.calibration_images, optimizer="adamw", lr=args.lr,
    )  # fmt: skip
    trainer = L.Trainer(
        max_epochs=args.epochs, limit_train_batches=args.train_batches,
        accelerator=args.accelerator, devices=1, logger=False, enable_checkpointing=False,
        enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip
    before = trainer.validate(system, datamodule=data, verbose=False)[0]
    start = time.perf_counter()
    trainer.fit(system, datamodule=data)
    seconds = time.perf_counter() - start
    after = trainer.validate(system, datamodule=data, verbose=False)[0]
    return {
        "student": f"SNN T={steps} N=L={args.levels}, {1 if steps == 1 else steps} frame(s)",
        "teacher_frames": frames,
        "teacher_top1": 100 * before["val/teacher_top1"],
        "calibrated_top1": 100 * before["val/top1"],
        "distilled_top1": 100 * after["val/top1"],
        "train_seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--levels", type=int, default=8)
    parser.add_argument("--teacher-frames", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument(
        "--train-batches",
        type=float,
        default=None,
        help="batches per epoch (int) or fraction (default: all)",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--calibration-images", type=int, default=512)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--path", default=None, help="N-MNIST folder (default: shared samples)")
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.train_batches is not None and args.train_batches > 1:
        args.train_batches = int(args.train_batches)
    L.seed_everything(0, verbose=False)
    rows = []
    for steps in args.steps:
        rows.append(run(steps, args))
        print(rows[-1], flush=True)
    record = {"settings": vars(args) | {"json": str(args.json)},
              "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
              "rows": rows}  # fmt: skip
    print(json.dumps(record, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
