"""NeuroBench's harness counts a converted SNN as multispike does, where the definitions agree."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from multispike.convert import calibrate, neurons, to_snn
from multispike.distill.metrics import ActivityMonitor
from multispike.pipelines.evaluation.neurobench import neurobench_metrics

pytest.importorskip(
    "neurobench", reason="needs the neurobench extra: pip install -e '.[neurobench]'"
)


def _network() -> nn.Module:
    """2 → 3 → 2, every weight non-zero (NeuroBench skips zero weights, multispike does not)."""
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2)).eval()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.5], [0.5, 1.0], [-1.0, 1.0]]))
        net[0].bias.zero_()
        net[2].weight.copy_(torch.tensor([[1.0, -1.0, 0.5], [-1.0, 1.0, 0.5]]))
    return net


@pytest.mark.parametrize("levels", [1, 4])
def test_neurobench_counts_equal_multispike_and_a_hand_count(levels):
    x = torch.tensor([[1.0, 0.2], [0.1, 2.0], [0.5, 0.5], [3.0, 1.0], [0.3, 0.9]])
    y = torch.tensor([0, 1, 1, 0, 1])
    snn = to_snn(calibrate(_network(), [x], levels=levels, progress=False), max_spikes=levels)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=2)
    got = neurobench_metrics(snn, loader)

    hidden = []
    handle = neurons(snn.net)["1"].register_forward_hook(lambda m, a, out: hidden.append(out))
    with ActivityMonitor(snn) as monitor, torch.no_grad():
        logits = snn(x)[-1]
    handle.remove()
    ours = monitor.compute()["total"]
    events = torch.count_nonzero(hidden[0]).item()
    assert 0 < events < hidden[0].numel()  # some neurons fire, some do not
    # by hand, per sample: 2 analog inputs × 3 synapses (all non-zero), events × 2 synapses
    assert ours["macs"] == pytest.approx(6.0)
    assert ours["synops"] == pytest.approx(events * 2 / 5)
    # NeuroBench files the events' ops as MACs: they carry k·q, not unit spikes
    assert got["Effective_ACs"] == 0
    assert got["Effective_MACs"] == pytest.approx(ours["macs"] + ours["synops"])
    assert got["Dense"] == pytest.approx(6 + 6)
    assert got["ActivationSparsity"] == pytest.approx(ours["activation_sparsity"])
    assert got["ActivationSparsity"] == pytest.approx(1 - events / hidden[0].numel())
    assert got["MembraneUpdates"] == 0  # NeuroBench reads snnTorch neurons' `mem` only
    assert got["ClassificationAccuracy"] == pytest.approx((logits.argmax(-1) == y).float().mean())
    assert got["Footprint"] == sum(p.numel() * 4 for p in snn.parameters()) + sum(
        b.numel() * b.element_size() for b in snn.buffers()
    )
    assert got["ConnectionSparsity"] == 0


def test_neurobench_metrics_refuses_a_plain_module():
    with pytest.raises(TypeError, match="SpikingNetwork"):
        neurobench_metrics(_network(), [])
