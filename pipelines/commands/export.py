"""``multispike export DIR --format nir|onnx --output FILE``: export a saved model directory."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from multispike.convert import SpikingNetwork

__all__ = ["main", "parser"]


def parser() -> argparse.ArgumentParser:
    """The options of ``multispike export``."""
    p = argparse.ArgumentParser(
        prog="multispike export",
        description="Export a converted model directory (written by `multispike convert` or "
        "multispike.pipelines.save) to NIR (spiking graph) or ONNX (the T=1 network).",
    )
    p.add_argument("directory", type=Path, help="model directory (config.json + weights)")
    p.add_argument("--format", required=True, choices=("nir", "onnx"), help="target format")
    p.add_argument("--output", "--out", required=True, type=Path, help="file to write")
    p.add_argument(
        "--nir-output",
        choices=("values", "spikes"),
        default="values",
        help="NIR only: end the graph with output values (default) or the last layer's spikes",
    )
    p.add_argument("--opset", type=int, default=17, help="ONNX only: opset version")
    return p


def main(argv: list[str]) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.output.name in ("values", "spikes"):  # the NIR ending was called --output before
        p.error(f"--output {args.output} names the file to write; for the NIR graph's ending "
                f"use --nir-output {args.output.name} and give --output a file name")  # fmt: skip
    from multispike.pipelines.export import ExportError, export_nir, export_onnx
    from multispike.pipelines.serialize import ModelFileError, load

    try:
        model = load(args.directory)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        if args.format == "onnx":
            export_onnx(model, args.output, opset=args.opset)
        elif isinstance(model, SpikingNetwork):
            export_nir(model, args.output, output=args.nir_output)
        else:
            raise ExportError(
                f"{args.directory} holds a quantized ANN, not a spiking network: NIR export "
                "needs an SNN (convert with to_snn and save it), or use --format onnx"
            )
    except (FileNotFoundError, ModelFileError, ExportError) as err:
        print(f"multispike export: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.output} ({args.format})")
    return 0
