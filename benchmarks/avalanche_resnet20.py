"""Spike avalanche of the pretrained CIFAR-10 ResNet-20 in sparse, SEW and analog form.

The pretrained akamaster ResNet-20 (../shared/data) is calibrated into a QANN (L levels,
per-layer thresholds, 99.9th percentile on a few training batches) and rewired into each
residual form (new quantizers calibrated on the same batches). The forms named by
``--finetune`` (default: all three) get the same short quantization-aware fine-tuning:
``--steps`` Adam steps (lr ``--lr`` with cosine decay, gradient norm clipped at 1) on
augmented training batches with the step-wise distillation loss (CE + KD from the float
ANN, α = 1, τ = 4); weights and thresholds learn through the straight-through estimator.
(SGD at lr 0.01 diverged on the SEW and analog forms, whose rewired streams start far
from the trained function.) Each form is then converted (N = L) and measured on the first
``--test-batches`` × 100 CIFAR-10 test images with
:func:`multispike.pipelines.avalanche.avalanche`.

    .venv/bin/python benchmarks/avalanche_resnet20.py --out /tmp/avalanche20   # defaults
"""

from __future__ import annotations

import argparse
import json
import time
from itertools import islice
from pathlib import Path

import timm
import torch
from tqdm.auto import tqdm

import multispike.zoo  # noqa: F401  (registers ms_resnet20)
from multispike.convert import calibrate
from multispike.convert.residual import JOIN_MODES, rewire_residual
from multispike.distill.data.cifar import CIFAR10DataModule
from multispike.distill.losses import stepwise_distillation_loss
from multispike.pipelines.avalanche import avalanche, save_avalanche
from multispike.zoo import pretrained_path


def _repeat(loader):
    while True:
        yield from loader


def finetune(qann, teacher, loader, steps: int, lr: float, progress: bool = True):
    """Quantization-aware fine-tuning with the step-wise distillation loss (on ``qann``)."""
    qann.train()
    params = [p for p in qann.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    for x, y in tqdm(islice(_repeat(loader), steps), total=steps, disable=not progress):
        with torch.no_grad():
            z = teacher(x)
        loss = stepwise_distillation_loss(qann(x), z, y, alpha=1.0, tau=4.0).total
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
    return qann.eval()


@torch.no_grad()
def accuracy(model, batches) -> float:
    """Top-1 of a float or quantized ANN on ``(images, labels)`` batches."""
    model.eval()
    hits = sum(int((model(x).argmax(1) == y).sum()) for x, y in batches)
    return hits / sum(len(y) for _, y in batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, default=8)
    parser.add_argument("--timesteps", type=int, default=1)
    parser.add_argument("--steps", type=int, default=150, help="QAT steps per form")
    parser.add_argument("--finetune", default="sparse,sew,analog", help="forms to tune")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--calib-batches", type=int, default=4)
    parser.add_argument("--test-batches", type=int, default=20, help="of 100 images")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("/tmp/avalanche_resnet20"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    start = time.time()

    teacher = timm.create_model(
        "ms_resnet20", pretrained=True,
        pretrained_cfg_overlay=dict(file=str(pretrained_path("ms_resnet20"))),
    ).eval()  # fmt: skip
    train = CIFAR10DataModule(batch_size=args.batch_size, augment=True)
    plain = CIFAR10DataModule(batch_size=100, augment=False)
    train.setup("fit")
    plain.setup("fit")
    plain.setup("test")
    calib = list(islice(plain.train_dataloader(), args.calib_batches))
    qann = calibrate(teacher, calib, args.levels, progress=False)

    test = list(islice(plain.test_dataloader(), args.test_batches))
    forms, before = {}, {"ann": accuracy(teacher, test), "qann": accuracy(qann, test)}
    for mode in JOIN_MODES:
        forms[mode] = rewire_residual(qann, mode, calib, progress=False)
        before[mode] = accuracy(forms[mode], test)
        print(f"{mode}: accuracy before fine-tuning {before[mode]:.4f}", flush=True)
        if mode in args.finetune.split(","):
            torch.manual_seed(0)
            loader = train.train_dataloader()
            forms[mode] = finetune(forms[mode], teacher, loader, args.steps, args.lr)

    result = avalanche(forms, test, timesteps=args.timesteps)
    result["model"] = "ms_resnet20 (akamaster CIFAR-10)"
    result["setup"] = dict(vars(args), out=str(args.out), seconds=round(time.time() - start))
    result["accuracy_before_finetune"] = before
    save_avalanche(result, args.out)
    summary = {
        m: dict(
            accuracy=f["accuracy"],
            total_events=f["totals"]["total_events"],
            neuron_events=f["totals"]["neuron_events"],
            stream_events=f["totals"]["stream_events"],
            stream_spikes=[round(j["spikes_per_neuron_step"], 3) for j in f["joins"]],
        )
        for m, f in result["forms"].items()
    }
    print(json.dumps(dict(summary=summary, before=before,
                          seconds=result["setup"]["seconds"]), indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
