import pytest
import torch

from multispike.convert import MultiLevelQuantizer, quantize


def reference(z: torch.Tensor, lam: float, levels: int) -> torch.Tensor:
    """docs/method.md §2 written out in float64."""
    z = z.double()
    return (lam / levels) * torch.clamp(torch.floor(z * levels / lam + 0.5), 0, levels)


@pytest.mark.parametrize("levels", [1, 2, 4, 8, 16])
def test_quantize_matches_formula(levels):
    z = torch.linspace(-2, 4, 1001)
    out = quantize(z, torch.tensor(2.0), levels)
    torch.testing.assert_close(out.double(), reference(z, 2.0, levels), rtol=0, atol=1e-6)
    assert set((out * levels / 2.0).round().unique().tolist()) <= set(range(levels + 1))


def test_quantize_rounds_half_up_and_clips():
    lam, levels = torch.tensor(1.0), 4
    z = torch.tensor([-1.0, 0.1249, 0.125, 0.5, 0.99, 1.0, 7.0])
    assert quantize(z, lam, levels).tolist() == [0.0, 0.0, 0.25, 0.5, 1.0, 1.0, 1.0]


def test_per_channel_threshold_broadcasts_over_channel_dim():
    lam = torch.tensor([1.0, 2.0, 4.0])
    z = torch.full((2, 3, 4, 4), 3.0)
    out = quantize(z, lam, 4)
    assert out[:, 0].eq(1.0).all() and out[:, 1].eq(2.0).all() and out[:, 2].eq(3.0).all()
    flat = quantize(torch.full((5, 3), 3.0), lam, 4)
    assert flat[0].tolist() == [1.0, 2.0, 3.0]


def test_straight_through_gradients():
    lam = torch.tensor(2.0, requires_grad=True)
    z = torch.tensor([-1.0, 0.3, 1.1, 1.9, 3.0], requires_grad=True)
    quantize(z, lam, 4).sum().backward()
    # identity gradient for 0 <= z <= λ (QCFS), flat outside
    assert z.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]
    # dλ = s/L − z/λ inside the window, 1 above it, 0 below
    zd = z.detach()
    s = torch.clamp(torch.floor(zd * 4 / 2.0 + 0.5), 0, 4)
    inside = (zd >= 0) & (zd <= 2.0)
    expected = torch.where(inside, s / 4 - zd / 2.0, (zd > 2.0).float()).sum()
    torch.testing.assert_close(lam.grad, expected)


def test_grad_and_inference_paths_are_bit_identical():
    z = torch.randn(4, 8, 5, 5) * 3
    lam = torch.rand(8) + 0.1
    fast = quantize(z, lam, 8)
    slow = quantize(z, lam.clone().requires_grad_(), 8).detach()
    assert torch.equal(fast, slow)
    assert z.requires_grad is False and torch.equal(z, z.clone())  # input not modified


def test_quantizer_module_observing_mode_and_errors():
    q = MultiLevelQuantizer(4, num_channels=3, threshold=1.0, ceiling=6.0)
    z = torch.randn(2, 3, 4, 4) * 10
    q.observing = True
    assert torch.equal(q(z), z.clamp(0, 6))
    q.observing = False
    assert torch.equal(q(z), quantize(z, q.threshold, 4))
    assert q.per_channel and "levels=4" in repr(q)
    with pytest.raises(ValueError, match="levels"):
        MultiLevelQuantizer(0)


def test_mse_threshold_is_chosen_per_channel():
    from multispike.convert.calibrate import _mse_threshold

    values = torch.stack([torch.rand(4000) * 1.0, torch.rand(4000) * 5.0])  # (C, n)
    lam = _mse_threshold(values, levels=4)
    assert lam.shape == (2,)
    assert 0.7 < lam[0] <= 1.0 and 3.5 < lam[1] <= 5.0  # uniform data: λ near each max
    for c in range(2):  # no other candidate of the same grid does better
        err = (values[c] - quantize(values[c], lam[c], 4)).pow(2).mean()
        other = (values[c] - quantize(values[c], lam[c] * 0.8, 4)).pow(2).mean()
        assert err <= other
