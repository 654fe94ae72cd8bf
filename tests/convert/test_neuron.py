import pytest
import torch

from multispike.convert import MultiLevelIFNeuron, if_neuron, quantize


def reference_if(x_seq: torch.Tensor, lam: float, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """docs/method.md §3 literally: membrane in volts, v(0) = q/2, soft reset; float64."""
    q = lam / n
    v = torch.full_like(x_seq[0], q / 2, dtype=torch.float64)
    outs, counts = [], []
    for x in x_seq.double():
        v = v + x
        s = torch.clamp(torch.floor(v / q), 0, n)
        v = v - q * s
        outs.append(q * s)
        counts.append(s)
    return torch.stack(outs), torch.stack(counts)


@pytest.mark.parametrize("n,steps", [(1, 1), (1, 8), (4, 1), (4, 5), (8, 3)])
def test_neuron_follows_the_design_equations(n, steps):
    x = torch.randn(steps, 3, 7) * 0.8 + 0.3
    out = if_neuron(x, torch.tensor(1.5), n)
    ref, counts = reference_if(x, 1.5, n)
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=1e-5)
    assert out.shape == x.shape
    assert counts.max() <= n and counts.min() >= 0


def test_first_step_is_the_quantizer_bit_for_bit():
    x = torch.randn(1, 6, 4, 9, 9) * 2
    lam = torch.rand(4) + 0.2
    assert torch.equal(if_neuron(x, lam, 8)[0], quantize(x[0], lam, 8))


def test_binary_neuron_rate_approaches_quantized_value():
    x = torch.rand(1, 1000) * 1.2  # constant input current
    lam = torch.tensor(1.0)
    target = torch.clamp(x[0], 0, 1.0)
    errors = []
    for steps in (4, 16, 64):
        rate = if_neuron(x.expand(steps, -1), lam, 1).mean(0)
        errors.append((rate - target).abs().mean().item())
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.02


def test_module_unrolls_time_flattened_batch_and_resets_state():
    neuron = MultiLevelIFNeuron(2, torch.tensor(1.0))
    neuron.timesteps = 3
    x_seq = torch.rand(3, 4, 5)
    flat = x_seq.reshape(12, 5)
    first = neuron(flat)
    assert torch.equal(first.reshape(3, 4, 5), if_neuron(x_seq, neuron.threshold.detach(), 2))
    assert torch.equal(neuron(flat), first)  # membrane starts from rest at every call
    with pytest.raises(RuntimeError, match="multiple of timesteps"):
        neuron(torch.rand(7, 5))
    with pytest.raises(ValueError, match="max_spikes"):
        MultiLevelIFNeuron(0)


def test_gradients_reach_threshold_through_time():
    neuron = MultiLevelIFNeuron(4, torch.tensor(1.0))
    neuron.timesteps = 4
    x = (torch.rand(16, 8) * 2).requires_grad_()
    neuron(x).sum().backward()
    assert neuron.threshold.grad is not None and neuron.threshold.grad.abs() > 0
    assert x.grad.abs().sum() > 0
