"""``multispike export DIR --format nir|onnx --out FILE``: export a saved model directory."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from multispike.convert import SpikingNetwork


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multispike export",
        description="Export a converted model directory (written by `multispike convert` or "
        "multispike.pipelines.save) to NIR (spiking graph) or ONNX (the T=1 network).",
    )
    parser.add_argument("directory", type=Path, help="model directory (config.json + weights)")
    parser.add_argument("--format", required=True, choices=("nir", "onnx"), help="target format")
    parser.add_argument("--out", required=True, type=Path, help="file to write")
    parser.add_argument(
        "--output",
        choices=("values", "spikes"),
        default="values",
        help="NIR only: end the graph with output values (default) or the last layer's spikes",
    )
    parser.add_argument("--opset", type=int, default=17, help="ONNX only: opset version")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from multispike.pipelines.export import ExportError, export_nir, export_onnx
    from multispike.pipelines.serialize import ModelFileError, load

    try:
        model = load(args.directory)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if args.format == "onnx":
            export_onnx(model, args.out, opset=args.opset)
        elif isinstance(model, SpikingNetwork):
            export_nir(model, args.out, output=args.output)
        else:
            raise ExportError(
                f"{args.directory} holds a quantized ANN, not a spiking network: NIR export "
                "needs an SNN (convert with to_snn and save it), or use --format onnx"
            )
    except (FileNotFoundError, ModelFileError, ExportError) as err:
        print(f"multispike export: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({args.format})")
    return 0
