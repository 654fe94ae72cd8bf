"""Top-1 of the pretrained CIFAR-10 ResNets on the CIFAR-10 test set, and load + eval time.

    .venv/bin/python benchmarks/zoo_pretrained.py --threads 2 --data.batch_size 500
    .venv/bin/python benchmarks/zoo_pretrained.py --ensemble '[[56,44],[56,44,32,20]]'

Each model is built by :func:`multispike.zoo.load_model` (``pretrained=True``: the akamaster
checkpoint of the local data folder, ``MULTISPIKE_DATA``) and evaluated in float32 on the CPU
on the test split of ``--data`` (:class:`~multispike.pipelines.data.CIFAR10DataModule`: all
10,000 images, or the first ``--eval_images``), normalised like the model's pretrained cfg
(:func:`~multispike.pipelines.sources.ann_and_data`). Top-1 is a one-step
:class:`~multispike.distill.metrics.StepAccuracy` of the logits, as ``multispike evaluate``
scores an ANN. Times: wall-clock seconds to load (build + read + check the checkpoint) and to
evaluate (data transform included), and the process CPU seconds of both (less sensitive to
other jobs on a shared machine). ``--ensemble '[[56,44]]'`` adds the top-1 of those depths'
mean logits (what :class:`multispike.distill.teacher.TeacherEnsemble` computes, from the
logits already computed). Raw results go to ``--json_path`` (default
``benchmarks/results/zoo_pretrained.json``).
"""

from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path

import torch
from jsonargparse import lazy_instance

from multispike.distill.metrics import StepAccuracy
from multispike.pipelines.cli import run_function
from multispike.pipelines.data import CIFAR10DataModule
from multispike.pipelines.sources import ann_and_data, first_images

RESULTS = Path(__file__).resolve().parent / "results" / f"{Path(__file__).stem}.json"


def top1(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 (%) of ``(N, classes)`` logits: a one-step ``StepAccuracy``."""
    metric = StepAccuracy(1)
    metric.update(logits.unsqueeze(0), labels)
    return 100 * float(metric.compute())


def main(
    threads: int = 2,
    data: CIFAR10DataModule = lazy_instance(CIFAR10DataModule, batch_size=500),  # noqa: B008
    eval_images: int | None = None,
    depths: list[int] = [20, 32, 44, 56],  # noqa: B006  (never mutated)
    ensemble: list[list[int]] = [],  # noqa: B006
    json_path: Path = RESULTS,
) -> None:
    """Score and time each pretrained depth; print one line each and write the raw results.

    Args:
        threads: torch intra-op threads.
        data: the CIFAR-10 DataModule (``--data.batch_size``: images per batch).
        eval_images: the first test images (default: all 10,000).
        depths: ResNet depths (``ms_resnet<depth>``).
        ensemble: also score these groups of depths' mean logits, e.g. ``[[56,44]]`` (each
            depth must be in ``depths``).
        json_path: where the raw results go.
    """
    for group in ensemble:
        if missing := sorted(set(group) - set(depths)):
            raise ValueError(f"--ensemble {group}: add {missing} to --depths")
    arguments = dict(threads=threads, batch_size=data.batch_size, eval_images=eval_images,
                     depths=depths, ensemble=ensemble, json_path=json_path)  # fmt: skip
    torch.set_num_threads(threads)

    rows, logits, labels = [], {}, None
    for depth in depths:
        name = f"ms_resnet{depth}"
        model_data = copy.deepcopy(data)  # each model's own normalisation
        start, cpu_start = time.perf_counter(), time.process_time()
        model, _ = ann_and_data(name, model_data, pretrained=True)
        loaded, cpu_loaded = time.perf_counter(), time.process_time()
        model_data.setup("test")
        loader = first_images(model_data.test_dataloader(), eval_images)
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
                mean=list(model_data.mean),
                std=list(model_data.std),
                top1=top1(logits[depth], labels),
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
    for group in ensemble:
        name = " + ".join(f"ms_resnet{d}" for d in group)
        mean_logits = torch.stack([logits[d] for d in group]).mean(0)
        rows.append(dict(model=name, images=len(labels), top1=top1(mean_logits, labels)))
        print(f"{name}  top1 {rows[-1]['top1']:.2f}")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    record = {"command": sys.argv, "args": arguments, "torch": torch.__version__, "rows": rows}
    json_path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"raw results: {json_path}")


if __name__ == "__main__":
    sys.exit(run_function(main, sys.argv[1:], "python benchmarks/zoo_pretrained.py"))
