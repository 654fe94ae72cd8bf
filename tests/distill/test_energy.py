"""Energy = Σ counts × cost table; the table's defaults, overrides and errors."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from multispike.convert import calibrate, to_snn
from multispike.distill.metrics import ActivityMonitor
from multispike.distill.metrics.energy import analog_counts, energy, load_costs, spiking_counts


def _net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(2, 4, 1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(4 * 9, 3),
    )  # fmt: skip


def test_default_table_is_horowitz_45nm():
    costs = load_costs()
    assert costs.ops == {"macs": 4.6, "synops": 0.9, "membrane_updates": 0.9}
    assert set(costs.memory) == {
        "weight_reads", "activation_reads", "membrane_reads", "membrane_writes", "spike_writes",
    }  # fmt: skip
    assert "Horowitz" in costs.source


def test_table_overrides_from_yaml_and_json(tmp_path):
    yaml_file = tmp_path / "costs.yaml"
    yaml_file.write_text("ops:\n  synops: 0.03\nmemory:\n  weight_reads: 0\n")
    costs = load_costs(yaml_file)
    assert costs.ops["synops"] == 0.03 and costs.ops["macs"] == 4.6
    assert costs.memory["weight_reads"] == 0.0
    json_file = tmp_path / "costs.json"
    json_file.write_text(json.dumps({"ops": {"macs": 1.0}}))
    assert load_costs(json_file).ops["macs"] == 1.0
    assert str(json_file) in load_costs(json_file).source


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("ops:\n  flops: 1\n", "unknown ops kind 'flops'"),
        ("ops:\n  macs: -1\n", "non-negative"),
        ("compute:\n  macs: 1\n", "sections 'ops' and/or 'memory'"),
        ("ops: [1, 2\n", "not valid YAML"),
    ],
)
def test_bad_tables_name_file_and_entry(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as info:
        load_costs(path)
    assert str(path) in str(info.value)
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_costs(tmp_path / "missing.yaml")


def test_energy_is_counts_times_costs():
    costs = load_costs()
    counts = {
        "conv": {"macs": 10.0, "synops": 100.0, "weight_reads": 110.0, "activation_reads": 10.0},
        "act": {"membrane_updates": 20.0, "membrane_reads": 20.0, "membrane_writes": 20.0,
                "spike_writes": 7.0},
    }  # fmt: skip
    result = energy(counts, costs)
    assert result["layers"]["conv"]["ops"] == pytest.approx(10 * 4.6 + 100 * 0.9)
    assert result["layers"]["conv"]["memory"] == pytest.approx(120 * 5.0)
    assert result["layers"]["act"]["ops"] == pytest.approx(20 * 0.9)
    assert result["layers"]["act"]["memory"] == pytest.approx(47 * 5.0)
    assert result["ops"] == pytest.approx(46 + 90 + 18)
    assert result["total"] == pytest.approx(result["ops"] + result["memory"])


def test_analog_counts_are_dense_macs():
    counts = analog_counts(_net(), (2, 3, 3))
    assert counts["0"]["macs"] == 9 * 4 * 2  # 1x1 conv: every position, 2 → 4 channels
    # 3x3 conv, padding 1 on 3x3: per dimension 3+2+... real inputs: (2+3+2)=7 → 7²·4·4
    assert counts["2"]["macs"] == 49 * 16
    assert counts["5"] == {"macs": 108.0, "weight_reads": 108.0, "activation_reads": 108.0}


def test_spiking_counts_follow_the_monitor():
    x = torch.randn(4, 2, 3, 3)
    snn = to_snn(calibrate(_net(), [x], levels=2, progress=False), timesteps=3)
    with ActivityMonitor(snn) as monitor:
        snn(x)
    activity = monitor.compute()
    counts = spiking_counts(activity)
    assert counts["2"]["synops"] == activity["synapses"]["2"]["synops"] > 0
    assert counts["0"]["macs"] == 9 * 4 * 2  # static input: the analog layer runs once
    assert counts["1"]["membrane_updates"] == 3 * 4 * 9
    assert counts["1"]["spike_writes"] == activity["neurons"]["1"]["events_per_sample"]
    total = energy(counts, load_costs())
    by_hand = (
        4.6 * activity["total"]["macs"]
        + 0.9 * activity["total"]["synops"]
        + 0.9 * activity["total"]["membrane_updates"]
    )
    assert total["ops"] == pytest.approx(by_hand)
