"""``multispike convert``: calibrate an ANN, convert it to an SNN, save it with ``report.json``.

    multispike convert --model ms_resnet20 --pretrained true --data CIFAR10DataModule \\
        --levels 4 --output runs/resnet20-L4

The output folder holds the converted model (``config.json`` + ``model.safetensors``, which
``multispike.pipelines.load`` rebuilds) and ``report.json``: the conversion report (sites,
thresholds, folded BatchNorms) and, on the data's validation split (held-out training images,
never the test set), ``ann.top1``, ``qann.top1``, ``snn.top1_at_t``,
``snn.agreement_with_qann`` and ``snn.max_abs_logit_diff``. Test accuracy is
``multispike evaluate``'s job.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Literal

import lightning as L

from ...convert.options import COUNT_LIMITS, CalibrationOptions, check_counts
from .. import data as datamodules  # noqa: F401  (lets --data name a DataModule by class name)
from ..engine import Engine

__all__ = ["COUNT_LIMITS", "check_counts", "config", "convert", "main"]


def convert(
    model: str,
    data: L.LightningDataModule,
    output: Path,
    checkpoint: str | None = None,
    pretrained: bool = False,
    num_classes: int | None = None,
    in_chans: int | None = None,
    calibration: CalibrationOptions = CalibrationOptions(),  # noqa: B008  (frozen dataclass)
    max_spikes: int | None = None,
    timesteps: int = 1,
    residual: Literal["sparse", "sew", "analog"] | None = None,
    eval_images: int | None = None,
    trainer: Engine = Engine(),  # noqa: B008  (frozen dataclass)
    progress: bool = True,
) -> dict:
    """Calibrate an ANN into a multi-level quantized ANN and convert it to an SNN.

    Args:
        model: timm model name (zoo models: ``ms_*``).
        data: the DataModule, e.g. ``CIFAR10DataModule`` (calibration uses training images,
            the report its validation split).
        output: the model folder to write.
        checkpoint: a local weights file; never downloads.
        pretrained: pretrained weights: the local data folder's copy, else timm's hub.
        num_classes: classifier outputs (default: the data's).
        in_chans: input channels (default: the data's).
        calibration: ``--levels``, ``--per_channel``, ``--calibration``, ``--percentile``,
            ``--calibration_images``, ``--reconstruct_iterations``
            (:class:`~multispike.convert.CalibrationOptions`).
        max_spikes: ``N``, spikes per neuron per step (default ``L``; 1 to 65535).
        timesteps: ``T``, SNN steps (1 to 4096).
        residual: rewire residual joins: ``sparse`` (barrier neurons), ``sew`` or ``analog``.
        eval_images: validation images of the report (default: the whole split).
        trainer: where it runs: ``--trainer.accelerator``, ``--trainer.devices``,
            ``--trainer.num_nodes``, ``--trainer.strategy`` (see
            :class:`~multispike.pipelines.engine.Engine`). With several processes each takes
            whole calibration and validation batches; λ and the report equal one process's;
            the reconstruction runs whole on every rank (it is sequential in its steps).
        progress: show progress bars.
    """

    from ...convert import conversion_report, shard_batches, to_snn
    from ..data import RandomDataModule
    from ..evaluation import accuracy_summary, nested_metrics
    from ..folder import save
    from ..outputs import check_output, writing
    from ..sources import ann_and_data, first_images, preprocessing

    check_counts(timesteps=timesteps, max_spikes=max_spikes, eval_images=eval_images)
    check_output(output, "folder")
    fabric = trainer.launch()
    main = fabric.global_rank == 0
    progress = progress and main
    ann, kwargs = ann_and_data(
        model, data, checkpoint=checkpoint, pretrained=pretrained, num_classes=num_classes,
        in_chans=in_chans,
    )  # fmt: skip
    ann = ann.to(fabric.device)
    data.setup("fit")
    start = time.perf_counter()
    calib = data.calibration_dataloader(calibration.calibration_images)  # event data: frames
    qann = calibration.apply(ann, calib, residual=residual, shard=True, progress=progress)
    snn = to_snn(qann, max_spikes=max_spikes, timesteps=timesteps)
    seconds = time.perf_counter() - start

    random = isinstance(data, RandomDataModule)
    if random:
        print("convert: RandomDataModule: thresholds fit noise and accuracies mean nothing; "
              "only the SNN-QANN comparison is reported", file=sys.stderr)  # fmt: skip
    val = data.val_dataloader()
    accuracy, eval_count = {}, 0
    if val:
        val = first_images(val, eval_images)
        eval_count = len(val.dataset)
        accuracy = accuracy_summary(
            None if random else ann, qann, snn, shard_batches(val), progress=progress
        )
        if random:
            accuracy = {k: v for k, v in accuracy.items() if "agreement" in k or "logit" in k}
    report = conversion_report(snn, name=model)
    if not main:
        fabric.barrier()  # the next stage reads what rank 0 writes
        return {}
    payload = {
        **nested_metrics(accuracy),
        "conversion": report.to_dict(),
        "data": {"datamodule": type(data).__name__, "split": "val", "eval_images": eval_count},
        "processes": fabric.world_size,
        "calibration": {**calibration.record(), "seconds": round(seconds, 2)},
    }
    with writing(output):
        save(snn, output, model_name=model, model_kwargs=kwargs, preprocessing=preprocessing(data))
        (Path(output) / "report.json").write_text(json.dumps(payload, indent=2) + "\n")
    print(report)
    if accuracy:
        print(_summary(accuracy, timesteps, eval_count))
    print(f"saved to {output}/ (config.json, model.safetensors, report.json)")
    fabric.barrier()
    return payload


def _summary(accuracy: dict, timesteps: int, images: int) -> str:
    rows = [f"validation split, {images} images:"]
    for name in ("ann", "qann"):
        if f"{name}.top1" in accuracy:
            rows.append(f"  {name.upper():>4} top-1 {100 * accuracy[f'{name}.top1']:.2f} %")
    at_t = accuracy.get("snn.top1_at_t") or {}
    if at_t:
        steps = ", ".join(f"t={t}: {100 * v:.2f} %" for t, v in at_t.items())
        rows.append(f"   SNN top-1 {steps}")
    rows.append(
        f"  SNN vs QANN after T={timesteps}: agreement "
        f"{100 * accuracy['snn.agreement_with_qann']:.2f} %, max |Δlogit| "
        f"{accuracy['snn.max_abs_logit_diff']:.3g}"
    )
    return "\n".join(rows)


def config(argv: list[str]) -> str:
    """The options ``argv`` resolve to, as YAML (validated; nothing is run)."""
    from ..cli import function_config

    return function_config(convert, argv, "multispike convert")


def main(argv: list[str]) -> int:
    from ..cli import run_function

    return run_function(convert, argv, "multispike convert")
