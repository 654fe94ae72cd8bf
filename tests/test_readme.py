"""The README's examples run as written: the Python block, and every `multispike` command
line parses with its command's own parser (the one path)."""

import importlib
import re
import shlex
from pathlib import Path

import pytest

from multispike.pipelines.recipes.runner import load_recipe, resolve, run, split_overrides

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs():
    (block,) = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    namespace: dict = {}
    exec(compile(block, str(README), "exec"), namespace)  # noqa: S102
    assert namespace["prediction"].shape == (2, 10)


def _command_lines() -> list[list[str]]:
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    text = "\n".join(blocks).replace("\\\n", " ")
    lines = [line.split("#")[0].split("&&")[-1].strip() for line in text.splitlines()]
    return [shlex.split(line)[1:] for line in lines if line.startswith("multispike ")]


def test_every_readme_command_parses(tmp_path, monkeypatch):
    commands = _command_lines()
    assert {c[0] for c in commands} >= {"demo", "convert", "evaluate", "export", "run", "distill"}
    monkeypatch.chdir(tmp_path)
    # what `multispike run --recipe digits` writes for its distill stage, for the line using it
    distill = tmp_path / "runs" / "digits" / "distill" / "config.yaml"
    distill.parent.mkdir(parents=True)
    section = load_recipe("digits", tmp_path / "runs" / "digits").sections["distill"]
    distill.write_text(resolve("distill", section))
    for name, *argv in commands:
        if name in ("run", "demo"):
            own, overrides = split_overrides(argv)
            recipe = own[own.index("--recipe") + 1] if "--recipe" in own else "digits"
            run(recipe, tmp_path / "dry", overrides, dry_run=True, progress=False)
            continue
        module = importlib.import_module(f"multispike.pipelines.commands.{name}")
        try:
            module.config(argv)
        except SystemExit as err:  # pragma: no cover - the failure message is the point
            pytest.fail(f"README: `multispike {name} {' '.join(argv)}` does not parse ({err})")
