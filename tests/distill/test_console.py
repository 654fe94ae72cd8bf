"""Messages during a fit go above the progress bar (its ``print``), never onto its line."""

from __future__ import annotations

import logging

import lightning as L
import pytest
from lightning.pytorch.callbacks import TQDMProgressBar

from multispike.distill.console import announce


@pytest.fixture
def printed(monkeypatch):
    lines = []
    monkeypatch.setattr(TQDMProgressBar, "print", lambda self, *args, **kw: lines.append(args))
    return lines


def _module(trainer: L.Trainer | None) -> L.LightningModule:
    module = L.LightningModule()
    if trainer is not None:
        module.trainer = trainer
    return module


def test_with_a_progress_bar_the_message_goes_through_the_bar(printed, caplog):
    trainer = L.Trainer(enable_progress_bar=True, logger=False, enable_checkpointing=False)
    with caplog.at_level(logging.INFO):
        announce(_module(trainer), "distillation stage 1: snn")
    assert printed == [("distillation stage 1: snn",)]
    assert "distillation stage 1" not in caplog.text


@pytest.mark.parametrize("bar", [False, None], ids=["bar off", "no trainer"])
def test_without_a_bar_the_message_goes_to_lightnings_logger(bar, printed, caplog):
    trainer = None if bar is None else L.Trainer(enable_progress_bar=bar, logger=False)
    with caplog.at_level(logging.INFO):
        announce(_module(trainer), "weights saved to x.safetensors")
    assert printed == []
    assert "weights saved to x.safetensors" in caplog.text
