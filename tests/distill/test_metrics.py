"""Spike activity, synaptic operations and per-step accuracy against hand counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from multispike.convert import calibrate, to_snn
from multispike.distill.metrics import (
    ActivityMonitor,
    SpikeActivity,
    StepAccuracy,
    StepAgreement,
    SynapticOperations,
    count_nonzero,
    exact_sum,
    spike_counts,
    spike_inputs,
    step_accuracy,
)
from multispike.distill.metrics.energy import fanout


class Tiny(nn.Module):
    """Analog conv (stride 2, pad 1) → grouped conv → max-pool → flatten → linear → linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, stride=2, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1, groups=2, bias=False)
        self.relu2 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(24, 8)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc2(self.relu3(self.fc1(torch.flatten(self.pool(x), 1))))


class AvgHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2, 2)

    def forward(self, x):
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))


def _conv_synops_by_hand(x: torch.Tensor, conv: nn.Conv2d) -> int:
    """Σ over outputs of the non-zero inputs inside each receptive field (explicit loops)."""
    _, cin, h, w = x.shape
    cout = conv.out_channels
    (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    per_group_in, per_group_out = cin // conv.groups, cout // conv.groups
    total = 0
    for b in range(x.shape[0]):
        for o in range(cout):
            g = o // per_group_out
            for i in range(ho):
                for j in range(wo):
                    for c in range(g * per_group_in, (g + 1) * per_group_in):
                        for di in range(kh):
                            for dj in range(kw):
                                y, z = i * sh - ph + di, j * sw - pw + dj
                                if 0 <= y < h and 0 <= z < w and x[b, c, y, z] != 0:
                                    total += 1
    return total


def test_fanout_counts_receptive_fields_exactly():
    same = nn.Conv2d(1, 1, 3, padding=1)
    f = fanout(same, (1, 4, 4))[0]
    assert f[0, 0] == 4 and f[0, 1] == 6 and f[1, 1] == 9
    strided = nn.Conv2d(1, 5, 3, stride=2, padding=1)  # outputs cover 2o-1..2o+1
    row = torch.tensor([1.0, 2.0, 1.0, 1.0])
    assert torch.equal(fanout(strided, (1, 4, 4))[0], 5 * torch.outer(row, row))
    grouped = nn.Conv2d(4, 6, 1, groups=2)  # each input channel feeds 3 outputs
    assert torch.equal(fanout(grouped, (4, 2, 2)), torch.full((4, 2, 2), 3.0))
    assert torch.equal(fanout(nn.Linear(7, 5), (7,)), torch.full((7,), 5.0))
    with pytest.raises(TypeError, match="Conv1d/2d/3d or Linear"):
        fanout(nn.ReLU(), (3,))


def test_spike_inputs_follow_the_graph():
    x = torch.rand(8, 2, 8, 8)
    snn = to_snn(calibrate(Tiny(), [x], levels=4, progress=False))
    assert spike_inputs(snn.net) == {"conv1": False, "conv2": True, "fc1": True, "fc2": True}
    avg = to_snn(calibrate(AvgHead(), [torch.rand(4, 1, 5, 5)], levels=2, progress=False))
    assert spike_inputs(avg.net) == {"conv": False, "fc": False}


@pytest.mark.parametrize(("max_spikes", "timesteps"), [(4, 1), (2, 3), (1, 4)])
def test_monitor_matches_hand_counts(max_spikes, timesteps):
    model = Tiny()
    x = torch.randn(3, 2, 8, 8)
    snn = to_snn(calibrate(model, [x], levels=4, progress=False), max_spikes, timesteps)
    seen: dict[str, torch.Tensor] = {}

    def keep(name):
        def hook(module, args, output):
            seen[name] = args[0].detach().clone()
            seen[name + ".out"] = output.detach().clone()

        return hook

    for name in ("conv1", "conv2", "fc1", "fc2", "relu1", "relu2", "relu3"):
        snn.net.get_submodule(name).register_forward_hook(keep(name))
    with ActivityMonitor(snn) as monitor:
        snn(x)
    result = monitor.compute()
    batch = x.shape[0]

    # synaptic operations: loops over receptive fields, events = non-zero inputs
    conv2 = snn.net.get_submodule("conv2")
    assert (
        result["synapses"]["conv2"]["synops"] == _conv_synops_by_hand(seen["conv2"], conv2) / batch
    )
    for fc in ("fc1", "fc2"):
        out_features = snn.net.get_submodule(fc).out_features
        assert (
            result["synapses"][fc]["synops"] == (seen[fc] != 0).sum().item() * out_features / batch
        )
        assert result["synapses"][fc]["macs"] == 0
    # analog first layer: every non-padding input × weight at every step; per dimension
    # the stride-2 windows of 8 inputs hold 4·3 − 1 (padded) = 11 real ones: 11²·2·4 = 968
    dense = _conv_synops_by_hand(torch.ones(1, 2, 8, 8), snn.net.get_submodule("conv1"))
    assert dense == 968
    assert result["synapses"]["conv1"]["macs"] == dense  # static image: computed once
    assert result["synapses"]["conv1"]["synops"] == 0

    # activity from the neurons' outputs
    events_total = 0.0
    for name in ("relu1", "relu2", "relu3"):
        neuron = snn.net.get_submodule(name)
        q = neuron.threshold.detach() / max_spikes
        counts = torch.round(seen[name + ".out"] / q).reshape(timesteps, batch, -1)
        assert torch.allclose(counts * q, seen[name + ".out"].reshape(timesteps, batch, -1))
        assert counts.min() >= 0 and counts.max() <= max_spikes
        per_neuron = counts.shape[2]
        events = (counts > 0).sum().item()
        got = result["neurons"][name]
        assert got["events_per_neuron_step"] == pytest.approx(
            events / (timesteps * batch * per_neuron)
        )
        assert got["mean_payload"] == pytest.approx(counts.sum().item() / max(events, 1))
        silent = (counts.sum(0) == 0).sum().item()
        assert got["silent_fraction"] == pytest.approx(silent / (batch * per_neuron))
        assert got["membrane_updates_per_sample"] == timesteps * per_neuron
        if max_spikes == 1:
            assert events == 0 or got["mean_payload"] == 1.0
        events_total += events
    assert result["total"]["events"] == pytest.approx(events_total / batch)
    assert result["total"]["membrane_updates"] == timesteps * (64 + 96 + 8)
    # only this test's own hook is left on each neuron
    assert not monitor.handles and all(len(m._forward_hooks) == 1 for m in monitor.neurons.values())
    with ActivityMonitor(snn) as frames:
        snn(torch.randn(timesteps, batch, 2, 8, 8))  # a new frame at every step
    assert frames.compute()["synapses"]["conv1"]["macs"] == timesteps * dense


def test_multilevel_single_step_counts_are_the_qann_levels():
    """At T = 1, N = L a neuron's spike count is the QANN level floor(z·L/λ + 1/2) clipped."""
    x = torch.randn(4, 2, 8, 8)
    qann = calibrate(Tiny(), [x], levels=4, progress=False)
    levels = {}

    def grab(module, args, output):
        levels["relu2"] = (output / (module.threshold / module.levels)).round().sum()

    qann.get_submodule("relu2").register_forward_hook(grab)
    qann(x)
    snn = to_snn(qann)
    with ActivityMonitor(snn) as monitor:
        snn(x)
    payload = monitor.compute()["neurons"]["relu2"]["spikes_per_neuron_step"] * 4 * 96
    assert payload == pytest.approx(levels["relu2"].item())


def test_monitor_accumulates_resets_and_rejects_bad_input():
    x = torch.randn(4, 2, 8, 8)
    snn = to_snn(calibrate(Tiny(), [x], levels=4, progress=False))
    monitor = ActivityMonitor(snn).attach()
    snn(x[:2])
    snn(x[2:])
    split = monitor.compute()
    monitor.reset()
    snn(x)
    whole = monitor.compute()
    monitor.remove()
    assert split["total"]["synops"] == pytest.approx(whole["total"]["synops"])
    assert split["neurons"]["relu1"] == pytest.approx(whole["neurons"]["relu1"])
    with pytest.raises(TypeError, match="SpikingNetwork"):
        ActivityMonitor(nn.Linear(2, 2))
    monitor.reset()
    with pytest.raises(RuntimeError, match="no forward pass"):
        monitor.compute()


def test_spike_activity_on_hand_made_counts():
    counts = torch.tensor([[[0.0, 2.0, 0.0]], [[1.0, 3.0, 0.0]]])  # (T=2, B=1, 3 neurons)
    metric = SpikeActivity()
    metric.update(counts)
    values = metric.compute()
    assert values["events_per_neuron_step"] == pytest.approx(3 / 6)
    assert values["mean_payload"] == pytest.approx(6 / 3)
    assert values["silent_fraction"] == pytest.approx(1 / 3)
    assert values["activation_sparsity"] == pytest.approx(0.5)
    per_layer = spike_counts(torch.tensor([[0.5, 1.0]]), torch.tensor(2.0), 4, 1)
    assert torch.equal(per_layer, torch.tensor([[[1.0, 2.0]]]))
    per_channel = spike_counts(torch.tensor([[1.0, 1.0]]), torch.tensor([2.0, 4.0]), 4, 1)
    assert torch.equal(per_channel, torch.tensor([[[2.0, 1.0]]]))


def test_exact_sum_and_count_nonzero_match_integer_arithmetic():
    """Chunked float32 sums stay exact where one float32 sum of the tensor is not."""
    g = torch.Generator().manual_seed(0)
    big = torch.randint(0, 256, (3, 40, 300, 300), generator=g)  # 10.8 M values up to 255
    truth = int(big.sum())
    assert truth > 2**24 and float(big.float().sum()) != truth  # the naive sum rounds
    for layout in (big.float(), big.float().contiguous(memory_format=torch.channels_last),
                   big.float()[:, ::3], -big.float()):  # fmt: skip
        expected = int(layout.to(torch.int64).sum())
        assert exact_sum(layout).item() == expected
        assert count_nonzero(layout).item() == int((layout.to(torch.int64) != 0).sum())
    assert exact_sum(torch.zeros(0)).item() == 0


def test_synops_are_exact_in_any_memory_layout():
    """Σ [x ≠ 0] · fanout of a conv, by integer arithmetic, in NCHW, NHWC and a strided view."""
    g = torch.Generator().manual_seed(1)
    conv = nn.Conv2d(64, 128, 3, stride=2, padding=1)
    spikes = torch.randint(0, 3, (16, 64, 56, 56), generator=g).float()
    fan = fanout(conv, (64, 56, 56))
    expected = int(((spikes != 0).to(torch.int64) * fan.to(torch.int64)).sum())
    for x in (spikes, spikes.contiguous(memory_format=torch.channels_last)):
        metric = SynapticOperations()
        metric.update(x, fan, spiking=True)
        assert metric.synops.item() == expected
    wide = torch.zeros(16, 64, 56, 112)
    wide[..., ::2] = spikes
    metric = SynapticOperations()
    metric.update(wide[..., ::2], fan, spiking=True)  # not dense: copied, same count
    assert metric.synops.item() == expected
    assert metric.compute()["synops"].item() == expected / 16


def test_step_accuracy_uses_the_cumulative_mean():
    outputs = torch.tensor(
        [
            [[3.0, 2.0, 0.0], [1.0, 0.0, 2.0]],  # t=1: top-1 0, 2; top-2 {0,1}, {2,0}
            [[0.0, 5.0, 0.0], [0.0, 5.0, 2.0]],  # mean after 2: top-1 1, 1
        ]
    )
    target = torch.tensor([1, 1])
    assert torch.equal(step_accuracy(outputs, target), torch.tensor([0.0, 1.0]))
    assert torch.equal(step_accuracy(outputs, target, top_k=2), torch.tensor([0.5, 1.0]))
    metric = StepAccuracy(timesteps=2, top_k=2)
    metric.update(outputs, target)
    metric.update(outputs[:, :1], target[:1])
    assert torch.allclose(metric.compute(), torch.tensor([2 / 3, 1.0]))
    with pytest.raises(ValueError, match="timesteps=2"):
        metric.update(outputs[:1], target)
    with pytest.raises(ValueError, match=r"\(T, B=3, classes\)"):
        step_accuracy(outputs, torch.tensor([0, 1, 2]))


def test_step_accuracy_breaks_ties_like_torchmetrics():
    """Spiking output layers tie; top-1 takes the lowest tied class, as argmax does."""
    from torchmetrics.functional.classification import multiclass_accuracy

    outputs = torch.tensor([[[2.0, 2.0, 0.0], [0.0, 1.0, 1.0], [1.0, 1.0, 1.0]]])  # (1, 3, 3)
    for target in ([0, 1, 0], [1, 2, 2]):
        target = torch.tensor(target)
        expected = multiclass_accuracy(outputs[0], target, num_classes=3, average="micro")
        assert step_accuracy(outputs, target)[0] == pytest.approx(float(expected))
    assert step_accuracy(outputs, torch.tensor([0, 1, 0]))[0] == 1.0


def test_step_agreement_is_exact_at_one_step():
    x = torch.randn(4, 2, 8, 8)
    qann = calibrate(Tiny(), [x], levels=4, progress=False)
    agreement = StepAgreement(timesteps=1)
    agreement.update(to_snn(qann)(x), qann(x))
    values = agreement.compute()
    assert values["agreement"].item() == 1.0  # torchmetrics squeezes (1,) to a scalar
    assert values["max_abs_logit_diff"].item() == 0.0
