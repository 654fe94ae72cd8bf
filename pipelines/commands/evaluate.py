"""``multispike evaluate``: the test-set report of a converted model folder.

    multispike evaluate --model_dir runs/resnet20-L4 --data CIFAR10DataModule \\
        --pretrained true --output runs/resnet20-L4/report

Top-1/top-5 of the QANN and its SNNs at every step (and of the ANN when its weights are
given), activity and synaptic operations per layer, energy per image, a binary (``N = 1``)
SNN side by side, optional ``(N, T)`` sweeps and input-noise robustness. Writes
``metrics.json``, ``report.md`` and PNG plots to ``--output``. This is the command that reads
the test split; every choice before it is made on the validation split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L

from .. import data as datamodules  # noqa: F401  (lets --data name a DataModule by class name)
from ..engine import Engine

__all__ = ["config", "evaluate", "main"]


def evaluate(
    model_dir: Path,
    data: L.LightningDataModule,
    output: Path,
    checkpoint: str | None = None,
    pretrained: bool = False,
    max_spikes: int | None = None,
    timesteps: int | None = None,
    binary_timesteps: int | None = None,
    sweep: list[str] = [],  # noqa: B006  (jsonargparse reads the default; never mutated)
    noise: list[float] = [],  # noqa: B006
    eval_images: int | None = None,
    sweep_images: int | None = None,
    noise_images: int | None = None,
    energy_costs: Path | None = None,
    neurobench: bool = False,
    codes: bool = False,
    trainer: Engine = Engine(),  # noqa: B008  (frozen dataclass)
    progress: bool = True,
) -> dict:
    """Evaluate a converted model folder on the test split and write the report.

    Args:
        model_dir: a model folder written by ``multispike convert`` or ``distill``.
        data: the DataModule; its test split is evaluated, normalised like the source ANN.
        output: the report folder (``metrics.json``, ``report.md``, plots).
        checkpoint: weights of the source ANN (the folder's architecture), for its row.
        pretrained: the source ANN's pretrained weights (local copy, else timm's hub).
        max_spikes: ``N`` of the multi-level SNN (default: the folder's, else ``L``; 1 to 65535).
        timesteps: ``T`` of the multi-level SNN (default: the folder's, else 1; 1 to 4096).
        binary_timesteps: ``T`` of the binary (``N = 1``) SNN (default ``L``; 1 to 4096).
        sweep: extra ``NxT`` configurations, e.g. ``[1x2, 2x2]``.
        noise: Gaussian σ (images) or spurious-event probability (events); empty: none.
        eval_images: the first images of the test split (default: all of them).
        sweep_images: images of the sweep (default: ``eval_images``).
        noise_images: images of the robustness tests, input noise and the codes'
            perturbations (default: ``eval_images``).
        energy_costs: a YAML/JSON cost table overriding the defaults.
        neurobench: also run NeuroBench's harness (``pip install -e ".[neurobench]"``) on the
            multi-level SNN; its values go to ``metrics.json`` and ``report.md``.
        codes: also compare the QANN's spike codes (multi-level, binary rate, TTFS): accuracy,
            events, latency, energy, and robustness to input noise, spike deletion, jitter.
        trainer: where it runs: ``--trainer.accelerator``, ``--trainer.devices``,
            ``--trainer.num_nodes``, ``--trainer.strategy`` (see
            :class:`~multispike.pipelines.engine.Engine`). With several processes each takes
            whole test batches and the metrics are reduced: ``metrics.json`` equals one
            process's; ``neurobench`` and ``codes`` need one process.
        progress: show progress bars.
    """
    import json

    import torch

    from ...convert import SpikingNetwork, qann_of, shard_batches
    from ...distill.metrics.energy import load_costs
    from ..evaluation import SNNConfig, write_report
    from ..evaluation import evaluate as run_evaluation
    from ..folder import load
    from ..outputs import check_output, writing
    from ..sources import ann_and_data, first_images
    from .convert import check_counts

    check_counts(
        max_spikes=max_spikes, timesteps=timesteps, binary_timesteps=binary_timesteps,
        eval_images=eval_images, sweep_images=sweep_images, noise_images=noise_images,
    )  # fmt: skip
    configs = [_sweep_config(SNNConfig.parse(text), text) for text in sweep]
    check_output(output, "folder")
    costs = load_costs(energy_costs)
    fabric = trainer.launch()
    main = fabric.global_rank == 0
    progress = progress and main
    device = fabric.device
    saved = load(model_dir, device=device)
    folder = json.loads((Path(model_dir) / "config.json").read_text())
    arch = folder["architecture"]
    _check_folder_fits_data(model_dir, folder, data)
    ann, _ = ann_and_data(
        arch["model_name"], data, checkpoint=checkpoint, pretrained=pretrained,
        **arch.get("model_kwargs", {}),
    )  # fmt: skip
    ann = ann.to(device) if checkpoint or pretrained else None
    defaults = {"max_spikes": None, "timesteps": 1}
    if isinstance(saved, SpikingNetwork):
        defaults = {"max_spikes": saved.net.meta["multispike"]["max_spikes"],
                    "timesteps": saved.timesteps}  # fmt: skip
        saved = qann_of(saved)
    data.setup("test")
    test = data.test_dataloader()
    torch.set_num_threads(min(torch.get_num_threads(), 8))
    metrics = run_evaluation(
        ann, saved, shard_batches(first_images(test, eval_images)),
        max_spikes=max_spikes or defaults["max_spikes"],
        timesteps=timesteps or defaults["timesteps"], binary_timesteps=binary_timesteps,
        sweep=configs, sweep_loader=shard_batches(first_images(test, sweep_images or eval_images)),
        noise_loader=shard_batches(first_images(test, noise_images or eval_images)),
        noise=noise, costs=costs, neurobench=neurobench, codes=codes, progress=progress,
    )  # fmt: skip
    metrics["model_dir"] = str(model_dir)
    metrics["noise_images"] = len(first_images(test, noise_images or eval_images).dataset)
    metrics["context"] = _context(model_dir, arch, checkpoint, pretrained, data, device)
    if main:
        with writing(output):
            write_report(metrics, output)
        print(_summary(metrics))
        print(f"report: {Path(output) / 'report.md'}")
    fabric.barrier()  # the next stage reads what rank 0 writes
    return metrics


def _sweep_config(config, text: str):
    """``config`` (an ``SNNConfig`` read from ``text``) if ``N`` and ``T`` are in bounds."""
    from .convert import COUNT_LIMITS

    for name, value in (("max_spikes", config.max_spikes), ("timesteps", config.timesteps)):
        if value > COUNT_LIMITS[name]:
            raise ValueError(
                f"--sweep {text}: {name} {value} is more than {COUNT_LIMITS[name]}; "
                "choose a smaller NxT"
            )
    return config


def _context(model_dir, arch, checkpoint, pretrained, data, device) -> dict:
    """What the report measured: the model, where the ANN came from, the data, the machine."""
    import platform

    import torch

    if checkpoint:
        ann = f"{arch['model_name']} with the weights of {checkpoint}"
    elif pretrained:
        ann = f"{arch['model_name']}, pretrained weights (local copy, else timm's hub)"
    else:
        ann = None
    import os

    cpu = platform.processor() or platform.machine()
    return {
        "model_dir": str(model_dir),
        "ann_source": ann,
        "dataset": type(data).__name__,
        "split": "test",
        # the same whatever the process count: metrics.json equals one process's
        "machine": f"{cpu}, {os.cpu_count()} cores, {device.type}; torch {torch.__version__}",
    }


def _summary(metrics: dict) -> str:
    images = metrics["snn"]["images"]
    parts = [f"{name.upper()} {100 * metrics[f'{name}.top1']:.2f} %"
             for name in ("ann", "qann") if f"{name}.top1" in metrics]  # fmt: skip
    for key in ("snn", "binary"):
        run = metrics[key]
        parts.append(f"SNN {run['label']} {100 * run['top1']:.2f} %")
    return f"test split, {images} images, top-1: " + " · ".join(dict.fromkeys(parts))


def config(argv: list[str]) -> str:
    """The options ``argv`` resolve to, as YAML (validated; nothing is run)."""
    from ..cli import function_config

    return function_config(evaluate, argv, "multispike evaluate")


def main(argv: list[str]) -> int:
    from ..cli import run_function

    return run_function(evaluate, argv, "multispike evaluate")


def _check_folder_fits_data(model_dir: str, folder: dict[str, Any], data: Any) -> None:
    """Refuse ``--data`` whose classes or channels differ from the model folder's network."""
    kwargs = folder["architecture"].get("model_kwargs", {})
    shape = getattr(data, "input_shape", None)
    takes = {"classes": kwargs.get("num_classes"), "input channels": folder["input_shape"][0]}
    has = {"classes": getattr(data, "num_classes", None), "input channels": shape and shape[0]}
    for word, wanted in takes.items():
        if wanted is not None and has[word] is not None and wanted != has[word]:
            raise ValueError(
                f"model folder {model_dir} takes {wanted} {word}, --data {type(data).__name__} "
                f"has {has[word]}: evaluate it on the data it was converted for"
            )
