"""Two-process DDP on CPU (gloo): calibration, QAT → SNN switch and metrics across ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import lightning as L
    import torch
    from sklearn.datasets import load_digits
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset
    from multispike.convert import CalibrationOptions
    from multispike.distill.module import StepwiseDistillation
    from multispike.distill.students import Stage

    class Digits(L.LightningDataModule):
        def __init__(self):
            super().__init__()
            d = load_digits()
            x = torch.as_tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
            self.data = TensorDataset(x[:256], torch.as_tensor(d.target)[:256])
        def train_dataloader(self):
            return DataLoader(self.data, batch_size=32)
        def val_dataloader(self):
            return DataLoader(self.data, batch_size=64)

    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                            nn.Linear(4 * 64, 10)).eval()
    system = StepwiseDistillation(
        teacher, stages=[Stage("qann", epochs=1), Stage("snn", timesteps=2)],
        calibration=CalibrationOptions(levels=2, calibration_images=64), lr=0.01,
    )
    trainer = L.Trainer(
        accelerator="cpu", devices=2, strategy="ddp", max_epochs=2, limit_train_batches=2,
        limit_val_batches=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
    )
    trainer.fit(system, Digits())
    state = {k: v.double().sum().item() for k, v in system.student.state_dict().items()}
    result = dict(world=trainer.world_size, stage=system.stage_index, state=state,
                  top1=trainer.callback_metrics["val/top1"].item(),
                  steps=system.student.timesteps)
    with open(f"{sys.argv[1]}/rank{trainer.global_rank}.json", "w") as f:
        json.dump(result, f)
    """
)


@pytest.mark.slow
def test_two_process_ddp_on_cpu(tmp_path):
    script = tmp_path / "ddp_fit.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1", PL_DISABLE_FORK="1")
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], env=env, capture_output=True, text=True,
        timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world"] == 2 and r["stage"] == 1 and r["steps"] == 2 for r in ranks)
    assert ranks[0]["state"] == ranks[1]["state"]  # gradients were all-reduced
    assert ranks[0]["top1"] == ranks[1]["top1"]  # metrics were synchronised
