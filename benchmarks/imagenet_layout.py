"""ImageNet-size models through the command-line stages, on an ImageNet-layout folder.

    python benchmarks/imagenet_layout.py --models '[resnet50,resnet18,vgg16_bn,mobilenetv2_100]'

Builds ``DIR/train/<class>/*.jpg`` and ``DIR/val/<class>/*.jpg`` from the shared CIFAR-10
(``MULTISPIKE_DATA``), upscaled to 224 × 224 (10 classes; no ImageNet here), then for each timm
model (random weights saved to a file first: no hub, and every stage sees the same weights):

- ``multispike convert`` (``ImageFolderDataModule``, timm eval transforms at 224 px, batches
  in channels-last memory format unless ``--channels_last false``, L = 8,
  per-channel, percentile, ``--calibration_images`` from ``DIR/train``; its report on 64
  held-out images), and
- ``multispike evaluate`` on ``--eval_images`` of ``DIR/val`` (ANN, QANN, SNN N = L, T = 1 and
  a binary N = 1, T = 1 SNN; no sweeps, no noise),

each in its own process, timed (wall seconds) with its peak resident memory
(``VmHWM``, not ``ru_maxrss``, which keeps the parent's size across fork and exec; the
data-loader worker is a separate process, not counted); and images/s of
the ANN, the QANN and the SNN(T = 1) on batches of the folder's images in this process.
Accuracy means nothing here (random weights); times and memory do. Raw results:
``--json_path`` (default ``benchmarks/results/imagenet_layout.json``). On a GPU
(``tools/gpu_stages.sh``): ``--trainer.accelerator gpu --batch_size 256 --num_workers 8
--precisions '[fp32,bf16]'`` adds the peak GPU memory of each stage and bf16 (autocast)
images/s.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Literal

import torch

from multispike.pipelines.cli import run_function
from multispike.pipelines.engine import Engine

RESULTS = Path(__file__).resolve().parent / "results" / f"{Path(__file__).stem}.json"

STAGE = (
    "import sys, torch\n"
    "from multispike.pipelines.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
    "print('MAXRSS_KIB', hwm.split()[1])\n"
    "print('MAXCUDA_B', torch.cuda.max_memory_allocated() if torch.cuda.is_available() else 0)\n"
    "sys.exit(code)\n"
)


def make_folder(root: Path, train: int, val: int, size: int = 224) -> Path:
    """CIFAR-10 images upscaled to ``size`` in the ImageNet layout (kept if already there)."""
    import numpy as np
    from PIL import Image

    done = root / f"done-{train}-{val}-{size}"
    if done.exists():
        return root
    data = Path(os.environ.get("MULTISPIKE_DATA", "../shared/data")) / "cifar10/cifar10-full.npz"
    with np.load(data) as arrays:  # an NpzFile rereads an array at every key lookup
        names = [str(n) for n in arrays["label_names"]]
        splits = [("train", arrays["train_x"][:train], arrays["train_y"][:train]),
                  ("val", arrays["test_x"][:val], arrays["test_y"][:val])]  # fmt: skip
    for split, images, labels in splits:
        for i, (pixels, label) in enumerate(zip(images, labels, strict=True)):
            folder = root / split / names[int(label)]
            folder.mkdir(parents=True, exist_ok=True)
            image = Image.fromarray(pixels).resize((size, size), Image.BILINEAR)
            image.save(folder / f"{i:05d}.jpg", quality=90)
    done.touch()
    return root


def run_stage(argv: list[str], threads: int) -> dict:
    """One ``multispike`` command in its own process: wall seconds and peak memory."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", STAGE, *argv], capture_output=True, text=True,
                          env=env)  # fmt: skip
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"multispike {argv[0]} failed:\n{done.stderr[-3000:]}")
    kib = int(done.stdout.rsplit("MAXRSS_KIB", 1)[1].split()[0])
    gpu = int(done.stdout.rsplit("MAXCUDA_B", 1)[1].split()[0])
    row = {"seconds": round(seconds, 1), "peak_rss_gib": round(kib / 2**20, 2)}
    return row | ({"peak_gpu_gib": round(gpu / 2**30, 2)} if gpu else {})


def images_per_second(
    model: torch.nn.Module, x: torch.Tensor, repeats: int, precision: str = "fp32"
) -> float:
    """Images/s of ``repeats`` passes over ``x`` after a warm-up (bf16: under autocast)."""
    autocast = torch.autocast(x.device.type, torch.bfloat16, enabled=precision == "bf16")
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    with torch.inference_mode(), autocast:
        model(x)  # warm-up
        sync()
        start = time.perf_counter()
        for _ in range(repeats):
            model(x)
        sync()
        return repeats * x.shape[0] / (time.perf_counter() - start)


def throughput(
    name: str,
    weights: Path,
    model_dir: Path,
    data_args: dict,
    repeats: int,
    device: torch.device,
    precisions: list[str],
) -> dict:
    from multispike.pipelines import load
    from multispike.pipelines.data import ImageFolderDataModule
    from multispike.pipelines.sources import ann_and_data

    data = ImageFolderDataModule(**data_args)
    ann, _ = ann_and_data(name, data, checkpoint=str(weights))
    data.setup("test")
    x = next(iter(data.test_dataloader()))[0].to(device)
    snn, qann = load(model_dir, device=device).eval(), load(model_dir, kind="qann", device=device)
    models = (("ann", ann.to(device).eval()), ("qann", qann.eval()), ("snn_t1", snn))
    row: dict = {"batch": int(x.shape[0])}
    for precision in precisions:  # fp32 keeps the plain keys
        tail = "" if precision == "fp32" else f"_{precision}"
        speed = {k: round(images_per_second(m, x, repeats, precision), 2) for k, m in models}
        row[f"images_per_s{tail}"] = speed
        row[f"snn_over_ann{tail}"] = round(speed["snn_t1"] / speed["ann"], 3)
    return row


def main(
    models: list[str] = ["resnet50", "resnet18", "vgg16_bn", "mobilenetv2_100"],  # noqa: B006
    output: Path = Path("runs/imagenet_layout"),
    train_images: int = 1200,
    val_images: int = 2000,
    calibration_images: int = 1024,
    eval_images: int = 2000,
    batch_size: int = 32,
    num_workers: int = 1,
    channels_last: bool = True,
    threads: int = 2,
    repeats: int = 3,
    precisions: list[Literal["fp32", "bf16"]] = ["fp32"],  # noqa: B006  (never mutated)
    trainer: Engine = Engine(accelerator="cpu"),  # noqa: B008  (frozen dataclass)
    json_path: Path = RESULTS,
) -> None:
    """Time each model through ``convert`` and ``evaluate``; merge its row into ``json_path``.

    Args:
        models: timm model names (random weights, 10 classes, 224 px).
        output: scratch folder: the image folder, weights and every stage's output.
        train_images: CIFAR-10 training images upscaled into ``DIR/train``.
        val_images: CIFAR-10 test images upscaled into ``DIR/val``.
        calibration_images: training images ``convert`` calibrates on.
        eval_images: images of ``DIR/val`` that ``evaluate`` reads.
        batch_size: images per batch of every stage and of the throughput passes.
        num_workers: data-loader workers of every stage.
        channels_last: batches in channels-last memory format (``--data.channels_last``).
        threads: torch intra-op threads of every stage and of this process.
        repeats: passes over one batch per throughput measurement.
        precisions: throughput passes (``bf16``: under autocast).
        trainer: where the stages run (their ``--trainer.*`` options); the throughput
            passes use its accelerator.
        json_path: where the raw results go (a rerun replaces its models' rows).
    """
    torch.set_num_threads(threads)
    from safetensors.torch import save_file

    from multispike.zoo import load_model

    root = make_folder(output / "data", train_images, val_images)
    data_args = {"path": str(root), "batch_size": batch_size, "num_workers": num_workers,
                 "val_size": 64, "channels_last": channels_last}  # fmt: skip
    stage_flags = ["--data", "ImageFolderDataModule"]
    stage_flags += [f"--data.{k}={v}" for k, v in data_args.items()]
    stage_flags += [f"--trainer.{k}={json.dumps(v) if isinstance(v, list) else v}"
                    for k, v in vars(trainer).items()]  # fmt: skip
    accelerator = trainer.accelerator
    if accelerator == "auto":
        accelerator = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device("cuda" if accelerator in ("gpu", "cuda") else accelerator)
    results = []
    for name in models:
        torch.manual_seed(0)
        weights = output / name / "ann.safetensors"
        weights.parent.mkdir(parents=True, exist_ok=True)
        ann = load_model(name, num_classes=10)
        save_file({k: v.contiguous() for k, v in ann.state_dict().items()}, str(weights))
        model_dir = output / name / "convert"
        convert = run_stage(["convert", "--model", name, "--checkpoint", str(weights),
                             *stage_flags, "--levels", "8", "--per_channel", "true",
                             "--calibration_images", str(calibration_images),
                             "--eval_images", "64", "--output", str(model_dir),
                             "--progress", "false"], threads)  # fmt: skip
        report = json.loads((model_dir / "report.json").read_text())
        convert["calibrate_and_convert_seconds"] = report["calibration"]["seconds"]
        evaluate = run_stage(["evaluate", "--model_dir", str(model_dir), "--checkpoint",
                              str(weights), *stage_flags, "--eval_images", str(eval_images),
                              "--binary_timesteps", "1", "--noise", "[]", "--output",
                              str(output / name / "evaluate"), "--progress", "false"],
                             threads)  # fmt: skip
        metrics = json.loads((output / name / "evaluate" / "metrics.json").read_text())
        row = {"model": name, "channels_last": channels_last, "convert": convert,
               "evaluate": evaluate,
               "evaluate_images": metrics["snn"]["images"],
               "snn_equals_qann": metrics["snn"]["agreement_with_qann"] == 1.0
               and metrics["snn"]["max_abs_logit_diff"] == 0.0,
               **throughput(name, weights, model_dir, data_args, repeats, device,
                            precisions)}  # fmt: skip
        results.append(row)
        print(json.dumps(row), flush=True)
        # after every model: a long run keeps what it measured
        write_rows(json_path, results, calibration_images, threads, gpu=device.type == "cuda")


def write_rows(
    path: Path, results: list[dict], calibration_images: int, threads: int, gpu: bool
) -> None:
    """Merge ``results`` into ``path``: a rerun replaces its models' rows, keeps the rest."""
    rows = {r["model"]: r for r in _previous(path)}
    rows.update({r["model"]: r for r in results})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "command": "python benchmarks/imagenet_layout.py --models '[MODEL]' [--eval_images N]",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {threads} threads, "
                   f"torch {torch.__version__}"
                   + (f", {torch.cuda.get_device_name()}" if gpu else ""),
        "calibration_images": calibration_images,
        "results": list(rows.values()),
    }, indent=2) + "\n")  # fmt: skip


def _previous(path: Path) -> list[dict]:
    return json.loads(path.read_text())["results"] if path.is_file() else []


if __name__ == "__main__":
    sys.exit(run_function(main, sys.argv[1:], "python benchmarks/imagenet_layout.py"))
