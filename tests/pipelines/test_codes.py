"""Three spike codes of one QANN: exact clean rows, seeded perturbations that do what they say."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from multispike.convert import MultiLevelIFNeuron, calibrate, to_snn, to_ttfs
from multispike.convert.ttfs import TTFSNeuron
from multispike.pipelines.evaluation import evaluate, write_report
from multispike.pipelines.evaluation.codes import compare_codes, spike_perturbation


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    ann = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    ).eval()  # fmt: skip
    x = torch.randn(24, 3, 8, 8)
    y = ann(x).argmax(1)
    y[::4] = (y[::4] + 1) % 4
    qann = calibrate(ann, [x], levels=4, per_channel=True, progress=False)
    return qann, DataLoader(TensorDataset(x, y), batch_size=8), x


def _outputs(model, x):
    got = []
    layers = [m for m in model.modules() if isinstance(m, TTFSNeuron | MultiLevelIFNeuron)]
    hooks = [m.register_forward_hook(lambda m, a, out: got.append(out.clone())) for m in layers]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return got


def test_perturbations_are_seeded_and_level_zero_is_the_clean_path(setup):
    qann, _, x = setup
    snn = to_snn(qann, 1, 6)
    with torch.no_grad():
        clean = snn(x)
        for kind in ("deletion", "jitter"):
            with spike_perturbation(snn, kind, 0.0):
                assert torch.equal(snn(x), clean)
            with spike_perturbation(snn, kind, 0.3, seed=1):
                a = snn(x)
            with spike_perturbation(snn, kind, 0.3, seed=1):
                b = snn(x)
            assert torch.equal(a, b) and not torch.equal(a, clean)
        assert torch.equal(snn(x), clean)  # hooks gone
    with pytest.raises(ValueError, match="deletion"):
        spike_perturbation(snn, "noise", 0.1).__enter__()


def test_deletion_removes_events_and_jitter_moves_them(setup):
    qann, _, x = setup
    snn = to_snn(qann, 1, 6)
    (sent,) = _outputs(snn, x)[:1]
    with spike_perturbation(snn, "deletion", 1.0):
        deleted = _outputs(snn, x)
    assert all(not o.any() for o in deleted)  # p = 1: nothing arrives
    with spike_perturbation(snn, "jitter", 1.0, seed=3):
        jittered = _outputs(snn, x)[0]
    steps = sent.reshape(6, -1)
    moved = jittered.reshape(6, -1)
    # every spike moved by one step: the total only loses spikes pushed out of the window
    lost = steps.sum() - moved.sum()
    assert 0 <= lost <= steps[0].sum() + steps[-1].sum()
    assert not torch.equal(moved, steps)


def test_ttfs_jitter_changes_a_value_by_one_quantum_within_the_window(setup):
    qann, _, x = setup
    ttfs = to_ttfs(qann)
    first = next(m for m in ttfs.modules() if isinstance(m, TTFSNeuron))
    clean = _outputs(ttfs, x)[0]
    with spike_perturbation(ttfs, "jitter", 1.0, seed=0):
        shaken = _outputs(ttfs, x)[0]
    q = (first.threshold / first.levels).view(1, -1, 1, 1)
    k, k2 = torch.round(clean / q), torch.round(shaken / q)
    assert torch.equal(k == 0, k2 == 0)  # silent stays silent, a spike stays a spike
    assert ((k2 - k).abs() <= 1).all() and (k2[k > 0] >= 1).all() and (k2 <= first.levels).all()
    assert (k2 != k).any()


def test_compare_codes_rows(setup):
    qann, loader, x = setup
    rows = compare_codes(qann, loader, rate_timesteps=[4, 8], noise=[0.3], deletion=[0.2],
                         jitter=[0.25], progress=False)  # fmt: skip
    assert [r["code"] for r in rows] == ["multi-level", "rate", "rate", "ttfs"]
    multi, rate4, _, ttfs = rows
    qann_top1 = (qann(x).argmax(-1) == loader.dataset.tensors[1]).float().mean().item()
    assert multi["top1"] == pytest.approx(qann_top1) and ttfs["top1"] == pytest.approx(qann_top1)
    assert ttfs["events"] == multi["events"] and ttfs["synops"] == multi["synops"]
    assert ttfs["latency_steps"] == 2 * 4 and multi["latency_steps"] == 1
    assert (multi["payload_bits"], rate4["payload_bits"], ttfs["payload_bits"]) == (2, 0, 0)
    assert ttfs["energy"]["total"] > multi["energy"]["total"]  # L membrane ticks per window
    assert multi["robustness"]["jitter"] is None and ttfs["robustness"]["jitter"] is not None
    for row in rows:
        assert row["robustness"]["input"][0.0] == pytest.approx(row["top1"])
        assert row["robustness"]["deletion"][0.0] == pytest.approx(row["top1"])
        assert set(row["robustness"]["deletion"]) == {0.0, 0.2}


@pytest.mark.slow
def test_evaluate_reports_the_codes(setup, tmp_path):
    qann, loader, _ = setup
    metrics = evaluate(None, qann, loader, noise=(0.0, 0.3), codes=True, progress=False)
    assert [r["code"] for r in metrics["codes"]] == ["multi-level", "rate", "ttfs"]
    write_report(metrics, tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "## Spike codes of the QANN" in report and "spike deletion 0.1" in report
    for name in ("events", "latency", "noise", "deletion"):
        assert (tmp_path / f"codes_accuracy_vs_{name}.png").stat().st_size > 0


def test_perturbed_passes_read_their_own_images(setup):
    qann, loader, x = setup
    y = loader.dataset.tensors[1]
    first = DataLoader(TensorDataset(x[:8], y[:8]), batch_size=8)
    rows = compare_codes(qann, loader, rate_timesteps=[4], noise=[0.3], deletion=[0.2],
                         jitter=[0.25], progress=False, noise_loader=first)  # fmt: skip
    with torch.no_grad():
        exact = (qann(x[:8]).argmax(-1) == y[:8]).float().mean().item()
        rate = to_snn(qann, 1, 4)(x[:8]).mean(0)
        rate = (rate.argmax(-1) == y[:8]).float().mean().item()
    heads = {"multi-level": exact, "rate": rate, "ttfs": exact}
    for row in rows:  # clean rows on all 24 images, perturbed ones on the first 8
        assert row["robustness"]["deletion"][0.0] == pytest.approx(heads[row["code"]])
        assert row["robustness"]["input"][0.0] == pytest.approx(heads[row["code"]])
    whole = compare_codes(qann, loader, rate_timesteps=[4], noise=[0.3], deletion=[0.2],
                          jitter=[0.25], progress=False)  # fmt: skip
    assert [r["top1"] for r in rows] == [r["top1"] for r in whole]
