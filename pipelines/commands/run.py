"""``multispike run --recipe NAME|FILE.yaml [key.sub=value ...]``: a whole pipeline run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from multispike.pipelines.run import (
    RecipeError,
    StageError,
    load_recipe,
    recipe_names,
    run,
    summary_table,
)


def parser(prog: str = "multispike run", recipe: bool = True) -> argparse.ArgumentParser:
    """The options of ``run`` (``demo`` reuses them with ``recipe=False``)."""
    p = argparse.ArgumentParser(
        prog=prog,
        description="Run a recipe: train/load the ANN, calibrate, convert (rewire residual "
        "joins), distill, evaluate and export into one run directory. Finished stages are "
        "skipped when the same command runs again.",
    )
    if recipe:
        p.add_argument(
            "--recipe", required=True,
            help=f"a shipped recipe ({', '.join(recipe_names())}) or a YAML file",
        )  # fmt: skip
    p.add_argument(
        "--output", "--out", type=Path, help="run directory (default: runs/<recipe name>)"
    )
    p.add_argument("--dry-run", action="store_true", help="validate the recipe, show the plan")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument(
        "--threads", type=int,
        help="CPU threads of torch (default: torch's; use 1 on a CPU shared with other jobs)",
    )  # fmt: skip
    p.add_argument(
        "overrides", nargs="*", metavar="key.sub=value",
        help="recipe overrides, e.g. distill.max_epochs=1 calibrate.levels=8",
    )  # fmt: skip
    return p


def execute(args: argparse.Namespace, prog: str) -> int:
    """Load the recipe, run it, print the stages and the summary table."""
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        config = load_recipe(args.recipe, args.overrides)
        out = args.output or Path("runs") / config.name
        result = run(config, out, progress=not args.no_progress, dry_run=args.dry_run)
    except RecipeError as err:
        print(f"{prog}: bad recipe: {err}", file=sys.stderr)
        return 2
    except StageError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 1
    for name, stage in result["stages"].items():
        seconds = f"  {stage['seconds']:.1f} s" if "seconds" in stage else ""
        print(f"  {name:<10} {stage['status']}{seconds}")
    if result["metrics"] is not None:
        print(summary_table(result["metrics"]))
        print(f"run directory: {out} (metrics.json, evaluate/report.md)")
    return 0


def main(argv: list[str]) -> int:
    return execute(parser().parse_args(argv), "multispike run")
