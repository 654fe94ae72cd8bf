"""``multispike evaluate``: accuracy at every step, activity, synaptic ops, energy, robustness.

    multispike evaluate --model ms_resnet20 --pretrained --data cifar10 --levels 4 \\
        --max-spikes 4 --timesteps 1 --output reports/resnet20-L4
    multispike evaluate --model-dir converted/ --data cifar10 --output reports/converted

Writes ``metrics.json``, ``report.md`` and PNG plots to ``--output``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

__all__ = ["main", "parser"]


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from err


def _configs(text: str):
    from multispike.pipelines.evaluate import SNNConfig

    try:
        return [SNNConfig.parse(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def parser() -> argparse.ArgumentParser:
    """The options of ``multispike evaluate``."""
    p = argparse.ArgumentParser(
        prog="multispike evaluate",
        description="Evaluate an ANN (calibrated on the fly) or a converted model directory: "
        "top-1/top-5 of ANN, QANN and SNN at every step, activity and synaptic operations per "
        "layer, energy per image, a binary (N=1) SNN side by side, robustness and latency.",
    )
    src = p.add_argument_group("model (one of --model, --model-dir)")
    src.add_argument("--model", help="timm/zoo model name, e.g. ms_resnet20")
    src.add_argument("--checkpoint", help="weights file for --model (multispike.zoo formats)")
    src.add_argument("--pretrained", action="store_true", help="timm pretrained weights")
    src.add_argument("--model-dir", type=Path, help="converted model directory (config.json)")
    cal = p.add_argument_group("conversion (with --model)")
    cal.add_argument("--levels", type=int, default=8, help="QANN levels L (default 8)")
    cal.add_argument("--per-channel", action="store_true", help="one threshold per channel")
    cal.add_argument("--method", choices=("percentile", "mse"), default="percentile")
    cal.add_argument("--percentile", type=float, default=99.9)
    cal.add_argument(
        "--calibration-images", "--calib-images", type=int, default=512, help="training images"
    )
    snn = p.add_argument_group("spiking networks")
    snn.add_argument("--max-spikes", type=int, help="N of the multi-level SNN (default L)")
    snn.add_argument("--timesteps", type=int, help="T of the multi-level SNN (default 1)")
    snn.add_argument("--binary-timesteps", type=int, help="T of the binary SNN (default L)")
    snn.add_argument("--sweep", type=_configs, default=[], help="extra NxT configs, e.g. 1x2,2x2")
    snn.add_argument(
        "--sweep-images", type=int, help="test images for the sweep (default: --eval-images)"
    )
    data = p.add_argument_group("data")
    data.add_argument("--data", required=True, help="data spec, e.g. cifar10 or cifar10:PATH")
    data.add_argument("--batch-size", type=int, default=128)
    data.add_argument(
        "--eval-images", "--limit", type=int, help="evaluate on the first N test images only"
    )
    data.add_argument(
        "--noise", type=_floats, default=[0.0, 0.1, 0.2, 0.5],
        help="Gaussian σ (images) or event probability (events); '' to skip",
    )  # fmt: skip
    data.add_argument("--noise-images", type=int, default=1000, help="test images for noise")
    p.add_argument("--energy-costs", type=Path, help="YAML/JSON cost table overriding defaults")
    p.add_argument("--output", required=True, type=Path, help="report directory")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    return p


def _data(args: argparse.Namespace, model_name: str | None):
    """The DataModule of ``--data``, normalised like the model's pretrained config."""
    import timm

    from multispike.distill.data import ClassificationDataModule, from_spec

    overrides: dict = {"batch_size": args.batch_size}
    module = from_spec(args.data, **overrides)
    cfg = timm.models.get_pretrained_cfg(model_name) if model_name else None
    channels = getattr(module, "input_shape", (0,))[0]
    if (
        isinstance(module, ClassificationDataModule)
        and cfg is not None
        and len(cfg.mean or ()) == channels
        and not args.data.startswith("random")
    ):
        module = from_spec(args.data, mean=cfg.mean, std=cfg.std, **overrides)
    module.setup("test")
    return module


def _loader(module, images: int | None, batch_size: int) -> DataLoader:
    dataset = module.test_dataset
    if images is not None:
        dataset = Subset(dataset, range(min(images, len(dataset))))
    return DataLoader(dataset, batch_size=batch_size, shuffle=False)


def _models(args: argparse.Namespace, module):
    """``(ann or None, qann, defaults)``, defaults holding the saved N and T of an SNN."""
    from multispike.convert import SpikingNetwork, calibrate
    from multispike.distill.students import timm_model
    from multispike.pipelines.evaluate import qann_of

    ann = None
    if args.model:
        ann = timm_model(args.model, checkpoint=args.checkpoint, pretrained=args.pretrained)
        ann = ann.to(args.device).eval()
    defaults: dict = {}
    if args.model_dir is not None:
        from multispike.pipelines.serialize import load

        model = load(args.model_dir, device=args.device)
        if isinstance(model, SpikingNetwork):
            defaults = {"max_spikes": model.net.meta["multispike"]["max_spikes"],
                        "timesteps": model.timesteps}  # fmt: skip
            model = qann_of(model)
        return ann, model, defaults
    calib = module.calibration_dataloader(args.calibration_images, batch_size=args.batch_size)
    qann = calibrate(
        ann, calib, args.levels, per_channel=args.per_channel, method=args.method,
        percentile=args.percentile, progress=not args.no_progress,
    )  # fmt: skip
    return ann, qann.eval(), defaults


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.model is None and args.model_dir is None:
        print("multispike evaluate: give --model NAME or --model-dir DIR", file=sys.stderr)
        return 2
    if args.checkpoint and not args.model:
        print("multispike evaluate: --checkpoint needs --model NAME", file=sys.stderr)
        return 2
    from multispike.convert import ConversionError
    from multispike.distill.data import DataNotFoundError, DataSpecError
    from multispike.pipelines.energy import load_costs
    from multispike.pipelines.evaluate import evaluate, write_report
    from multispike.pipelines.serialize import ModelFileError
    from multispike.zoo import CheckpointError

    torch.set_num_threads(min(torch.get_num_threads(), 8))
    progress = not args.no_progress
    try:
        costs = load_costs(args.energy_costs)
        model_name = args.model or _saved_name(args.model_dir)
        module = _data(args, model_name)
        ann, qann, defaults = _models(args, module)
        metrics = evaluate(
            ann,
            qann,
            _loader(module, args.eval_images, args.batch_size),
            max_spikes=args.max_spikes or defaults.get("max_spikes"),
            timesteps=args.timesteps or defaults.get("timesteps", 1),
            binary_timesteps=args.binary_timesteps,
            sweep=args.sweep,
            sweep_loader=_loader(module, args.sweep_images or args.eval_images, args.batch_size),
            noise=args.noise,
            noise_loader=_loader(module, args.noise_images, args.batch_size),
            costs=costs,
            progress=progress,
        )
    except (
        FileNotFoundError, ValueError, ConversionError, DataSpecError, DataNotFoundError,
        ModelFileError, CheckpointError,
    ) as err:  # fmt: skip
        print(f"multispike evaluate: {err}", file=sys.stderr)
        return 1
    metrics["command"] = "multispike evaluate " + " ".join(argv)
    write_report(metrics, args.output)
    print(
        f"ANN {metrics.get('ann.top1', float('nan')):.4f}  QANN {metrics['qann.top1']:.4f}  "
        f"SNN {metrics['snn']['label']} {metrics['snn']['top1']:.4f}  "
        f"binary {metrics['binary']['label']} {metrics['binary']['top1']:.4f}\n"
        f"report: {args.output / 'report.md'}"
    )
    return 0


def _saved_name(directory: Path | None) -> str | None:
    """The timm model name recorded in a saved model directory (for its normalisation)."""
    import json

    config = (directory / "config.json") if directory is not None else None
    if config is None or not config.is_file():
        return None
    return json.loads(config.read_text()).get("architecture", {}).get("model_name")
