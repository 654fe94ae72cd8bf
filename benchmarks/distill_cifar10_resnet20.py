"""Step-wise distillation of the pretrained CIFAR-10 ResNet-20: SNN top-1 before and after.

For every ``N = L`` in ``--levels``: the calibrated QANN (= the SNN at T = 1, bit-identical)
and the SNN at T = 1 after distillation. For every ``T`` in ``--binary-steps``: the binary
SNN (N = 1) converted from the ``L = T`` QANN, calibrated only and after distillation at that
T. All next to the ANN. Full schedule (GPU advised)::

    python benchmarks/distill_cifar10_resnet20.py --epochs 30 --json runs/distill_r20.json

Reduced schedules (``--train-batches``, ``--test-images``) are for smoke runs on a CPU; the
JSON records every setting and the wall time of each run. ``--save-dir DIR`` keeps every
distilled SNN (``snn_L{L}_N{N}_T{T}``); ``--init-dir DIR`` continues from them with a new
schedule instead of calibrating. ``--ema-decay D`` keeps an exponential moving average of the
weights (Lightning's ``EMAWeightAveraging``, every step), reports the last weights and the
average, and saves the average as the result and the last weights beside it (``..._last``);
``--uniform-average`` does the same with the equal-weight average of every step's weights
(stochastic weight averaging, Lightning's ``WeightAveraging``).
``--teacher ms_resnet56`` distils from a larger pretrained CIFAR ResNet instead of the ANN the
SNN was converted from; ``--teacher ms_resnet56 ms_resnet44`` from the mean logits of several
(``TeacherEnsemble``). Each epoch prints one line (epoch-mean training loss, steps, step
rate), so a detached run's log shows its progress where no progress bar reaches it, and the
distilled row of the JSON keeps those lines. ``--val-images K`` holds ``K`` training images out
of training and calibration (a fixed seeded choice) and scores every row on them as well
(``val_top1``): pick among runs, or between the last weights and their average, on those, and
read the test score of the pick only — a choice made on the test images flatters it. (The
pretrained ANN and teachers were trained on all 50,000: their ``val_top1`` is a training score.)
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EMAWeightAveraging, WeightAveraging
from torch import nn
from torchvision.transforms import v2
from tqdm import tqdm

from multispike.convert import calibrate, to_snn
from multispike.distill.data import CIFAR10DataModule
from multispike.distill.module import StepwiseDistillation
from multispike.distill.students import Stage, timm_model
from multispike.distill.teacher import TeacherEnsemble
from multispike.pipelines import load, save

# what follows CIFAR10DataModule's crop + flip (on the uint8 image, before normalisation)
EXTRA_AUGMENTATION = {
    "crop-flip": [],
    "trivialaugment": [v2.TrivialAugmentWide()],  # more varied inputs to match the teacher on
}


@torch.no_grad()
def top1(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 250) -> float:
    """Top-1 (%) of an ANN/QANN, or of an SNN's mean output over its T steps."""
    model.eval()
    correct = 0
    for start in range(0, len(images), batch):
        out = model(images[start : start + batch])
        out = out.mean(0) if out.dim() == 3 else out
        correct += (out.argmax(-1) == labels[start : start + batch]).sum().item()
    return 100.0 * correct / len(images)


def stacked(dataset: torch.utils.data.Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """A dataset of ``(image, label)`` pairs as one image tensor and one label tensor."""
    images, labels = zip(*[(x, torch.tensor(y)) for x, y in dataset], strict=True)
    return torch.stack(images), torch.stack(labels)


class KeepLastWeights(Callback):
    """Snapshot the student's own last weights before an averaging callback replaces them."""

    def __init__(self) -> None:
        self.state: dict[str, torch.Tensor] | None = None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.state = {
            k: v.detach().cpu().clone() for k, v in pl_module.student.state_dict().items()
        }


class EpochLines(Callback):
    """Print (and keep) one line per training epoch: mean loss, global step, steps per second."""

    def __init__(self) -> None:
        self.lines: list[dict] = []
        self.start = time.perf_counter()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        seconds = time.perf_counter() - self.start
        loss = trainer.callback_metrics.get("train/loss_epoch")
        line = {
            "epoch": f"{trainer.current_epoch + 1}/{trainer.max_epochs}",
            "loss": None if loss is None else round(float(loss), 4),
            "step": trainer.global_step, "seconds": round(seconds, 1),
            "steps_per_s": round(trainer.global_step / seconds, 2),
        }  # fmt: skip
        self.lines.append(line)
        tqdm.write(str(line))  # above the progress bar, not glued to its last state
        sys.stdout.flush()


def averaging_callbacks(ema_decay: float | None, uniform: bool) -> list[Callback]:
    """``[KeepLastWeights, averaging]`` for a fit, or ``[]`` without averaging.

    The average is updated after every optimizer step: exponentially with ``ema_decay``
    (``w̄ ← d·w̄ + (1 − d)·w``), else with equal weights if ``uniform`` (``w̄ = mean_k w_k``).
    The snapshot comes first, so it runs before the average is copied into the student.
    """
    if ema_decay:
        return [KeepLastWeights(), EMAWeightAveraging(decay=ema_decay)]
    if uniform:
        return [KeepLastWeights(), WeightAveraging()]
    return []


def distill(
    teacher, student, stage: Stage, data, args
) -> tuple[nn.Module, float, dict | None, list]:
    """Fit ``student`` against ``teacher`` in one stage.

    Returns the student (its average of the weights with ``--ema-decay`` or
    ``--uniform-average``), the wall time (s), with either flag the state dict of the last
    weights before averaging (else ``None``), and the per-epoch lines.
    """
    system = StepwiseDistillation(
        teacher, student=student, stages=[stage], alpha=args.alpha, tau=args.tau,
        optimizer=args.optimizer, lr=args.lr, warmup_steps=args.warmup_steps,
        weight_decay=args.weight_decay, mixup_alpha=args.mixup_alpha,
        cutmix_alpha=args.cutmix_alpha, torch_compile=args.compile,
    )  # fmt: skip
    averaging = averaging_callbacks(args.ema_decay, args.uniform_average)
    epochs = EpochLines()
    callbacks = [*averaging, epochs]
    trainer = L.Trainer(
        callbacks=callbacks, max_epochs=args.epochs, limit_train_batches=args.train_batches,
        limit_val_batches=0, accelerator=args.accelerator, devices=1, precision=args.precision,
        logger=False, enable_checkpointing=False, enable_model_summary=False,
        num_sanity_val_steps=0,
    )  # fmt: skip
    start = time.perf_counter()
    trainer.fit(system, datamodule=data)
    seconds = time.perf_counter() - start
    return system.student.cpu(), seconds, averaging[0].state if averaging else None, epochs.lines


def model_dir_name(levels: int, spikes: int, steps: int) -> str:
    """The model directory name of one configuration, as ``--save-dir`` writes it."""
    return f"snn_L{levels}_N{spikes}_T{steps}"


def save_student(snn: nn.Module, save_dir: Path | None, name: str) -> None:
    """Write a distilled SNN as a model directory for ``multispike evaluate --model-dir``."""
    if save_dir is not None:
        save(snn, save_dir / name, model_name="ms_resnet20")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, nargs="*", default=[2, 4, 8])
    parser.add_argument("--binary-steps", type=int, nargs="*", default=[2, 4, 8])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument(
        "--train-batches", type=float, default=None,
        help="batches per epoch (int) or fraction of the 50,000 images (default: all)",
    )  # fmt: skip
    parser.add_argument("--test-images", type=int, default=10000)
    parser.add_argument(
        "--val-images", type=int, default=0,
        help="hold out this many training images and score every row on them too (val_top1); "
        "meaningful from calibration, not with --init-dir models trained on all 50,000",
    )  # fmt: skip
    parser.add_argument("--calibration-images", type=int, default=2048)
    parser.add_argument("--per-channel", action="store_true", help="one threshold per channel")
    parser.add_argument("--method", default="percentile", choices=["percentile", "mse"])
    parser.add_argument(
        "--init-dir", type=Path, default=None,
        help="continue from the SNNs a previous --save-dir holds instead of calibrating",
    )  # fmt: skip
    parser.add_argument(
        "--save-dir", type=Path, default=None,
        help="save every distilled SNN here (multispike.pipelines.save), one directory each",
    )  # fmt: skip
    parser.add_argument(
        "--augmentation", default="crop-flip", choices=sorted(EXTRA_AUGMENTATION),
        help="training augmentation (the teacher sees the same augmented images)",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--optimizer", default="adamw", choices=["sgd", "adamw"])
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--warmup-steps", type=int, default=0, help="linear lr warm-up steps")
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument(
        "--ema-decay", type=float, default=None,
        help="keep an exponential moving average of the weights (every step) and report it",
    )  # fmt: skip
    parser.add_argument(
        "--uniform-average", action="store_true",
        help="keep the equal-weight average of every step's weights (SWA) and report it",
    )  # fmt: skip
    parser.add_argument(
        "--mixup-alpha", type=float, default=0.0, help="MixUp Beta(a, a) of training batches"
    )
    parser.add_argument("--cutmix-alpha", type=float, default=0.0, help="CutMix Beta(a, a)")
    parser.add_argument(
        "--teacher", nargs="+", default=["ms_resnet20"],
        choices=[f"ms_resnet{d}" for d in (20, 32, 44, 56)],
        help="the distillation teacher (shared pretrained weights; several: their mean logits); "
        "the SNN is still converted from the ResNet-20, which the ANN row reports",
    )  # fmt: skip
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--tau", type=float, default=4.0)
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument("--precision", default="32-true")
    parser.add_argument(
        "--compile", action="store_true",
        help="torch.compile the training steps' student and teacher (scores stay eager)",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.ema_decay and args.uniform_average:
        parser.error("--ema-decay and --uniform-average each set the average: give one")
    if args.train_batches is not None and args.train_batches > 1:
        args.train_batches = int(args.train_batches)
    configs = [(lv, lv, 1) for lv in args.levels] + [(t, 1, t) for t in args.binary_steps]
    if args.init_dir is not None:
        starts = [args.init_dir / model_dir_name(*c) for c in configs]
        missing = [str(path) for path in starts if not (path / "config.json").is_file()]
        if missing:
            parser.error(
                f"--init-dir {args.init_dir} lacks {', '.join(missing)}: choose the models to "
                "continue with --levels and --binary-steps (an empty flag selects none)"
            )
    L.seed_everything(0, verbose=False)

    crop_flip = CIFAR10DataModule().default_augmentation()
    data = CIFAR10DataModule(
        batch_size=args.batch_size, num_workers=args.num_workers,
        augmentation=[*crop_flip, *EXTRA_AUGMENTATION[args.augmentation]],
        val_size=args.val_images,
    )  # fmt: skip
    data.setup()
    scored = {"top1": stacked(torch.utils.data.Subset(data.test_dataset, range(args.test_images)))}
    if args.val_images:
        scored["val_top1"] = stacked(data.val_dataset)

    def scores(model: nn.Module) -> dict[str, float]:
        """Top-1 on the test images (and on the held-out training images)."""
        return {key: top1(model, *pair) for key, pair in scored.items()}

    calib = data.calibration_dataloader(num_images=args.calibration_images)
    ann = timm_model("ms_resnet20", pretrained=True)
    members = [ann if name == "ms_resnet20" else timm_model(name, pretrained=True)
               for name in args.teacher]  # fmt: skip
    teacher = members[0] if len(members) == 1 else TeacherEnsemble(members)

    rows: list[dict] = []
    record = {
        "settings": vars(args)
        | {k: str(getattr(args, k)) for k in ("json", "save_dir", "init_dir")},
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"cuda={torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}",
        "rows": rows,
    }

    def report(row: dict) -> None:
        """Print a row and rewrite the JSON, so a later failure keeps the finished runs."""
        rows.append(row)
        print(row, flush=True)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(record, indent=1))

    report({"model": "ANN", **scores(ann)})
    if teacher is not ann:
        name = " + ".join(args.teacher)
        report({"model": f"teacher {name}", **scores(teacher)})
    for levels, spikes, steps in configs:
        kind = (f"SNN T=1 N=L={levels}" if spikes > 1
                else f"binary SNN N=1 T={steps} (from L={levels})")  # fmt: skip
        if args.init_dir is not None:
            path = args.init_dir / model_dir_name(levels, spikes, steps)
            student, origin = load(path), f"start: {path}"
        else:
            qann = calibrate(
                ann, calib, levels, per_channel=args.per_channel, method=args.method,
                progress=False,
            )  # fmt: skip
            student, origin = to_snn(qann, max_spikes=spikes, timesteps=steps), "calibrated"
        report({"model": f"{kind} {origin}", **scores(student)})
        stage = Stage("snn", timesteps=steps, max_spikes=spikes)
        snn, seconds, last, epoch_lines = distill(teacher, student, stage, data, args)
        if last is not None:
            unaveraged = copy.deepcopy(snn)
            unaveraged.load_state_dict(last)
            report({"model": f"{kind} distilled, last weights", **scores(unaveraged)})
            save_student(unaveraged, args.save_dir, model_dir_name(levels, spikes, steps) + "_last")
        report({"model": f"{kind} distilled" + (
                    "" if last is None else " (EMA)" if args.ema_decay else " (uniform average)"
                ),
                **scores(snn), "train_seconds": round(seconds, 1),
                "epochs": epoch_lines})  # fmt: skip
        save_student(snn, args.save_dir, model_dir_name(levels, spikes, steps))

    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
