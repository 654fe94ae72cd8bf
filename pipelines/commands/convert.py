"""``multispike convert``: calibrate an ANN, convert it to an SNN, save it with ``report.json``.

    multispike convert --model ms_resnet20 --checkpoint resnet20.th \\
        --data cifar10:cifar10-full.npz --levels 4 --max-spikes 4 --output runs/resnet20-L4

The output directory holds the converted model (``model.safetensors`` + ``config.json``, which
``multispike.pipelines.load`` rebuilds) and ``report.json``: the conversion report (sites,
thresholds, folded BatchNorms) and, on labelled data, ``ann.top1``, ``qann.top1``,
``snn.top1_at_t``, ``snn.agreement_with_qann`` and ``snn.max_abs_logit_diff``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import timm
import torch
from torch.utils.data import DataLoader, Subset

__all__ = ["main", "parser"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="multispike convert",
        description="Calibrate an ANN into a multi-level quantized ANN and convert it to an SNN.",
    )
    p.add_argument("--model", required=True, help="timm model name (zoo models: ms_*)")
    p.add_argument("--checkpoint", type=Path, help="local weights file (state dict or checkpoint)")
    p.add_argument("--pretrained", action="store_true", help="timm pretrained weights (hub)")
    p.add_argument("--num-classes", type=int, help="classifier outputs (default: the data's)")
    p.add_argument("--in-chans", type=int, help="input channels (default: the data's)")
    p.add_argument("--data", default="random", help="data spec: random, digits, cifar10:PATH, …")
    p.add_argument("--levels", type=int, default=8, help="L, quantization levels")
    p.add_argument("--max-spikes", type=int, help="N, spikes per neuron per step (default L)")
    p.add_argument("--timesteps", type=int, default=1, help="T, SNN steps")
    p.add_argument("--per-channel", action="store_true", help="one threshold per channel")
    p.add_argument("--method", choices=("percentile", "mse"), default="percentile")
    p.add_argument("--percentile", type=float, default=99.9)
    p.add_argument(
        "--calibration-images", "--calib-images", type=int, default=512,
        help="training images for λ",
    )  # fmt: skip
    p.add_argument(
        "--eval-images", type=int, help="first N test images for accuracy (default: all)"
    )
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, …")
    p.add_argument("--output", "--out", type=Path, required=True, help="output directory")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def _fail(message: str) -> int:
    print(f"multispike convert: error: {message}", file=sys.stderr)
    return 2


def _limit(loader: DataLoader, images: int | None) -> DataLoader:
    if images is None or images >= len(loader.dataset):
        return loader
    return DataLoader(
        Subset(loader.dataset, range(images)),
        batch_size=loader.batch_size,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
    )


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    from multispike import zoo  # noqa: F401  (registers ms_* models)
    from multispike.convert import ConversionError, calibrate, conversion_report, to_snn
    from multispike.distill.data import DataNotFoundError, DataSpecError, from_spec
    from multispike.pipelines.evaluate import accuracy_summary, nested_metrics
    from multispike.pipelines.serialize import save
    from multispike.zoo import CheckpointError, load_checkpoint

    for flag, value in (("--levels", args.levels), ("--timesteps", args.timesteps)):
        if value < 1:
            return _fail(f"{flag} must be >= 1, got {value}")
    if args.max_spikes is not None and args.max_spikes < 1:
        return _fail(f"--max-spikes must be >= 1, got {args.max_spikes}")
    if not timm.is_model(args.model):
        close = timm.list_models(f"*{args.model.split('_')[-1]}*")[:8]
        return _fail(f"--model {args.model!r} is not a timm model; similar: {close}")
    if args.checkpoint is not None and not args.checkpoint.is_file():
        return _fail(f"--checkpoint {args.checkpoint} does not exist")
    device = torch.device(args.device)

    overrides = {"batch_size": args.batch_size}
    if args.data.strip().lower() == "random":
        cfg = timm.get_pretrained_cfg(args.model)
        size = tuple(cfg.input_size) if cfg is not None else (3, 224, 224)
        overrides["input_shape"] = (args.in_chans or size[0], *size[1:])
        if args.num_classes:
            overrides["num_classes"] = args.num_classes
    try:
        data = from_spec(args.data, **overrides)
        data.prepare_data()
        data.setup("fit")
        data.setup("test")
    except (DataSpecError, DataNotFoundError) as err:
        return _fail(str(err))
    in_chans = data.input_shape[0]
    if args.in_chans is not None and args.in_chans != in_chans:
        return _fail(f"--in-chans {args.in_chans} but --data {args.data} has {in_chans} channels")
    num_classes = args.num_classes or data.num_classes
    if num_classes != data.num_classes:
        return _fail(
            f"--num-classes {num_classes} but --data {args.data} has {data.num_classes} classes"
        )
    kwargs = {"num_classes": num_classes, "in_chans": in_chans}
    try:
        model = timm.create_model(args.model, pretrained=args.pretrained, **kwargs)
        if args.checkpoint is not None:
            load_checkpoint(model, args.checkpoint)
    except (CheckpointError, RuntimeError) as err:
        culprit = f"--checkpoint {args.checkpoint}" if args.checkpoint else f"--model {args.model}"
        return _fail(f"{culprit}: {err}")
    model = model.to(device).eval()

    start = time.perf_counter()
    try:
        qann = calibrate(
            model,
            data.calibration_dataloader(args.calibration_images),  # event data: single frames
            levels=args.levels,
            per_channel=args.per_channel,
            method=args.method,
            percentile=args.percentile,
            progress=not args.no_progress,
        )
    except ConversionError as err:
        return _fail(f"--model {args.model}: {err}")
    snn = to_snn(qann, max_spikes=args.max_spikes, timesteps=args.timesteps)
    seconds = time.perf_counter() - start

    labelled = args.data.strip().lower().split(":")[0] != "random"
    loader = _limit(data.test_dataloader(), args.eval_images)
    accuracy = accuracy_summary(model if labelled else None, qann, snn, loader,
                                progress=not args.no_progress)  # fmt: skip
    if not labelled:  # random labels: only the SNN–QANN comparison means something
        accuracy = {k: v for k, v in accuracy.items() if "agreement" in k or "logit_diff" in k}
    report = conversion_report(snn, name=args.model)
    args.output.mkdir(parents=True, exist_ok=True)
    save(snn, args.output, model_name=args.model, model_kwargs=kwargs)
    payload = {
        **nested_metrics(accuracy),
        "conversion": report.to_dict(),
        "data": {"spec": args.data, "eval_images": len(loader.dataset), "labels": labelled},
        "calibration": {"images": args.calibration_images, "method": args.method,
                        "percentile": args.percentile, "seconds": round(seconds, 2)},
    }  # fmt: skip
    (args.output / "report.json").write_text(json.dumps(payload, indent=2) + "\n")
    print(report)
    print(_summary(accuracy, args.timesteps))
    print(f"saved to {args.output}/ (config.json, model.safetensors, report.json)")
    return 0


def _summary(accuracy: dict, timesteps: int) -> str:
    rows = []
    for name in ("ann", "qann"):
        if f"{name}.top1" in accuracy:
            rows.append(f"{name.upper():>5} top-1 {100 * accuracy[f'{name}.top1']:.2f}%")
    at_t = accuracy.get("snn.top1_at_t") or {}
    if at_t:
        steps = ", ".join(f"t={t}: {100 * v:.2f}%" for t, v in at_t.items())
        rows.append(f"  SNN top-1 {steps}")
    rows.append(
        f"  SNN vs QANN after T={timesteps}: agreement "
        f"{100 * accuracy['snn.agreement_with_qann']:.2f}%, max |Δlogit| "
        f"{accuracy['snn.max_abs_logit_diff']:.3g}"
    )
    return "\n".join(rows)
