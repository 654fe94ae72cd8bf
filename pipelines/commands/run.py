"""``multispike run``: a whole recipe, each stage with the options of its command.

    multispike run --recipe digits
    multispike run --recipe cifar10-resnet20 --distill.trainer.max_epochs 1 --output runs/x
    multispike run --recipe my.yaml --dry_run true      # validate, print the stage configs

See :mod:`multispike.pipelines.recipes.runner` for the recipe format. Finished stages are
skipped when the same command runs again; ``<run>/<stage>/config.yaml`` is each stage's
exact ``--config``.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["main", "parser"]


DESCRIPTION = (
    "Run a recipe: train -> convert -> distill -> evaluate -> export into one run directory. "
    "Override a stage's option with --<stage>.<option> VALUE in that command's syntax, e.g. "
    "--distill.trainer.max_epochs 1 or --convert.levels 8."
)
DEMO = (
    "The embedded demo, no download: a ResNet-20 trained on scikit-learn's digits, calibrated "
    "to 4 levels, converted to a one-step SNN with 4 spikes per step, distilled, evaluated on "
    "the test split and exported (the digits recipe; a few minutes on a CPU). Takes run's "
    "options, e.g. --output DIR or --distill.trainer.max_epochs 2."
)


def parser(prog: str = "multispike run", recipe: bool = True):
    """The runner's own options; stage options go behind the stage name (see the module)."""
    from jsonargparse import ArgumentParser

    p = ArgumentParser(
        prog=prog,
        default_env=False,
        allow_abbrev=False,
        description=DESCRIPTION if recipe else DEMO,
    )
    if recipe:
        p.add_argument(
            "--recipe",
            type=str,
            required=True,
            help="a shipped recipe (digits, cifar10-resnet20, ...) or a YAML file",
        )
    p.add_argument(
        "--output",
        type=str | None,
        default=None,
        help="the run directory (default: runs/<recipe name>)",
    )
    p.add_argument(
        "--dry_run",
        type=bool,
        default=False,
        help="validate every stage, print its resolved options, warn of data it would not "
        "find; run nothing",
    )
    p.add_argument("--progress", type=bool, default=True, help="show progress bars")
    p.add_argument(
        "--threads", type=int | None, default=None, help="CPU threads of torch (default: torch's)"
    )
    from ..help import install

    return install(p)


def main(argv: list[str], prog: str = "multispike run", recipe: str | None = None) -> int:
    """Run the recipe of ``--recipe`` (or ``recipe``, for ``demo``) with the overrides."""
    from ..cli import user_error
    from ..recipes.runner import RecipeError, StageError, run, split_overrides

    own, overrides = split_overrides(argv)
    try:
        args = parser(prog, recipe=recipe is None).parse_args(own)
    except SystemExit as done:
        return int(done.code or 0)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    name = recipe or args.recipe
    out = Path(args.output) if args.output else Path("runs") / Path(name).stem
    try:
        result = run(name, out, overrides, progress=args.progress, dry_run=args.dry_run)
    except RecipeError as err:
        return user_error(prog, err)
    except StageError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 1
    for name, stage in result["stages"].items():
        if args.dry_run:
            print(f"# ---- {name} ({stage['status']}): multispike {name} --config")
            print(stage["config"])
            if "problem" in stage:
                print(f"{prog}: warning: stage {name}: {stage['problem']}", file=sys.stderr)
            continue
        seconds = f"  {stage['seconds']:.1f} s" if "seconds" in stage else ""
        print(f"  {name:<9} {stage['status']}{seconds}")
    summary = out / "evaluate" / "summary.txt"
    if not args.dry_run and summary.is_file():
        print(summary.read_text())
    print(f"run directory: {out}")
    return 0
