"""The four code folders install as ``multispike.*`` and nowhere else, editable and as a wheel."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("convert", "distill", "zoo", "pipelines")
CHECK = (
    "import importlib.util as u, sys\n"
    "import multispike.convert, multispike.distill, multispike.zoo, multispike.pipelines\n"
    "assert all(u.find_spec(n) is None for n in {folders!r}), 'top-level module installed'\n"
    "print(multispike.convert.__file__)\n"
)


def _run(code: str, cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_installed_namespace_imports_from_outside_the_repository(tmp_path):
    where = _run(CHECK.format(folders=FOLDERS), tmp_path)
    assert Path(where).resolve() == ROOT / "convert" / "__init__.py"


@pytest.mark.slow
def test_wheel_holds_the_namespace_and_imports(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in FOLDERS:
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path)],
        cwd=src, check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("multispike-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.split("/")[0] in FOLDERS]
    for name in FOLDERS:
        assert f"multispike/{name}/__init__.py" in names
    assert any(n.startswith("multispike/pipelines/recipes/") and n.endswith(".yaml") for n in names)
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
         str(wheel)],
        check=True, capture_output=True,
    )  # fmt: skip
    code = f"import sys; sys.path.insert(0, {str(site)!r})\n" + CHECK.format(folders=FOLDERS)
    assert Path(_run(code, tmp_path)).resolve() == site / "multispike" / "convert" / "__init__.py"
    entry = [n for n in names if n.endswith("entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry[0]).decode()
    assert "multispike = multispike.pipelines.cli:main" in text
