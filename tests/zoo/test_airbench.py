"""The airbench-layout zoo nets: patch whitening against its definition."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from multispike.zoo.airbench import patch_whitening

CHECKPOINTS = Path(__file__).resolve().parents[2] / "benchmarks" / "checkpoints"


def test_patch_whitening_decorrelates_the_patches_it_was_fitted_on():
    """With ``Σ = V diag(e) Vᵀ`` the whitened coordinates have second moments
    ``e / (e + ε)`` and no cross terms; the second half of the filters is the negated first."""
    generator = torch.Generator().manual_seed(0)
    mix = torch.randn(3, 3, generator=generator)
    images = torch.einsum("oc,nchw->nohw", mix, torch.randn(64, 3, 16, 16, generator=generator))
    eps = 5e-4
    filters = patch_whitening(images, kernel_size=2, eps=eps)
    assert filters.shape == (24, 3, 2, 2)
    assert torch.equal(filters[12:], -filters[:12])
    out = F.conv2d(images.double(), filters[:12].double()).permute(0, 2, 3, 1).reshape(-1, 12)
    moments = out.T @ out / len(out)
    patches = images.double().unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5)
    patches = patches.reshape(-1, 12)
    values = torch.linalg.eigvalsh(patches.T @ patches / len(patches)).flip(0)
    expected = torch.diag(values / (values + eps))
    # float32 filters: agreement to float32 precision, relative to the unit scale
    torch.testing.assert_close(moments, expected, atol=1e-4, rtol=0)


def test_weights_of_another_width_are_refused_naming_the_file(tmp_path):
    """A checkpoint of ms_airbench_relu_wide given to ms_airbench_relu: one clear error."""
    import timm
    from safetensors.torch import save_file

    import multispike.zoo  # noqa: F401
    from multispike.zoo import CheckpointError, load_model

    wide = timm.create_model("ms_airbench_relu_wide")
    path = tmp_path / "wide.safetensors"
    save_file({k: v.contiguous() for k, v in wide.state_dict().items()}, str(path))
    with pytest.raises(CheckpointError, match="wide.safetensors") as err:
        load_model("ms_airbench_relu", checkpoint=str(path))
    message = str(err.value)
    narrow = timm.create_model("ms_airbench_relu").state_dict()
    mismatched = sum(v.shape != narrow[k].shape for k, v in wide.state_dict().items())
    assert "\n" not in message and f"{mismatched} shape mismatches" in message
    assert f"… ({mismatched - 8} more)" in message and len(message) < 1000  # readable in a terminal


@pytest.mark.parametrize(
    ("name", "folder"),
    [
        ("ms_airbench_relu", "airbench_relu_cifar10"),
        ("ms_airbench_relu_wide", "airbench_relu_wide_cifar10"),
    ],  # fmt: skip
)
def test_pretrained_loads_the_committed_weights_bit_for_bit(name, folder):
    """``--pretrained true`` finds the networks trained by the cifar10-airbench recipes in the
    repository (benchmarks/checkpoints/, the wide one in parts), without the shared data."""
    from safetensors.torch import load

    from multispike.zoo import load_model, parts

    committed = CHECKPOINTS / folder / "model.safetensors"
    saved = load(parts.read_bytes(committed))
    model = load_model(name, pretrained=True)
    assert saved.keys() == model.state_dict().keys()
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("folder", ["airbench_snn_L4_N4_T1", "airbench_wide_snn_L4_N4_T1"])
def test_the_committed_one_step_snn_loads_and_is_its_qann(folder):
    """The distilled N = L = 4 SNNs of BENCHMARKS.md rebuild from their folders (the wide one's
    weights in parts) and compute their QANN bit for bit at T = 1."""
    from multispike.pipelines import load

    snn, qann = load(CHECKPOINTS / folder), load(CHECKPOINTS / folder, kind="qann")
    assert snn.timesteps == 1
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(snn(x)[0], qann(x))
