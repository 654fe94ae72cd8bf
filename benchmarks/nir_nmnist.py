"""The NIR paper's N-MNIST CNN: ANN → binary multispike SNN → NIR → snnTorch, on real samples.

    python benchmarks/nir_nmnist.py [--percentile 99.9] [--levels 4 --max_spikes 4] [--limit N]
    python benchmarks/nir_nmnist.py --distill_epochs 10   # binary, then distilled

Reads the N-MNIST samples of the local data folder (``MULTISPIKE_DATA``: ``nmnist/``, 1,000
train and 100 test recordings) with ``NMNISTDataModule(frames=3)``: 3 equal time bins of
event counts ``(3, 2, 34, 34)``, the NIR paper's input; 100 training recordings are held out
as the validation split, so the rows are test (100), val (100) and train (900), 1,100
recordings in all. Reports top-1 of

- the ANN (``ms_nir_nmnist_cnn``, ``pretrained=True``: the paper's weights): per
  frame, and of its logits averaged over the 3 frames (``teacher_logits``);
- the converted SNN (binary IF, ``N = 1``, one frame per step, ``T = 3``) in multispike,
  thresholds calibrated on the frames of ``--calibration_images`` training recordings
  (``calibration_dataloader``), after ``T`` steps (``StepAccuracy``, as every top-1 here);
  with ``--distill_epochs E`` the calibrated QANN is saved (``multispike.pipelines.save``)
  and fine-tuned by step-wise distillation from the ANN (3 frames) through
  ``multispike distill`` (its LightningCLI, with the config written to
  ``<distill dir>/distill.yaml``), and the student it chose on the validation split is
  loaded back (``multispike.pipelines.load``; the val split then chose it and the train
  split trained it);
- the same SNN exported to NIR and run in snnTorch (:func:`to_snntorch`), with the number
  of samples whose outputs are bit-identical to multispike's at every step.

Raw results go to ``--json_path`` (default ``benchmarks/results/nir_nmnist.json``).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Literal

import torch
import yaml

from multispike.convert import SpikingNetwork, calibrate, to_snn
from multispike.distill.frames import student_input, teacher_logits
from multispike.distill.metrics import StepAccuracy
from multispike.pipelines import load, save
from multispike.pipelines.cli import run_function
from multispike.pipelines.commands.distill import main as distill_main
from multispike.pipelines.data import NMNISTDataModule
from multispike.pipelines.export import export_nir, reset_snntorch, to_snntorch
from multispike.pipelines.sources import ann_and_data, first_images

MODEL = "ms_nir_nmnist_cnn"
FRAMES = 3
DISTILL_BATCH = 32
COLUMNS = ("split", "ANN per frame", "ANN 3 frames", "SNN multispike", "SNN snnTorch (NIR)",
           "identical")  # fmt: skip
RESULTS = Path(__file__).resolve().parent / "results" / f"{Path(__file__).stem}.json"


@torch.no_grad()
def snntorch_outputs(reader: torch.nn.Module, frames: torch.Tensor) -> torch.Tensor:
    """(T, B, classes) outputs of the snnTorch reader, one unbatched sample at a time."""
    outputs = []
    for sample in frames:
        reset_snntorch(reader)
        outputs.append(torch.stack([reader(frame)[0] for frame in sample]))
    return torch.stack(outputs, dim=1)


def distill(
    qann: torch.nn.Module, folder: Path, epochs: int, max_spikes: int, lr: float, limit: int | None
) -> SpikingNetwork:
    """Fine-tune ``qann``'s SNN (``T = 3``, one frame per step) with ``multispike distill``."""
    save(qann, folder / "calibrated", model_name=MODEL)
    trainer = {
        "max_epochs": epochs, "accelerator": "cpu", "devices": 1,
        "enable_model_summary": False,
        "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger",
                   "init_args": {"save_dir": str(folder), "name": "logs"}},
    }  # fmt: skip
    if limit:  # about --limit recordings per epoch and per validation
        batches = -(-limit // DISTILL_BATCH)
        trainer |= {"limit_train_batches": batches, "limit_val_batches": batches}
    config = {
        "trainer": trainer,
        "model": {
            "teacher": {"class_path": "multispike.zoo.load_model",
                        "init_args": {"model_name": MODEL, "pretrained": True}},
            "student": {"class_path": "multispike.pipelines.load",
                        "init_args": {"directory": str(folder / "calibrated"), "kind": "qann"}},
            "student_frames": FRAMES,
            "stages": [{"student": "snn", "timesteps": FRAMES, "max_spikes": max_spikes}],
            "lr": lr,
        },
        "data": {"class_path": "multispike.pipelines.data.NMNISTDataModule",
                 "init_args": {"frames": FRAMES, "batch_size": DISTILL_BATCH, "augment": True}},
        "checkpoint": {"dirpath": str(folder / "checkpoints")},
        "save_student": {"dirpath": str(folder / "student")},
    }  # fmt: skip
    (folder / "distill.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    start = time.perf_counter()
    code = distill_main(["--config", str(folder / "distill.yaml")])
    if code:
        raise SystemExit(f"multispike distill failed (exit {code}): {folder / 'distill.yaml'}")
    print(f"distilled {epochs} epochs in {time.perf_counter() - start:.0f} s")
    return load(folder / "student")


@torch.no_grad()
def evaluate_split(ann, snn, reader, scale, loader, reader_limit: int | None) -> dict:
    """Top-1 (%) of the ANN, the SNN and its snnTorch reading, and bit-identical samples."""
    ann_frame, ann_mean = StepAccuracy(1), StepAccuracy(1)  # one "step": the ANN's logits
    ms_top1, nir_top1 = StepAccuracy(FRAMES), StepAccuracy(FRAMES)
    read = same = 0
    for x, y in loader:  # x: (B, F, 2, 34, 34)
        ann_frame.update(ann(x.flatten(0, 1)).unsqueeze(0), y.repeat_interleave(FRAMES))
        ann_mean.update(teacher_logits(ann, x).unsqueeze(0), y)
        ms = snn(student_input(x, FRAMES, FRAMES))  # (T, B, classes), one frame per step
        ms_top1.update(ms, y)
        k = len(y) if reader_limit is None else min(len(y), reader_limit - read)
        if k > 0:
            other = snntorch_outputs(reader, x[:k]) * scale
            nir_top1.update(other, y[:k])
            same += sum(torch.equal(ms[:, b], other[:, b]) for b in range(k))
            read += k
    at_t = [100 * float(v) for v in ms_top1.compute().reshape(-1)]
    return {
        "recordings": int(ms_top1.total),
        "ann_per_frame": 100 * float(ann_frame.compute()),
        "ann_frames_mean": 100 * float(ann_mean.compute()),
        "snn": at_t[-1],
        "snn_at_t": at_t,
        "snntorch": 100 * float(nir_top1.compute().reshape(-1)[-1]) if read else None,
        "snntorch_recordings": read,
        "identical": same,
    }


def main(
    levels: int = 1,
    calibration: Literal["percentile", "mse"] = "percentile",
    percentile: float = 95.0,
    max_spikes: int = 1,
    calibration_images: int = 900,
    limit: int | None = None,
    reader_limit: int | None = None,
    distill_epochs: int = 0,
    lr: float = 5e-4,
    distill_dir: Path | None = None,
    batch_size: int = 100,
    threads: int = 2,
    json_path: Path = RESULTS,
) -> None:
    """Convert the N-MNIST CNN, export it to NIR, and score every split in both simulators.

    Args:
        levels: ``L`` used to calibrate λ.
        calibration: how λ is set: a ``percentile`` of each activation or the ``mse`` minimiser.
        percentile: the percentile for ``calibration=percentile``.
        max_spikes: ``N`` (1: binary IF).
        calibration_images: training recordings λ is fitted on (their frames).
        limit: recordings per split (default: all); also caps the distillation's batches.
        reader_limit: recordings per split run in snnTorch (default: all).
        distill_epochs: fine-tune the SNN first (0: calibration only).
        lr: distillation learning rate.
        distill_dir: keep the distillation run here (default: not kept).
        batch_size: recordings per batch.
        threads: torch intra-op threads.
        json_path: where the raw results go.
    """
    arguments = dict(
        levels=levels, calibration=calibration, percentile=percentile, max_spikes=max_spikes,
        calibration_images=calibration_images, limit=limit, reader_limit=reader_limit,
        distill_epochs=distill_epochs, lr=lr, distill_dir=distill_dir, batch_size=batch_size,
        threads=threads, json_path=json_path,
    )  # fmt: skip
    torch.set_num_threads(threads)

    data = NMNISTDataModule(frames=FRAMES, batch_size=batch_size)
    ann, _ = ann_and_data(MODEL, data, pretrained=True)  # and data normalised like its weights
    data.setup()
    calib = data.calibration_dataloader(calibration_images)
    qann = calibrate(ann, calib, levels=levels, method=calibration, percentile=percentile,
                     progress=False)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        if distill_epochs:
            folder = distill_dir or Path(tmp) / "distill"
            folder.mkdir(parents=True, exist_ok=True)
            snn = distill(qann, folder, distill_epochs, max_spikes, lr, limit)
        else:
            snn = to_snn(qann, max_spikes=max_spikes, timesteps=FRAMES)
        graph = export_nir(snn, Path(tmp) / "nmnist_cnn.nir", output="spikes")
        reader = to_snntorch(Path(tmp) / "nmnist_cnn.nir")
    snn.eval()
    scale = torch.as_tensor(graph.nodes["output"].metadata.get("scale", 1.0))

    print(
        f"calibration: L={levels} {calibration} (p={percentile}) on "
        f"{len(calib.dataset)} recordings, N={max_spikes}, distilled "
        f"{distill_epochs} epochs"
    )
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    rows = {}
    loaders = {"test": data.test_dataloader(), "val": data.val_dataloader(),
               "train": data.train_dataloader()}  # fmt: skip
    for split, loader in loaders.items():
        start = time.perf_counter()
        loader = first_images(loader, limit)
        r = evaluate_split(ann, snn, reader, scale, loader, reader_limit)
        rows[split] = r
        r["seconds"] = time.perf_counter() - start
        nir = f"{r['snntorch']:.1f}" if r["snntorch"] is not None else "-"
        print(
            f"| {split} ({r['recordings']}) | {r['ann_per_frame']:.1f} | "
            f"{r['ann_frames_mean']:.1f} | {r['snn']:.1f} | {nir} ({r['snntorch_recordings']}) | "
            f"{r['identical']}/{r['snntorch_recordings']} | ({r['seconds']:.0f} s)"
        )
    json_path.parent.mkdir(parents=True, exist_ok=True)
    record = {"command": sys.argv, "args": arguments, "torch": torch.__version__,
              "calibration_recordings": len(calib.dataset), "splits": rows}  # fmt: skip
    json_path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"raw results: {json_path}")


if __name__ == "__main__":
    sys.exit(run_function(main, sys.argv[1:], "python benchmarks/nir_nmnist.py"))
