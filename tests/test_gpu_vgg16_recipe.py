"""The GPU visit of benchmarks/gpu_vgg16.sh, end to end on the CPU with a tiny schedule: the
cifar10-vgg16 recipe on generated CIFAR-shaped data, then its SNN folder through the parts
that carry it back, rebuilt bit for bit."""

from __future__ import annotations

import json
import subprocess
import sys
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


@pytest.mark.slow
def test_the_vgg16_recipe_runs_on_a_cpu_and_its_snn_travels_in_parts(tmp_path):
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
    parts = tmp_path / "parts"
    script = str(ROOT / "benchmarks" / "parts.py")
    files = [str(p) for p in sorted(student.iterdir())]
    subprocess.run([sys.executable, script, "split", *files, "--output", str(parts),
                    "--max-mib", "10"], check=True, capture_output=True)  # fmt: skip
    assert len(list(parts.glob("files.part*"))) >= 2  # VGG-16 weights need several parts
    back = tmp_path / "back"
    subprocess.run([sys.executable, script, "join", str(parts / "manifest.json"), "--output",
                    str(back)], check=True, capture_output=True)  # fmt: skip
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(load(back)(x), load(student)(x))
    (parts / "files.part00").write_bytes(b"damaged")
    argv = [sys.executable, script, "join", str(parts / "manifest.json"), "--output", "x"]
    damaged = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path)
    assert damaged.returncode != 0 and "does not match its SHA-256" in damaged.stderr
