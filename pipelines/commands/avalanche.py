"""``multispike avalanche``: residual-stream activity of the sparse/SEW/analog forms of a model.

    multispike avalanche --model ms_resnet20 --pretrained true --data CIFAR10DataModule \\
        --output runs/avalanche

Calibrates the model into a QANN of each form (residual joins rewired), converts and
writes ``avalanche.json`` and ``avalanche.png`` (activity against depth) to ``--output``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import lightning as L

from ...convert.options import CalibrationOptions
from .. import data as datamodules  # noqa: F401  (lets --data name a DataModule by class name)

__all__ = ["avalanche", "config", "main"]


def avalanche(
    model: str,
    data: L.LightningDataModule,
    output: Path,
    checkpoint: str | None = None,
    pretrained: bool = False,
    calibration: CalibrationOptions = CalibrationOptions(),  # noqa: B008  (frozen dataclass)
    max_spikes: int | None = None,
    timesteps: int = 1,
    modes: list[Literal["sparse", "sew", "analog"]] = ["sparse", "sew", "analog"],  # noqa: B006
    eval_images: int | None = None,
    split: Literal["val", "test"] = "test",
    progress: bool = True,
) -> dict:
    """Measure the spike avalanche: activity of every residual stream along depth for the
    sparse (barrier neuron after each join), sew (sum of spikes) and analog (real-valued
    shortcut) forms of one calibrated model.

    Args:
        model: timm/zoo model name, e.g. ``ms_resnet20``.
        data: the DataModule (training images calibrate; ``split`` is measured).
        output: folder of ``avalanche.json`` and ``avalanche.png``.
        checkpoint: a local weights file for the model.
        pretrained: pretrained weights (local copy, else timm's hub).
        calibration: ``--levels``, ``--per_channel``, ``--calibration``, ``--percentile``,
            ``--calibration_images``, ``--reconstruct_iterations``
            (:class:`~multispike.convert.CalibrationOptions`); each form is calibrated on the
            same images as ``multispike convert --residual MODE`` calibrates it.
        max_spikes: ``N``, spikes per neuron per step (default ``L``; 1 to 65535).
        timesteps: ``T`` (1 to 4096).
        modes: the forms to measure.
        eval_images: the first images of ``split`` (default: all of them).
        split: the split measured.
        progress: show progress bars.
    """
    from ..evaluation.avalanche import avalanche as measure
    from ..evaluation.avalanche import save_avalanche
    from ..outputs import check_output, writing
    from ..sources import ann_and_data, first_images
    from .convert import check_counts

    check_counts(max_spikes=max_spikes, timesteps=timesteps, eval_images=eval_images)
    check_output(output, "folder")
    ann, _ = ann_and_data(model, data, checkpoint=checkpoint, pretrained=pretrained)
    data.setup("test" if split == "test" else "validate")
    calib = list(data.calibration_dataloader(calibration.calibration_images))
    # each form calibrated as `multispike convert --residual MODE` would: its joins rewired
    # before a reconstruction, so that it tunes the barrier thresholds too
    forms = {m: calibration.apply(ann, calib, residual=m, progress=progress) for m in modes}
    loader = data.val_dataloader() if split == "val" else data.test_dataloader()
    if not loader:
        raise ValueError(f"--data {type(data).__name__} has no validation split (val_size=0)")
    result = measure(
        forms, first_images(loader, eval_images), timesteps=timesteps, max_spikes=max_spikes,
        progress=progress,
    )  # fmt: skip
    result.update(model=model, split=split)
    with writing(output):
        json_path, png_path = save_avalanche(result, output)
    for mode, form in result["forms"].items():
        accuracy = form["accuracy"]
        print(
            f"{mode:>6}: total events/image {form['totals']['total_events']:.0f}"
            + (f", top-1 {100 * accuracy:.2f} % ({split})" if accuracy is not None else "")
        )
    print(f"wrote {json_path} and {png_path}")
    return result


def config(argv: list[str]) -> str:
    """The options ``argv`` resolve to, as YAML (validated; nothing is run)."""
    from ..cli import function_config

    return function_config(avalanche, argv, "multispike avalanche")


def main(argv: list[str]) -> int:
    from ..cli import run_function

    return run_function(avalanche, argv, "multispike avalanche")
