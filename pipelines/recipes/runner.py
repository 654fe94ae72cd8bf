"""Run a recipe: its stages are the ``multispike`` commands, each run on its own section.

A recipe is a YAML file (``pipelines/recipes/<name>.yaml`` or any path) whose top-level keys
are ``description`` and stage sections, run in this order when present::

    train     the options of `multispike train`     (an ANN from scratch)
    convert   the options of `multispike convert`   (calibrate + convert, a model folder)
    distill   the options of `multispike distill`   (LightningCLI)
    evaluate  the options of `multispike evaluate`  (the test-set report)
    export    the options of `multispike export`

A section is exactly a ``--config`` of its command: nothing is added behind the user's back.
``${run}`` anywhere in the recipe is the run directory, which is how a stage names the
files of an earlier one (``checkpoint: ${run}/train/model.safetensors``). Overrides use the
commands' own syntax behind the section name: ``--distill.trainer.max_epochs 1`` is
``--trainer.max_epochs 1`` of the distill stage; a bad key is reported by that command's
parser, naming the key and what it accepts.

Each stage writes its resolved options to ``<run>/<stage>/config.yaml`` and then runs
exactly as ``multispike <stage> --config <run>/<stage>/config.yaml`` would. A stage that
finished writes ``done.json`` with the hash of its resolved options and of every earlier
stage's, so a restarted run skips it; a changed section reruns that stage and every later
one, after moving each one's old folder (checkpoints included) to ``<stage>.previous``;
an interrupted Lightning stage resumes from its ``last.ckpt``.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from tqdm.auto import tqdm

from ..folder.hashes import sha256_of as sha256_file

__all__ = [
    "STAGES",
    "RecipeError",
    "StageError",
    "load_recipe",
    "recipe_names",
    "resolve",
    "run",
    "split_overrides",
]

RECIPES = "multispike.pipelines.recipes"
STAGES = ("train", "convert", "distill", "evaluate", "export")
_LIGHTNING = ("train", "distill")


class RecipeError(ValueError):
    """A recipe or override is invalid; the message names the stage and the key."""


class StageError(RuntimeError):
    """A stage of a run failed; the message names the stage."""


# --------------------------------------------------------------------------- recipes


def recipe_names() -> list[str]:
    """Names of the recipes shipped in ``pipelines/recipes``."""
    files = resources.files(RECIPES).iterdir()
    return sorted(f.name.removesuffix(".yaml") for f in files if f.name.endswith(".yaml"))


def _recipe_text(recipe: str | Path) -> tuple[str, str]:
    """``(name, YAML text)`` of a recipe name or file."""
    path = Path(recipe)
    is_file = path.suffix in (".yaml", ".yml") or any(sep in str(recipe) for sep in "/\\")
    if is_file:  # a path: never a shipped name, and a shipped name never a local file
        if not path.is_file():
            raise RecipeError(f"recipe file {str(path)!r} does not exist")
        return path.stem, path.read_text()
    entry = resources.files(RECIPES) / f"{recipe}.yaml"
    if not entry.is_file():
        local = f"; to run the file {recipe!r} here, pass ./{recipe}" if path.is_file() else ""
        close = difflib.get_close_matches(str(recipe), recipe_names(), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise RecipeError(
            f"unknown recipe {str(recipe)!r}{hint}: give a YAML file or one of "
            f"{recipe_names()}{local}"
        )
    return str(recipe), entry.read_text()


@dataclass
class Recipe:
    """A recipe read from YAML, ``${run}`` already replaced by the run directory."""

    name: str
    description: str
    sections: dict[str, dict[str, Any]]


def load_recipe(recipe: str | Path, run_dir: str | Path) -> Recipe:
    """Read a recipe name or YAML file for the run directory ``run_dir``.

    Raises:
        RecipeError: unknown recipe, not YAML, or a top-level key that is no stage.
    """
    name, text = _recipe_text(recipe)
    text = text.replace("${run}", str(Path(run_dir).resolve()))
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" (line {where.line + 1}, column {where.column + 1})" if where else ""
        problem = getattr(err, "problem", None) or str(err)
        raise RecipeError(f"recipe {name!r} is not valid YAML{at}: {problem}") from err
    if not isinstance(data, dict):
        raise RecipeError(f"recipe {name!r} must be a mapping of stage sections")
    description = str(data.pop("description", ""))
    unknown = [k for k in data if k not in STAGES]
    if unknown:
        raise RecipeError(
            f"recipe {name!r}: unknown section(s) {unknown}; a recipe holds 'description' and "
            f"the stages {list(STAGES)}"
        )
    for stage, section in data.items():
        if not isinstance(section, dict):
            raise RecipeError(f"recipe {name!r}: section '{stage}' must be a mapping of options")
    return Recipe(name, description, {s: data[s] for s in STAGES if s in data})


def split_overrides(argv: Sequence[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Split ``argv`` into the runner's own options and per-stage overrides.

    ``--<stage>.<key> value`` and ``--<stage>.<key>=value`` go to ``<stage>`` as
    ``--<key> value``; everything else stays with the runner.
    """
    own: list[str] = []
    stages: dict[str, list[str]] = {}
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        head = arg[2:].split(".", 1)[0] if arg.startswith("--") else ""
        if head in STAGES and "." in arg:
            option, eq, value = arg[len(head) + 3 :].partition("=")
            target = stages.setdefault(head, [f"--{option}"])
            if target[-1] != f"--{option}":
                target.append(f"--{option}")
            if eq:
                target.append(value)
            elif i + 1 < len(args) and not args[i + 1].startswith("--"):
                target.append(args[i + 1])
                i += 1
        else:
            own.append(arg)
        i += 1
    return own, stages


# --------------------------------------------------------------------------- resolving stages


def resolve(stage: str, section: dict[str, Any], overrides: Sequence[str] = ()) -> str:
    """The resolved options of one stage as YAML, validated by its command's parser.

    Raises:
        RecipeError: a bad key or value; the message is the command's own parser error.
    """
    import contextlib
    import io

    module = importlib.import_module(f"multispike.pipelines.commands.{stage}")
    argv = ["--config", yaml.safe_dump(section, sort_keys=False), *overrides]
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return module.config(argv)
    except SystemExit:
        lines = err.getvalue().strip().splitlines()
        detail = "\n".join(line for line in lines if not line.startswith(("usage", " ", "tip")))
        raise RecipeError(f"section '{stage}': {detail or 'invalid options'}") from None


# --------------------------------------------------------------------------- the runner


def _digest(*parts: str) -> str:
    return hashlib.sha256("\n---\n".join(parts).encode()).hexdigest()[:16]


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def run(
    recipe: str | Path,
    out: str | Path,
    overrides: dict[str, list[str]] | None = None,
    *,
    progress: bool = True,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Run (or resume) every stage of ``recipe`` in the run directory ``out``.

    Args:
        recipe: a shipped recipe name or a YAML file.
        out: the run directory (``${run}`` in the recipe).
        overrides: per stage, command-line options in that command's syntax.
        progress: show the stage bar and each stage's own bars.
        dry_run: validate every section and report what would run; writes nothing.

    Returns:
        ``{"recipe", "stages": {name: {"status", "seconds"?, "config"}}}``.

    Raises:
        RecipeError: a bad recipe or override, found before any stage runs.
        StageError: a stage failed; earlier stages' outputs stay in ``out``.
    """
    root = Path(out)
    recipe_ = load_recipe(recipe, root)
    overrides = overrides or {}
    unknown = sorted(set(overrides) - set(recipe_.sections))
    if unknown:
        raise RecipeError(
            f"overrides for stage(s) {unknown}, which recipe {recipe_.name!r} does not have "
            f"(it has {list(recipe_.sections)})"
        )
    resolved, digests, previous = {}, {}, ""
    for stage, section in recipe_.sections.items():
        extra = list(overrides.get(stage, []))
        if not progress:
            extra = _quiet(stage) + extra
        resolved[stage] = resolve(stage, section, extra)
        # the run directory itself is not part of a stage's identity: a moved run resumes
        portable = resolved[stage].replace(str(root.resolve()), "${run}")
        digests[stage] = previous = _digest(previous, portable)
    done = {s: _read_json(root / s / "done.json") or {} for s in resolved}
    fresh = {s: done[s].get("hash") == digests[s] for s in resolved}
    changed = {s: _changed_outputs(root / s, done[s]) if fresh[s] else [] for s in resolved}
    record: dict[str, Any] = {"recipe": recipe_.name, "stages": {}}
    if dry_run:
        for stage in resolved:
            status = "done" if fresh[stage] else "would run"
            record["stages"][stage] = {"status": status, "config": resolved[stage]}
            problem = None if fresh[stage] else _missing_data(resolved[stage])
            if problem:
                record["stages"][stage]["problem"] = problem
        return record
    root.mkdir(parents=True, exist_ok=True)
    bar = tqdm(resolved, desc=f"run {recipe_.name}", unit="stage", disable=not progress)
    stale = False
    for stage in bar:
        bar.set_postfix_str(stage)
        if fresh[stage] and not stale and not changed[stage]:
            record["stages"][stage] = {"status": "done before", "config": resolved[stage]}
            continue
        if changed[stage] and not stale:
            tqdm.write(
                f"stage '{stage}' finished before, but its outputs changed since "
                f"({', '.join(changed[stage][:3])}): running it again",
                file=sys.stderr,
            )
            (root / stage / "started.json").unlink(missing_ok=True)  # start over, no resume
        stale = True  # every later stage runs again
        earlier = list(record["stages"])
        record["stages"][stage] = _run_stage(root, stage, resolved[stage], digests[stage], earlier)
    bar.close()
    return record


def _missing_data(config: str) -> str | None:
    """Why the data a stage's ``config`` names cannot be found, or ``None``; reads and
    downloads nothing (the DataModule's ``check_source``; multispike's DataModules only)."""
    import yaml

    section = yaml.safe_load(config).get("data")
    if not isinstance(section, dict) or "class_path" not in section:
        return None
    if not str(section["class_path"]).startswith("multispike.pipelines.data."):
        return None  # a user's own DataModule: building it might already do work
    module, _, name = section["class_path"].rpartition(".")
    try:
        data = getattr(importlib.import_module(module), name)(**(section.get("init_args") or {}))
        if hasattr(data, "check_source"):
            data.check_source()
    except Exception as err:  # noqa: BLE001  (a dry run reports; the real run raises it)
        return str(err)
    return None


def _quiet(stage: str) -> list[str]:
    if stage in _LIGHTNING:
        return ["--trainer.enable_progress_bar", "false"]
    return ["--progress", "false"] if stage != "export" else []


def _run_stage(
    root: Path, stage: str, config: str, digest: str, earlier: Sequence[str] = ()
) -> dict[str, Any]:
    """Run one stage as its command would, from ``<run>/<stage>/config.yaml``; ``earlier``
    names the stages of this run that finished before it."""
    folder = root / stage
    started = _read_json(folder / "started.json") or {}
    resume = folder.exists() and started.get("hash") == digest
    last = _last_checkpoint(stage, config)
    resume_from = ["--ckpt_path", str(last)] if resume and last and last.is_file() else []
    module = importlib.import_module(f"multispike.pipelines.commands.{stage}")
    start = time.perf_counter()
    if not manages_run_folder():  # another process of a distributed stage: no bookkeeping
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "config.yaml"
            path.write_text(config)
            code = module.main(["--config", str(path), *resume_from])
        if code != 0:
            cause = f"multispike {stage} exited with {code}"
            raise StageError(_failed(stage, root, cause, earlier))
        return {"hash": digest, "seconds": round(time.perf_counter() - start, 2),
                "status": "ran", "config": config}  # fmt: skip
    if folder.exists() and not resume:  # outputs of another config: set aside, start over
        previous = folder.with_name(f"{stage}.previous")
        shutil.rmtree(previous, ignore_errors=True)
        folder.rename(previous)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "started.json").write_text(json.dumps({"hash": digest}) + "\n")
    path = folder / "config.yaml"
    path.write_text(config)
    try:
        code = module.main(["--config", str(path), *resume_from])
    except Exception as err:
        raise StageError(_failed(stage, root, f"{type(err).__name__}: {err}", earlier)) from err
    if code != 0:
        cause = f"multispike {stage} exited with {code}"
        raise StageError(_failed(stage, root, cause, earlier))
    entry = {"hash": digest, "seconds": round(time.perf_counter() - start, 2)}
    (folder / "done.json").write_text(json.dumps({**entry, "outputs": _outputs(folder)}) + "\n")
    return {**entry, "status": "ran", "config": config}


_BOOKS = ("done.json", "started.json")


def _outputs(folder: Path) -> dict[str, str]:
    """SHA-256 of every file a finished stage left in its folder, by relative path."""
    return {
        path.relative_to(folder).as_posix(): sha256_file(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name not in _BOOKS
    }


def _changed_outputs(folder: Path, done: dict[str, Any]) -> list[str]:
    """Files of a finished stage deleted or edited since (its ``done.json`` lists them)."""
    recorded = done.get("outputs")
    if not isinstance(recorded, dict):  # written before outputs were recorded: nothing to check
        return []
    changed = []
    for name, digest in recorded.items():
        path = folder / name
        if not path.is_file():
            changed.append(f"{name} deleted")
        elif sha256_file(path) != digest:
            changed.append(f"{name} edited")
    return changed


def manages_run_folder() -> bool:
    """Whether this process keeps the run folder's books (``started.json``, ``config.yaml``,
    ``done.json``, removing a stale stage): the first process of the first node. A
    distributed stage's other processes rerun the same command; they run each stage from the
    same resolved options but leave the folder to it."""
    keys = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")
    return all(os.environ.get(key, "0") == "0" for key in keys)


def _failed(stage: str, root: Path, cause: str, earlier: Sequence[str]) -> str:
    kept = (
        f"the outputs of {', '.join(earlier)} are intact in {root}"
        if earlier
        else f"it was the first stage of this run ({root})"
    )
    return (
        f"stage '{stage}' failed: {cause}\n{kept[0].upper()}{kept[1:]}; fix the cause and run "
        f"the same command again to resume at '{stage}'."
    )


def _last_checkpoint(stage: str, config: str) -> Path | None:
    """``last.ckpt`` of a Lightning stage whose checkpoint folder the config names."""
    if stage not in _LIGHTNING:
        return None
    dirpath = ((yaml.safe_load(config) or {}).get("checkpoint") or {}).get("dirpath")
    return Path(dirpath) / "last.ckpt" if dirpath else None
