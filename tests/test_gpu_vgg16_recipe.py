"""The GPU visit of tools/gpu_vgg16.sh, end to end on the CPU with a tiny schedule: the
cifar10-vgg16 recipe on generated CIFAR-shaped data, then its SNN folder through the parts
that carry it back (tools/parts.py's command line, in this process), rebuilt bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from multispike.pipelines import load
from multispike.pipelines.recipes.runner import run

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "pipelines" / "recipes" / "cifar10-vgg16.yaml"
CPU = {
    "train": ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
              "--trainer.precision", "32", "--model.torch_compile", "false"],
    "convert": ["--trainer.accelerator", "cpu", "--calibration_images", "16"],
    "distill": ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
                "--trainer.precision", "32", "--model.torch_compile", "false",
                "--model.warmup_steps", "0"],
    "evaluate": ["--trainer.accelerator", "cpu", "--eval_images", "16", "--sweep", "[1x4]"],
}  # fmt: skip


@pytest.fixture
def parts(import_tool):
    """The ``tools/parts.py`` module."""
    return import_tool("parts")


@pytest.mark.slow
def test_the_vgg16_recipe_runs_on_a_cpu_and_its_snn_travels_in_parts(parts, tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    data = tmp_path / "cifar.npz"
    np.savez(data, train_x=images, train_y=np.arange(64) % 10, test_x=images[:16],
             test_y=np.arange(16) % 10)  # fmt: skip
    text = RECIPE.read_text()
    old = "init_args: {batch_size: 512,"
    assert text.count(old) == 1  # one data block (an anchor) feeds every stage
    recipe = tmp_path / "vgg16.yaml"
    recipe.write_text(text.replace(old, f"init_args: {{path: {data}, batch_size: 8, val_size: 8,"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = run(recipe, tmp_path / "run", CPU, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert {s["status"] for s in result["stages"].values()} == {"ran"}
    metrics = json.loads((tmp_path / "run" / "evaluate" / "metrics.json").read_text())
    assert metrics["snn"]["agreement_with_qann"] == 1.0 and metrics["snn"]["images"] == 16
    student = tmp_path / "run" / "distill" / "student"
    folder = tmp_path / "parts"
    files = [str(p) for p in sorted(student.iterdir())]
    parts.main(["split", *files, "--output", str(folder), "--max_mib", "10"])
    assert len(list(folder.glob("files.part*"))) >= 2  # VGG-16 weights need several parts
    back = tmp_path / "back"
    parts.main(["join", str(folder / "manifest.json"), "--output", str(back)])
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(load(back)(x), load(student)(x))
    (folder / "files.part00").write_bytes(b"damaged")
    with pytest.raises(SystemExit) as damaged:
        parts.main(["join", str(folder / "manifest.json"), "--output", str(tmp_path / "x")])
    assert damaged.value.code != 0 and "does not match its SHA-256" in str(damaged.value)
    assert not (tmp_path / "x").exists()
