"""Messages during a fit, each on its own line: above Lightning's progress bar while one runs
(:meth:`~lightning.pytorch.core.LightningModule.print`, which writes through the bar), through
Lightning's logger otherwise (no trainer attached, or no bar)."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.utilities import rank_zero_info

__all__ = ["announce"]


def announce(module: L.LightningModule, text: str) -> None:
    """Show ``text`` once (rank 0), never on the progress bar's line."""
    trainer = module._trainer
    bar = trainer.progress_bar_callback if trainer is not None else None
    if bar is not None and bar.is_enabled:
        module.print(text)
    else:
        rank_zero_info(text)
