"""Top-1 of the shared pretrained CIFAR-10 ResNets on the real test set, and load + eval time.

Each akamaster checkpoint (``../shared/data/weights/akamaster-cifar10-resnet``) is loaded
through timm (``create_model(..., pretrained=True, pretrained_cfg_overlay=dict(file=...))``)
and evaluated in float32 on the CPU on all 10,000 test images of ``cifar10-full.npz``
(normalised with the model's pretrained mean/std); top-1 is also given on the 9,979 images
that are bit-identical to the official files (``test_exact``). Times: wall-clock seconds to
load (build + read + check the checkpoint) and to evaluate, and the process CPU seconds of both
(less sensitive to other jobs on a shared machine). ``--ensemble 56 44`` adds the top-1 of
those depths' mean logits (what ``multispike.distill.teacher.TeacherEnsemble`` computes).

    .venv/bin/python benchmarks/zoo_pretrained.py --threads 2 --batch-size 500
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import timm
import torch
from tqdm.auto import tqdm

import multispike.zoo  # noqa: F401  (registers the models)
from multispike.zoo import pretrained_path, shared_data_dir

DEPTHS = (20, 32, 44, 56)


def load_test_set(path: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(images uint8 NCHW, labels, exact mask)`` of the CIFAR-10 test split in ``path``."""
    with np.load(path) as data:
        images = torch.from_numpy(data["test_x"]).permute(0, 3, 1, 2).contiguous()
        return images, torch.from_numpy(data["test_y"]).long(), torch.from_numpy(data["test_exact"])


def predict(
    model: torch.nn.Module, images: torch.Tensor, batch_size: int, desc: str
) -> torch.Tensor:
    """Logits of ``images`` (uint8) after the model's own mean/std normalisation."""
    mean = torch.tensor(model.pretrained_cfg["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(model.pretrained_cfg["std"]).view(1, -1, 1, 1)
    logits = []
    with torch.inference_mode():
        for x in tqdm(images.split(batch_size), desc=desc, leave=False):
            logits.append(model((x.float() / 255 - mean) / std))
    return torch.cat(logits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--depths", type=int, nargs="+", default=list(DEPTHS))
    parser.add_argument(
        "--ensemble", type=int, nargs="+", action="append", default=[], metavar="DEPTH",
        help="also score these depths' mean logits (repeatable; the depths must be evaluated)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    for depths in args.ensemble:
        if missing := sorted(set(depths) - set(args.depths)):
            parser.error(f"--ensemble {' '.join(map(str, depths))}: add {missing} to --depths")
    torch.set_num_threads(args.threads)
    root = shared_data_dir()
    if root is None:
        raise SystemExit("shared data not found: set MULTISPIKE_DATA to ../shared/data")
    images, labels, exact = load_test_set(root / "cifar10" / "cifar10-full.npz")

    rows, logits = [], {}
    for depth in args.depths:
        name = f"ms_resnet{depth}"
        start, cpu_start = time.perf_counter(), time.process_time()
        model = timm.create_model(
            name, pretrained=True, pretrained_cfg_overlay=dict(file=str(pretrained_path(name)))
        ).eval()
        loaded = time.perf_counter()
        logits[depth] = predict(model, images, args.batch_size, name)
        correct = logits[depth].argmax(1) == labels
        done, cpu_done = time.perf_counter(), time.process_time()
        rows.append(
            dict(
                model=name,
                top1=100 * correct.float().mean().item(),
                top1_exact=100 * correct[exact].float().mean().item(),
                load_s=loaded - start,
                eval_s=done - loaded,
                cpu_s=cpu_done - cpu_start,
                images_per_s=len(labels) / (done - loaded),
            )
        )
        r = rows[-1]
        print(
            f"{name:12s} top1 {r['top1']:.2f}  exact-only {r['top1_exact']:.2f}  "
            f"load {r['load_s']:.2f}s  eval {r['eval_s']:.1f}s  ({r['images_per_s']:.0f} img/s)  "
            f"CPU {r['cpu_s']:.1f}s"
        )
    for depths in args.ensemble:
        name = " + ".join(f"ms_resnet{d}" for d in depths)
        correct = torch.stack([logits[d] for d in depths]).mean(0).argmax(1) == labels
        rows.append(dict(model=name, top1=100 * correct.float().mean().item(),
                         top1_exact=100 * correct[exact].float().mean().item()))  # fmt: skip
        print(f"{name}  top1 {rows[-1]['top1']:.2f}  exact-only {rows[-1]['top1_exact']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
