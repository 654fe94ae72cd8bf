"""The NIR paper's N-MNIST CNN: ANN → binary multispike SNN → NIR → snnTorch, on real samples.

Reads the shared N-MNIST samples (``nmnist/``: 1000 train, 100 test recordings) as 3 equal
time bins of event counts ``(3, 2, 34, 34)`` (tonic ``ToFrame``), the NIR paper's input.
Reports accuracy of

- the ANN (``ms_nir_nmnist_cnn``, the paper's weights): per frame, and logits summed over
  the 3 frames (the shared data README's reference numbers);
- the converted SNN (binary IF, ``N = 1``, one frame per step, ``T = 3``) in multispike,
  thresholds calibrated on the training frames, and with ``--distill-epochs E`` then
  fine-tuned by step-wise distillation from the ANN (3 frames) on the training recordings;
- the same SNN exported to NIR and run in snnTorch (:func:`to_snntorch`), with the number
  of samples whose outputs are bit-identical to multispike's at every step.

    python benchmarks/nir_nmnist.py [--percentile 99.9] [--levels 4 --max-spikes 4] [--limit N]
    python benchmarks/nir_nmnist.py --distill-epochs 10   # binary, then distilled
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import lightning as L
import numpy as np
import timm
import torch
from tonic.io import read_mnist_file
from tonic.transforms import ToFrame
from tqdm.auto import tqdm

import multispike.zoo  # noqa: F401  (registers ms_nir_nmnist_cnn)
from multispike.convert import SpikingNetwork, calibrate, to_snn
from multispike.distill.data.nmnist import NMNISTDataModule
from multispike.distill.module import StepwiseDistillation
from multispike.distill.students import Stage
from multispike.pipelines.export import export_nir, reset_snntorch, to_snntorch
from multispike.zoo.paths import shared_data_dir

_DTYPE = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])
_FRAMES = ToFrame(sensor_size=(34, 34, 2), n_time_bins=3)


def read_split(folder: Path, listing: str, limit: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, 3, 2, 34, 34)`` event-count frames and labels of one sample list."""
    lines = [ln.split() for ln in (folder / listing).read_text().splitlines()[1:] if ln.strip()]
    lines = lines[:limit] if limit else lines
    frames, labels = [], []
    for sample, label in tqdm(lines, desc=f"reading {listing}"):
        events = read_mnist_file(str(folder / f"{sample}.bs2"), dtype=_DTYPE)
        frames.append(torch.from_numpy(_FRAMES(events).astype(np.float32)))
        labels.append(int(label))
    return torch.stack(frames), torch.tensor(labels)


def accuracy(scores: torch.Tensor, labels: torch.Tensor) -> float:
    return 100.0 * (scores.argmax(-1) == labels).float().mean().item()


@torch.no_grad()
def snntorch_outputs(reader: torch.nn.Module, frames: torch.Tensor) -> torch.Tensor:
    """(T, B, classes) outputs of the snnTorch reader, one unbatched sample at a time."""
    outputs = []
    for sample in tqdm(frames, desc="snnTorch"):
        reset_snntorch(reader)
        outputs.append(torch.stack([reader(frame)[0] for frame in sample]))
    return torch.stack(outputs, dim=1)


def distill(ann: torch.nn.Module, snn: SpikingNetwork, max_spikes: int, epochs: int, lr: float
            ) -> SpikingNetwork:  # fmt: skip
    """Step-wise distillation of ``snn`` (3 frames, one per step) from the ANN on 3 frames."""
    data = NMNISTDataModule(frames=3, batch_size=32, augment=True)
    stage = Stage("snn", timesteps=snn.timesteps, max_spikes=max_spikes)
    system = StepwiseDistillation(ann, student=snn, stages=[stage], student_frames=3, lr=lr)
    trainer = L.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, logger=False, limit_val_batches=0,
        enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip
    start = time.perf_counter()
    trainer.fit(system, datamodule=data)
    print(f"distilled {epochs} epochs in {time.perf_counter() - start:.0f} s")
    return system.student.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, default=1, help="L used to calibrate λ")
    parser.add_argument("--method", default="percentile", choices=("percentile", "mse"))
    parser.add_argument("--percentile", type=float, default=95.0)
    parser.add_argument("--max-spikes", type=int, default=1, help="N (1 = binary IF)")
    parser.add_argument("--limit", type=int, default=None, help="samples per split")
    parser.add_argument("--reader-limit", type=int, default=None, help="samples run in snnTorch")
    parser.add_argument("--distill-epochs", type=int, default=0, help="fine-tune the SNN first")
    parser.add_argument("--lr", type=float, default=5e-4, help="distillation learning rate")
    args = parser.parse_args()
    torch.set_num_threads(2)
    root = shared_data_dir()
    if root is None:
        raise SystemExit("shared data folder not found: set MULTISPIKE_DATA")
    folder = root / "nmnist"
    train_x, train_y = read_split(folder, "train1K.txt", args.limit)
    test_x, test_y = read_split(folder, "test100.txt", args.limit)

    ann = timm.create_model("ms_nir_nmnist_cnn", pretrained=True).eval()
    qann = calibrate(ann, [train_x.flatten(0, 1)], levels=args.levels, method=args.method,
                     percentile=args.percentile, progress=False)  # fmt: skip
    snn = to_snn(qann, max_spikes=args.max_spikes, timesteps=3)
    if args.distill_epochs:
        L.seed_everything(0, verbose=False)
        snn = distill(ann, snn, args.max_spikes, args.distill_epochs, args.lr)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "nmnist_cnn.nir"
        graph = export_nir(snn, path, output="spikes")
        reader = to_snntorch(path)
    scale = torch.as_tensor(graph.nodes["output"].metadata.get("scale", 1.0))

    print(f"calibration: L={args.levels} {args.method} (p={args.percentile}), N={args.max_spikes}, "
          f"distilled {args.distill_epochs} epochs")  # fmt: skip
    print(
        "| split | ANN per frame | ANN summed | SNN multispike | SNN snnTorch (NIR) | identical |"
    )
    print("|---|---|---|---|---|---|")
    for split, x, y in (("test", test_x, test_y), ("train", train_x, train_y)):
        start = time.perf_counter()
        with torch.no_grad():
            logits = ann(x.flatten(0, 1)).view(x.shape[0], 3, -1)
            ms = snn(x.transpose(0, 1))  # (T, B, classes)
        k = min(args.reader_limit or len(y), len(y))
        other = snntorch_outputs(reader, x[:k]) * scale
        same = sum(torch.equal(ms[:, b], other[:, b]) for b in range(k))
        per_frame = accuracy(logits, y[:, None].expand(-1, 3))
        print(
            f"| {split} ({len(y)}) | {per_frame:.1f} | {accuracy(logits.sum(1), y):.1f} | "
            f"{accuracy(ms.sum(0), y):.1f} | {accuracy(other.sum(0), y[:k]):.1f} ({k}) | "
            f"{same}/{k} | ({time.perf_counter() - start:.0f} s)"
        )


if __name__ == "__main__":
    main()
