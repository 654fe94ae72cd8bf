"""Top-1 of the pretrained CIFAR-10 ResNets on the CIFAR-10 test set, and load + eval time.

    .venv/bin/python benchmarks/zoo_pretrained.py --threads 2 --batch-size 500
    .venv/bin/python benchmarks/zoo_pretrained.py --ensemble 56 44 --ensemble 56 44 32 20

Each model is built by :func:`multispike.zoo.load_model` (``pretrained=True``: the akamaster
checkpoint of the local data folder, ``MULTISPIKE_DATA``) and evaluated in float32 on the CPU
on the test split of :class:`~multispike.pipelines.data.CIFAR10DataModule` (all 10,000 images,
or the first ``--images``), normalised like the model's pretrained cfg
(``adopt_model_config``). Top-1 is torchmetrics' ``multiclass_accuracy``. Times: wall-clock
seconds to load (build + read + check the checkpoint) and to evaluate (data transform
included), and the process CPU seconds of both (less sensitive to other jobs on a shared
machine). ``--ensemble 56 44`` adds the top-1 of those depths' mean logits (what
``multispike.distill.teacher.TeacherEnsemble`` computes). Raw results go to ``--json``
(default ``benchmarks/results/zoo_pretrained.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torchmetrics.functional.classification import multiclass_accuracy

from multispike.pipelines.data import CIFAR10DataModule
from multispike.pipelines.sources import first_images
from multispike.zoo import load_model

DEPTHS = (20, 32, 44, 56)
RESULTS = Path(__file__).resolve().parent / "results" / f"{Path(__file__).stem}.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--images", type=int, default=None, help="first N test images (all)")
    parser.add_argument("--depths", type=int, nargs="+", default=list(DEPTHS))
    parser.add_argument(
        "--ensemble", type=int, nargs="+", action="append", default=[], metavar="DEPTH",
        help="also score these depths' mean logits (repeatable; the depths must be evaluated)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, default=RESULTS, help="raw results (JSON)")
    args = parser.parse_args()
    for depths in args.ensemble:
        if missing := sorted(set(depths) - set(args.depths)):
            parser.error(f"--ensemble {' '.join(map(str, depths))}: add {missing} to --depths")
    torch.set_num_threads(args.threads)

    rows, logits, labels = [], {}, None
    for depth in args.depths:
        name = f"ms_resnet{depth}"
        start, cpu_start = time.perf_counter(), time.process_time()
        model = load_model(name, pretrained=True)
        loaded, cpu_loaded = time.perf_counter(), time.process_time()
        data = CIFAR10DataModule(batch_size=args.batch_size)
        data.adopt_model_config(model)
        data.setup("test")
        loader = first_images(data.test_dataloader(), args.images)
        cpu_data = time.process_time() - cpu_loaded
        evaluating, cpu_eval_start = time.perf_counter(), time.process_time()
        outputs, targets = [], []
        with torch.inference_mode():
            for x, y in loader:
                outputs.append(model(x))
                targets.append(y)
        done, cpu_done = time.perf_counter(), time.process_time()
        logits[depth], labels = torch.cat(outputs), torch.cat(targets)
        rows.append(
            dict(
                model=name,
                images=len(labels),
                mean=list(data.mean),
                std=list(data.std),
                top1=100
                * float(
                    multiclass_accuracy(logits[depth], labels, data.num_classes, average="micro")
                ),
                load_s=loaded - start,
                eval_s=done - evaluating,
                cpu_s=(cpu_loaded - cpu_start) + (cpu_done - cpu_eval_start),
                data_cpu_s=cpu_data,
                images_per_s=len(labels) / (done - evaluating),
            )
        )
        r = rows[-1]
        print(
            f"{name:12s} top1 {r['top1']:.2f} ({r['images']} images)  load {r['load_s']:.2f}s  "
            f"eval {r['eval_s']:.1f}s  ({r['images_per_s']:.0f} img/s)  CPU {r['cpu_s']:.1f}s"
        )
    for depths in args.ensemble:
        name = " + ".join(f"ms_resnet{d}" for d in depths)
        mean_logits = torch.stack([logits[d] for d in depths]).mean(0)
        top1 = 100 * float(
            multiclass_accuracy(mean_logits, labels, CIFAR10DataModule.num_classes, average="micro")
        )
        rows.append(dict(model=name, images=len(labels), top1=top1))
        print(f"{name}  top1 {rows[-1]['top1']:.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    record = {"command": sys.argv, "args": vars(args), "torch": torch.__version__, "rows": rows}
    args.json.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"raw results: {args.json}")


if __name__ == "__main__":
    main()
