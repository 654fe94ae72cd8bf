"""Training throughput of `multispike train` beside a plain PyTorch loop and the matmul peak.

    python benchmarks/train_throughput.py [--model ms_airbench_relu] [--batch_size 512]

Measures, on one machine in one run (nothing else should be running):

- the peak of a 2048² matrix multiply in fp32 and in bf16 (GFLOP/s): the physical limit;
- a plain PyTorch loop over the model (channels-last, SGD with Nesterov momentum, one fixed
  batch already in memory; no data loading, no augmentation) in fp32 and in bf16 autocast;
- `multispike train` on CIFAR-10 (Lightning, the DataModule with on-device crop + flip,
  validation off), in steady state: two runs of different step counts, so that start-up
  (reading the data, whitening, building the Trainer) cancels out of the difference.

Achieved GFLOP/s count 3 × the forward FLOPs per image (forward + two backward products),
from torch's FLOP counter. Raw results: ``--json_path`` (default
``benchmarks/results/train_throughput.json``).
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import multispike.zoo  # noqa: F401  (registers the zoo)
from multispike.pipelines.cli import run_function
from multispike.pipelines.commands import train

RESULTS = Path(__file__).resolve().parent / "results" / f"{Path(__file__).stem}.json"


def matmul_peak(dtype: torch.dtype, size: int = 2048, repeats: int = 20) -> float:
    """GFLOP/s of a ``size²`` matrix product in ``dtype``."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def forward_flops(model_name: str) -> int:
    """FLOPs of one forward pass on one 3×32×32 image (a multiply-add counts 2)."""
    model = timm.create_model(model_name).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    return counter.get_total_flops()


def plain_loop(model_name: str, batch_size: int, bf16: bool, steps: int = 12) -> float:
    """Images/s of a bare training loop on one in-memory batch (after 3 warm-up steps)."""
    torch.manual_seed(0)
    model = timm.create_model(model_name).to(memory_format=torch.channels_last).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.85, nesterov=True, weight_decay=1e-3)
    x = torch.randn(batch_size, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch_size,))
    for step in range(3 + steps):
        if step == 3:
            start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), y, label_smoothing=0.2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * batch_size / (time.perf_counter() - start)


def train_command(model_name: str, batch_size: int, bf16: bool, steps: int, out: Path) -> float:
    """Wall seconds of `multispike train` for ``steps`` steps (validation off)."""
    argv = [
        "--model.model.class_path", "multispike.zoo.load_model",
        "--model.model.init_args.model_name", model_name,
        "--model.schedule", "triangle", "--model.bias_lr_scale", "64",
        "--model.lr", "0.733", "--model.momentum", "0.85", "--model.weight_decay", "0.00136",
        "--model.label_smoothing", "0.2",
        "--data", "CIFAR10DataModule", "--data.batch_size", str(batch_size),
        "--data.augment_on_device", "true", "--data.channels_last", "true",
        "--trainer.max_steps", str(steps), "--trainer.limit_val_batches", "0",
        "--trainer.num_sanity_val_steps", "0", "--trainer.enable_progress_bar", "false",
        "--trainer.precision", "bf16-mixed" if bf16 else "32",
        "--trainer.default_root_dir", str(out), "--trainer.logger", "false",
        "--checkpoint.dirpath", str(out / "checkpoints"),
        "--save_weights.path", str(out / "model.safetensors"),
    ]  # fmt: skip
    start = time.perf_counter()
    if train.main(argv) != 0:
        raise SystemExit("multispike train failed")
    return time.perf_counter() - start


def main(
    model: str = "ms_airbench_relu",
    batch_size: int = 512,
    short_steps: int = 10,
    long_steps: int = 40,
    json_path: Path = RESULTS,
    work_dir: Path = Path("runs/train_throughput"),
) -> None:
    """Measure and print the table; write the raw numbers to ``json_path``.

    Args:
        model: a zoo/timm name taking 3×32×32 images.
        batch_size: images per step, for every loop.
        short_steps: steps of the shorter `multispike train` run.
        long_steps: steps of the longer one (the difference gives the steady-state rate).
        json_path: where the raw results go.
        work_dir: scratch folder of the `multispike train` runs.
    """
    flops = 3 * forward_flops(model)
    rows = {"model": model, "batch_size": batch_size, "train_flops_per_image": flops}
    rows["matmul_gflops"] = {
        "fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)
    }  # fmt: skip
    for precision, bf16 in (("fp32", False), ("bf16", True)):
        plain = plain_loop(model, batch_size, bf16)
        extra = long_steps - short_steps
        seconds = train_command(model, batch_size, bf16, long_steps, work_dir / "long")
        seconds -= train_command(model, batch_size, bf16, short_steps, work_dir / "short")
        ours = extra * batch_size / seconds
        rows[precision] = {
            "plain_images_per_s": plain,
            "train_images_per_s": ours,
            "train_over_plain": ours / plain,
            "train_gflops": ours * flops / 1e9,
        }
    cpu = platform.processor() or platform.machine()
    rows["machine"] = f"{cpu}, {torch.get_num_threads()} threads"
    rows["versions"] = {"torch": torch.__version__, "timm": timm.__version__}
    print(json.dumps(rows, indent=2))
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(run_function(main, sys.argv[1:], "python benchmarks/train_throughput.py"))
