"""SNN(T=1, N=L) equals the QANN bit for bit on every supported family; inputs stay untouched."""

import copy
import math

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

from multispike.convert import (
    build_qann,
    calibrate,
    conversion_report,
    cumulative_mean,
    quantizers,
    to_snn,
)

# name -> (create_model kwargs, input size); kwargs only shrink the models, families stay intact
TIMM_FAMILIES = {
    "resnet18": ({}, 32),
    "resnet50": ({}, 32),  # bottlenecks, 1x1 downsample shortcut
    "vgg11_bn": ({"mlp_ratio": 1 / 64}, 32),  # ConvMlp head branches on input size
    "regnetx_002": ({}, 32),  # timm BatchNormAct2d (traced through, folded)
    "mobilenetv2_100": ({}, 32),  # ReLU6, linear residual joins stay analog
}


class ReusedAndFunctional(nn.Module):
    """One nn.ReLU called twice, F.relu, torch.relu and .relu() on the signal path."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.conv2(x))
        y = F.relu(y + x)
        y = torch.relu(self.conv2(y)).relu()
        return self.fc(F.adaptive_avg_pool2d(F.max_pool2d(y, 2), 1).flatten(1))


def _randomize_bn(model: nn.Module) -> None:
    """Non-trivial running statistics, so that BN folding is exercised."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)


def _assert_exact(model: nn.Module, size: int, levels: int = 4, per_channel: bool = False):
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    calib = [torch.randn(4, 3, size, size) for _ in range(2)]
    qann = calibrate(model, calib, levels=levels, per_channel=per_channel, progress=False)
    snn = to_snn(qann, timesteps=1)
    x = torch.randn(3, 3, size, size)
    with torch.no_grad():
        q, s = qann(x), snn(x)
    assert s.shape == (1, *q.shape)
    assert torch.equal(s[0], q)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the user's model is untouched
    return qann, snn


@pytest.mark.parametrize("name", list(TIMM_FAMILIES))
def test_timm_family_exact_at_t1(name):
    kwargs, size = TIMM_FAMILIES[name]
    model = timm.create_model(name, num_classes=10, **kwargs)
    with torch.no_grad():
        _randomize_bn(model)
    qann, snn = _assert_exact(model, size)
    report = conversion_report(snn)
    assert report.layers and report.folded_batchnorm
    assert all(e.max_spikes == 4 for e in report.layers)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", ["resnet18", "ms_airbench_relu"])
def test_exact_at_t1_with_any_thread_count_and_deterministic_kernels(name, threads):
    """The SNN's first step evaluates the quantizer's own floating-point expression on the
    same convolution outputs, so exactness does not depend on how the kernels split or order
    their sums: checked with 1 and 2 intra-op threads and torch's deterministic algorithms."""
    import multispike.zoo  # noqa: F401  (registers ms_airbench_relu)

    saved = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        model = timm.create_model(name, num_classes=10)
        with torch.no_grad():
            _randomize_bn(model)
        _assert_exact(model, 32)
    finally:
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1])


def test_reused_and_functional_relus_each_get_a_quantizer():
    model = ReusedAndFunctional()
    with torch.no_grad():
        _randomize_bn(model)
    qann, snn = _assert_exact(model, 16, levels=8, per_channel=True)
    sources = [e.source for e in conversion_report(qann).layers]
    assert sources == [
        "nn.ReLU relu",
        "nn.ReLU relu (reused)",
        "F.relu() in forward",
        "F.relu() in forward",
        ".relu() in forward",
    ]
    assert len({e.path for e in conversion_report(qann).layers}) == 5
    assert conversion_report(qann).max_pool  # noted as exact at T=1 only


def test_gradients_and_exactness_hold_in_training_mode():
    qann = calibrate(ReusedAndFunctional(), [torch.randn(4, 3, 16, 16)], levels=4, progress=False)
    snn = to_snn(qann)
    x = torch.randn(2, 3, 16, 16)
    qann.train(), snn.train()
    q, s = qann(x), snn(x)[0]
    assert torch.equal(q, s)
    s.sum().backward()
    assert all(n.threshold.grad is not None for n in snn.modules() if hasattr(n, "max_spikes"))


def test_binary_snn_converges_to_clipped_relu_network_as_t_grows():
    """N = 1: the mean output over T steps approaches the λ-clipped (L → ∞) network."""
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5),
    )  # fmt: skip
    qann = calibrate(model.eval(), [torch.randn(16, 3, 8, 8)], levels=8, progress=False)
    clipped = copy.deepcopy(qann)
    for q in quantizers(clipped).values():
        q.levels = 1 << 14  # same λ, (nearly) continuous: clip(z, 0, λ)
    x = torch.randn(64, 3, 8, 8)
    with torch.no_grad():
        target = clipped(x)
        errors = [
            (cumulative_mean(to_snn(qann, max_spikes=1, timesteps=t)(x))[-1] - target).abs().mean()
            for t in (4, 16, 64)
        ]
    assert errors[0] > errors[1] > errors[2]


def test_sequence_input_and_per_call_timesteps():
    qann = calibrate(ReusedAndFunctional(), [torch.randn(4, 3, 16, 16)], levels=2, progress=False)
    snn = to_snn(qann, max_spikes=1, timesteps=3)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        static = snn(x)
        assert static.shape == (3, 2, 5)
        assert torch.equal(snn(x.expand(3, -1, -1, -1, -1)), static)  # same frame every step
        assert snn(x, timesteps=5).shape == (5, 2, 5)
    with pytest.raises(ValueError, match="expected input"):
        snn(torch.randn(3, 16, 16))
    with pytest.raises(ValueError, match="4 frames but the network runs 2 steps"):
        snn(torch.randn(4, 2, 3, 16, 16), timesteps=2)
    with pytest.raises(ValueError, match="4 frames but the network runs 3 steps"):
        snn(torch.randn(4, 2, 3, 16, 16))  # frames other than T: only when asked for
    assert snn(torch.randn(4, 2, 3, 16, 16), timesteps=4).shape == (4, 2, 5)


def test_mse_calibration_and_structure_only_build():
    model = ReusedAndFunctional().eval()
    calib = [torch.randn(8, 3, 16, 16)]
    pct = calibrate(model, calib, levels=4, progress=False)
    mse = calibrate(model, calib, levels=4, method="mse", progress=False)
    per_channel = calibrate(model, calib, levels=4, method="mse", per_channel=True, progress=False)
    for q in quantizers(per_channel).values():  # each channel's λ minimises its own error
        assert q.threshold.dim() == 1 and (q.threshold > 0).all()
    lam_pct = [e.threshold_mean for e in conversion_report(pct).layers]
    lam_mse = [e.threshold_mean for e in conversion_report(mse).layers]
    assert lam_pct != lam_mse and all(v > 0 for v in lam_mse)
    bare = build_qann(model, 4, input_shape=(3, 16, 16))
    assert all(e.threshold_mean == 1.0 for e in conversion_report(bare).layers)
    bare.load_state_dict(mse.state_dict())  # same structure, same names
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(bare(x), mse(x))
    with pytest.raises(ValueError, match="method"):
        calibrate(model, calib, method="max", progress=False)
    with pytest.raises(ValueError, match="yielded no batch"):
        from multispike.convert import calibrate_thresholds

        calibrate_thresholds(bare, [], progress=False)


def test_report_is_printable_and_json():
    import json

    qann = calibrate(ReusedAndFunctional(), [torch.randn(4, 3, 16, 16)], levels=4, progress=False)
    report = conversion_report(to_snn(qann, max_spikes=2, timesteps=4))
    text = str(report)
    assert "5 activation sites" in text and "N=2 spikes/step, T=4" in text
    data = json.loads(report.to_json())
    assert data["levels"] == 4 and data["max_spikes"] == 2 and data["timesteps"] == 4
    assert data["folded_batchnorm"] == [["conv1", "bn1"]]
    assert len(data["layers"]) == 5


def test_calibration_accepts_a_one_shot_generator():
    model = ReusedAndFunctional().eval()
    batches = [torch.randn(4, 3, 16, 16) for _ in range(3)]
    from_list = calibrate(model, batches, levels=4, progress=False)
    from_generator = calibrate(model, (b for b in batches), levels=4, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(
        from_list.state_dict().values(), from_generator.state_dict().values(), strict=True
    ))  # fmt: skip


def test_folded_layers_stay_trainable():
    qann = calibrate(ReusedAndFunctional(), [torch.randn(4, 3, 16, 16)], levels=4, progress=False)
    assert qann.get_submodule("conv1").bias is not None  # BN folded into conv1
    assert all(p.requires_grad for p in qann.parameters())


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("per_channel", [True, False])
def test_subsampled_percentile_equals_the_straightforward_table(per_channel, layout):
    """λ from the sampler's gathered columns equals the percentile of the same random columns
    cut from the whole (channels × sample·position) table, built the slow, obvious way, in
    either memory layout."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()).eval()
    batches = [torch.randn(6, 3, 64, 64).contiguous(memory_format=layout) for _ in range(2)]
    qann = calibrate(model, batches, levels=4, per_channel=per_channel, progress=False)
    generator = torch.Generator().manual_seed(0)  # calibrate's default seed
    with torch.no_grad():
        chunks = []
        for x in batches:
            y = model(x)
            table = y.transpose(0, 1).reshape(4, -1) if per_channel else y.reshape(1, -1)
            keep = (1 << 16) // table.shape[0]
            if table.shape[1] > keep:
                table = table[:, torch.randint(table.shape[1], (keep,), generator=generator)]
            chunks.append(table)
    values = torch.cat(chunks, dim=1)
    k = math.ceil(0.999 * values.shape[1])
    expected = values.kthvalue(k, dim=1).values
    (q,) = quantizers(qann).values()
    assert torch.equal(q.threshold.detach().reshape(-1), expected)


class SharedPreActivation(nn.Module):
    """A conv output read twice (by a ReLU and by an addition): nothing may overwrite it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        y = self.conv(x)
        return self.fc(F.adaptive_avg_pool2d(F.relu(F.relu(y) + y), 1).flatten(1))


def _allocating_copy(snn):
    """The same SNN with every neuron and join writing new tensors."""
    import operator

    from multispike.convert.signals import add_into

    ref = copy.deepcopy(snn)
    for m in ref.modules():
        if hasattr(m, "inplace"):
            m.inplace = False
    for node in ref.net.graph.nodes:
        if node.target is add_into:
            node.target = operator.add
    ref.net.recompile()
    return ref


@pytest.mark.parametrize("name", ["ms_resnet20", "resnet18", "shared"])
def test_in_place_neurons_and_joins_give_the_allocating_values(name):
    from multispike.convert.signals import add_into
    from multispike.zoo import load_model

    model = SharedPreActivation() if name == "shared" else load_model(name, num_classes=10)
    qann = calibrate(model.eval(), [torch.randn(4, 3, 32, 32)], levels=4, per_channel=True,
                     progress=False)  # fmt: skip
    snn = to_snn(qann)
    neurons = [m for m in snn.modules() if hasattr(m, "inplace")]
    joins = [n for n in snn.net.graph.nodes if n.target is add_into]
    if name == "shared":  # the conv output has two readers; the join's output has one
        assert [m.inplace for m in neurons] == [False, True] and not joins
    else:  # every neuron reads a fresh conv or join output; every join adds into a conv output
        assert all(m.inplace for m in neurons) and joins
    ref = _allocating_copy(snn)
    x = torch.randn(3, 3, 32, 32)
    kept = x.clone()
    with torch.no_grad():
        assert torch.equal(snn(x)[0], qann(x))
        for n, t in ((4, 1), (1, 3), (2, 2)):
            fast, slow = to_snn(qann, max_spikes=n, timesteps=t), to_snn(qann, max_spikes=n)
            assert torch.equal(fast(x), _allocating_copy(slow)(x, timesteps=t))
    assert torch.equal(x, kept)  # the input is never overwritten
    snn.train(), ref.train()  # under autograd: same outputs and gradients
    for net in (snn, ref):
        net(x).square().sum().backward()
    for a, b in zip(snn.parameters(), ref.parameters(), strict=True):
        assert torch.equal(a.grad, b.grad)


def test_add_into_writes_only_where_the_result_fits():
    from multispike.convert.signals import add_into

    a, b = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    expected = a + b
    out = add_into(a, b)
    assert out is a and torch.equal(out, expected)  # written into a
    small, big = torch.randn(2, 3, 1, 1), torch.randn(2, 3, 4, 4)
    kept = small.clone()
    assert torch.equal(add_into(small, big), kept + big) and torch.equal(small, kept)
    half = torch.randn(2, 3, dtype=torch.bfloat16)
    full = torch.randn(2, 3)
    out = add_into(half, full)  # promotion: a new float32 tensor, half untouched
    assert out.dtype == torch.float32 and torch.equal(out, half + full)
