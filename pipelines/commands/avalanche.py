"""``multispike avalanche``: residual-stream activity of the sparse/SEW/analog forms of a model.

Calibrates the model into a QANN, rewires its residual joins into each form, converts and
writes ``avalanche.json`` and ``avalanche.png`` (activity against depth) to ``--output``.
"""

from __future__ import annotations

import argparse
import sys
from itertools import islice
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    from multispike.convert.residual import JOIN_MODES

    parser = argparse.ArgumentParser(
        prog="multispike avalanche",
        description="Measure the spike avalanche: activity of every residual stream along "
        "depth for the sparse (barrier neuron after each join), sew (sum of spikes) and "
        "analog (real-valued shortcut) forms of one calibrated model.",
    )
    parser.add_argument("--model", required=True, help="timm/zoo model name, e.g. ms_resnet20")
    parser.add_argument("--checkpoint", type=Path, help="weights file for the model")
    parser.add_argument(
        "--pretrained", action="store_true", help="load the registry's pretrained weights"
    )
    parser.add_argument(
        "--data", default="cifar10", help="data spec, e.g. cifar10[:PATH] or random:3x32x32"
    )
    parser.add_argument("--levels", type=int, default=4, help="L, quantization levels")
    parser.add_argument("--max-spikes", type=int, help="N, spikes per step (default L)")
    parser.add_argument("--timesteps", type=int, default=1, help="T")
    parser.add_argument("--per-channel", action="store_true", help="per-channel thresholds")
    parser.add_argument(
        "--modes", default=",".join(JOIN_MODES), help="comma-separated forms to measure"
    )
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument(
        "--calibration-batches", "--calib-batches", dest="calibration_batches", type=int,
        default=4, help="training batches for λ",
    )  # fmt: skip
    parser.add_argument(
        "--eval-batches", "--batches", dest="eval_batches", type=int,
        help="test batches (default: the whole set)",
    )  # fmt: skip
    parser.add_argument(
        "--output", "--out", dest="output", type=Path, default=Path("avalanche"),
        help="output folder",
    )  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    import timm

    import multispike.zoo  # noqa: F401  (registers the zoo in timm)
    from multispike.convert import ConversionError, calibrate
    from multispike.convert.residual import JOIN_MODES
    from multispike.distill.data.spec import from_spec
    from multispike.pipelines.avalanche import avalanche, save_avalanche
    from multispike.zoo import load_checkpoint

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in JOIN_MODES]
    if bad:
        print(f"multispike avalanche: --modes {bad} unknown; use {JOIN_MODES}", file=sys.stderr)
        return 2
    progress = not args.quiet
    try:
        model = timm.create_model(args.model, pretrained=args.pretrained and not args.checkpoint)
        if args.checkpoint:
            load_checkpoint(model, args.checkpoint)
        data = from_spec(args.data, batch_size=args.batch_size, augment=False)
        data.prepare_data()
        data.setup("fit")
        data.setup("test")
        calib = list(islice(data.train_dataloader(), args.calibration_batches))
        qann = calibrate(
            model.eval(), calib, args.levels, per_channel=args.per_channel, progress=progress
        )
        result = avalanche(
            qann, data.test_dataloader(), modes=modes, calibration=calib,
            timesteps=args.timesteps, max_spikes=args.max_spikes, num_batches=args.eval_batches,
            progress=progress,
        )  # fmt: skip
    except (ConversionError, FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"multispike avalanche: {err}", file=sys.stderr)
        return 1
    result["model"] = args.model
    json_path, png_path = save_avalanche(result, args.output)
    for mode, form in result["forms"].items():
        acc = form["accuracy"]
        print(
            f"{mode:>6}: total events/image {form['totals']['total_events']:.0f}"
            + (f", accuracy {acc:.2%}" if acc is not None else "")
        )
    print(f"wrote {json_path} and {png_path}")
    return 0
