"""TTFS code: bit-identical to the QANN, one spike per neuron at most, hand-checked times."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

import multispike.zoo  # noqa: F401  (registers the zoo models)
from multispike.convert import calibrate, quantizers, to_ttfs


def test_spike_times_by_hand():
    net = nn.Sequential(nn.Linear(4, 4, bias=False), nn.ReLU(), nn.Linear(4, 2)).eval()
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(4))
    qann = calibrate(net, [torch.rand(8, 4)], levels=4, progress=False)
    (quant,) = quantizers(qann).values()
    quant.threshold.data.fill_(1.0)  # λ = 1, L = 4: k = clip(floor(4z + 1/2), 0, 4)
    ttfs = to_ttfs(qann)
    (neuron,) = ttfs.neurons().values()
    neuron.record = True
    x = torch.tensor([[0.3, 0.9, 0.05, 2.0]])  # k = 1, 4, 0, 4
    with torch.no_grad():
        logits = ttfs(x)
    assert neuron.spike_times.tolist() == [[3, 0, 4, 0]]  # t = L − k; 4 = silent
    assert torch.equal(logits, qann(x))
    assert ttfs.events(x).tolist() == [3]
    assert (ttfs.depth, ttfs.latency_steps) == (1, 4)


@pytest.mark.parametrize(
    ("name", "shape", "levels", "per_channel"),
    [("ms_resnet20", (3, 32, 32), 4, True), ("ms_resnet20", (3, 32, 32), 8, False),
     ("resnet18", (3, 64, 64), 4, True)],
)  # fmt: skip
def test_ttfs_logits_equal_the_qann_and_fire_at_most_once(name, shape, levels, per_channel):
    x = torch.randn(6, *shape, generator=torch.Generator().manual_seed(0))
    model = timm.create_model(name).eval()
    qann = calibrate(model, [x], levels=levels, per_channel=per_channel, progress=False)
    before = {k: v.clone() for k, v in qann.state_dict().items()}
    ttfs = to_ttfs(qann)
    with torch.no_grad():
        assert torch.equal(ttfs(x), qann(x))
        # one spike per non-zero activation, none for a zero: count the QANN's levels
        nonzero = []
        hooks = [q.register_forward_hook(lambda m, a, out: nonzero.append(out.flatten(1)))
                 for q in quantizers(qann).values()]  # fmt: skip
        qann(x)
        for h in hooks:
            h.remove()
        expected = sum(torch.count_nonzero(v, dim=1) for v in nonzero)
        events = ttfs.events(x)
    neurons = sum(v.shape[1] for v in nonzero)
    assert torch.equal(events, expected) and (events > 0).all() and (events < neurons).all()
    assert all(torch.equal(v, qann.state_dict()[k]) for k, v in before.items())
    if name == "ms_resnet20":  # stem + 9 blocks × 2 neuron layers on the longest path
        assert ttfs.depth == 19 and ttfs.latency_steps == 19 * levels


def test_to_ttfs_refuses_a_float_model():
    with pytest.raises(TypeError, match="calibrate"):
        to_ttfs(torch.fx.symbolic_trace(nn.Sequential(nn.Linear(2, 2), nn.ReLU())))
