"""The ``multispike`` command: ``multispike <command> [options]``.

Each command lives in ``multispike.pipelines.commands.<name>`` and exposes
``main(argv: list[str]) -> int``; they are imported only when called.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "convert": "calibrate an ANN, convert it to an SNN, save it with report.json",
    "distill": "fine-tune with step-wise distillation (LightningCLI, --config recipe.yaml)",
    "evaluate": "accuracy at every step, activity, synaptic ops, energy, robustness report",
    "export": "export a converted model directory to NIR or ONNX",
    "run": "run a whole recipe: calibrate -> convert -> distill -> evaluate -> export",
    "demo": "run the embedded digits recipe (no download)",
    "avalanche": "residual-stream activity of the sparse/SEW/analog forms along depth (JSON + PNG)",
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: multispike <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()]
    lines += ["", "multispike <command> --help shows a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"multispike: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(f"multispike.pipelines.commands.{name}")
    except ModuleNotFoundError as err:
        if err.name == f"multispike.pipelines.commands.{name}":
            print(f"multispike: command {name!r} is not available yet", file=sys.stderr)
            return 2
        raise
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
