"""Residual joins: detection on timm/zoo families, sparse/SEW/analog rewiring, exactness, errors."""

import copy

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

import multispike.zoo  # noqa: F401  (registers ms_resnet20)
import multispike.zoo.sparse_resnet  # noqa: F401  (registers ms_sparse_*/ms_sew_*)
from multispike.convert import (
    ConversionError,
    MultiLevelIFNeuron,
    MultiLevelQuantizer,
    build_qann,
    calibrate,
    neurons,
    quantizers,
    to_snn,
)
from multispike.convert.graph import trace
from multispike.convert.residual import is_spike_stream, residual_joins, rewire_residual
from multispike.distill.metrics import spike_inputs


def _randomize_bn(model: nn.Module) -> nn.Module:
    """timm zero-inits the last BN of each block; make every branch carry signal."""
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data = torch.rand(m.weight.shape, generator=gen) + 0.5
            m.bias.data = torch.rand(m.bias.shape, generator=gen) * 0.4 - 0.2
            m.running_mean = torch.rand(m.running_mean.shape, generator=gen) * 0.2 - 0.1
            m.running_var = torch.rand(m.running_var.shape, generator=gen) + 0.5
    return model.eval()


# kwargs only narrow the models; the block structure of each family stays intact
SMALL = {"resnetv2_18": dict(channels=(8, 16, 32, 64), stem_chs=8)}


def _model(name: str) -> nn.Module:
    return _randomize_bn(timm.create_model(name, num_classes=10, **SMALL.get(name, {})))


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))


# name -> (joins, barrier of the first join or None)
FAMILIES = {
    "resnet18": (8, "layer1.0.act2"),  # post-activation: ReLU after every add
    "resnetv2_18": (8, None),  # pre-activation, BatchNorm (resnetv2_*_bit/_gn use GroupNorm)
    "mobilenetv2_100": (10, None),  # inverted residuals, linear joins
    "ms_resnet20": (9, "layer1.0.act2"),  # zoo CIFAR ResNet-20, option-A shortcuts
}


@pytest.mark.parametrize("name", FAMILIES)
def test_join_detection(name):
    count, first_barrier = FAMILIES[name]
    qann = build_qann(_model(name), 4, input_shape=(3, 32, 32))
    joins = residual_joins(qann)
    assert len(joins) == count
    assert joins[0].barrier == first_barrier
    assert all((j.barrier is None) == (first_barrier is None) for j in joins)
    assert all(j.block and j.name.startswith(j.block) for j in joins)


@pytest.mark.parametrize("name", [pytest.param("resnet18", marks=pytest.mark.slow), "ms_resnet20"])
def test_sparse_on_post_activation_is_bit_identical_at_t1(name, images):
    qann = calibrate(_model(name), [images], 4, progress=False)
    sparse = rewire_residual(qann, "sparse", [images], progress=False)
    assert set(quantizers(sparse)) == set(quantizers(qann))  # the ReLU already is the barrier
    plain_out, sparse_out = to_snn(qann)(images), to_snn(sparse)(images)
    assert torch.equal(plain_out, sparse_out)
    assert torch.equal(sparse_out[0], qann(images))
    assert sparse.meta["multispike"]["transforms"] == [{"name": "residual", "mode": "sparse"}]
    assert "transforms" not in qann.meta["multispike"]  # the input is untouched


@pytest.mark.parametrize(
    "name", ["resnetv2_18", pytest.param("mobilenetv2_100", marks=pytest.mark.slow)]
)
def test_sparse_adds_barriers_that_become_neurons(name, images):
    qann = calibrate(_model(name), [images], 4, progress=False)
    state = copy.deepcopy(qann.state_dict())
    sparse = rewire_residual(qann, "sparse", [images], progress=False)
    joins = residual_joins(sparse)
    assert joins and all(j.barrier == f"{j.block}.barrier" for j in joins)
    for path, lam in state.items():  # existing thresholds kept, input model untouched
        assert torch.equal(sparse.state_dict()[path], lam)
        assert torch.equal(qann.state_dict()[path], lam)
    barriers = [quantizers(sparse)[j.barrier] for j in joins]
    assert all(b.threshold.item() not in (0.0, 1.0) for b in barriers)  # calibrated
    snn = to_snn(sparse)
    assert {j.barrier for j in joins} <= set(neurons(snn.net))
    assert torch.equal(snn(images)[0], sparse(images))
    assert not torch.equal(sparse(images), qann(images))  # barriers clip: fine-tune after


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("resnet18", marks=pytest.mark.slow),
        "resnetv2_18",
        pytest.param("mobilenetv2_100", marks=pytest.mark.slow),
        "ms_resnet20",
    ],
)
def test_sew_sums_spikes_without_requantizing(name, images):
    qann = build_qann(_model(name), 4, input_shape=(3, 32, 32))
    sew = rewire_residual(qann, "sew")
    for join in residual_joins(sew):
        assert join.barrier is None
        assert all(is_spike_stream(sew, arg) for arg in join.inputs)
    snn = to_snn(sew)
    assert torch.equal(snn(images)[0], sew(images))


def test_sew_zoo_entry_is_what_the_transform_makes(images):
    plain = _randomize_bn(timm.create_model("ms_resnet20"))
    sew_net = timm.create_model("ms_sew_resnet20").eval()
    sew_net.load_state_dict(plain.state_dict())
    sparse_net = timm.create_model("ms_sparse_resnet20").eval()
    sparse_net.load_state_dict(plain.state_dict())
    qann = build_qann(plain, 4)
    assert torch.equal(rewire_residual(qann, "sew")(images), build_qann(sew_net, 4)(images))
    assert torch.equal(rewire_residual(qann, "sparse")(images), build_qann(sparse_net, 4)(images))


def test_analog_reroutes_post_activation_shortcuts(images):
    qann = calibrate(_model("ms_resnet20"), [images], 4, progress=False)
    analog = rewire_residual(qann, "analog")
    joins = residual_joins(analog)
    assert [j.barrier for j in joins[:-1]] == [None] * 8  # branch and shortcut read differently
    assert joins[-1].barrier == "layer3.2.act2"  # read by the head only
    assert not is_spike_stream(analog, joins[1].inputs[1])  # the shortcut: the bare sum
    assert set(quantizers(analog)) == set(quantizers(qann))
    assert not torch.equal(analog(images), qann(images))
    assert torch.equal(to_snn(analog)(images)[0], analog(images))


@pytest.mark.parametrize("name", ["resnetv2_18", "mobilenetv2_100"])
def test_analog_leaves_linear_joins_alone(name, images):
    qann = build_qann(_model(name), 4, input_shape=(3, 32, 32))
    analog = rewire_residual(qann, "analog")
    assert analog.code == qann.code


def test_rewiring_replays_onto_a_fresh_structure(images):
    model = _model("resnetv2_18")
    qann = calibrate(model, [images], 4, per_channel=True, progress=False)
    sparse = rewire_residual(qann, "sparse", [images], progress=False)
    assert quantizers(sparse)["stages.0.blocks.0.barrier"].threshold.shape == (8,)
    replay = build_qann(model, 4, per_channel=True, input_shape=(3, 32, 32))
    for step in sparse.meta["multispike"]["transforms"]:
        replay = rewire_residual(replay, step["mode"])
    replay.load_state_dict(sparse.state_dict(), strict=True)
    assert replay.code == sparse.code
    assert torch.equal(replay(images), sparse(images))


class _Tiny(nn.Module):
    """conv → ReLU → [conv] + shortcut → head: one linear join not followed by a ReLU."""

    def __init__(self, head_join: bool = False) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)
        self.fc2 = nn.Linear(4, 3)
        self.head_join = head_join

    def forward(self, x):
        x = self.act(self.stem(x))
        x = self.conv(x) + x
        x = x.mean((2, 3))
        return self.fc(x) + self.fc2(x) if self.head_join else self.fc(x)


def test_barrier_gradient_is_straight_through_inside_the_clip_range():
    sparse = rewire_residual(build_qann(_Tiny(), 4, input_shape=(3, 8, 8)), "sparse")
    barrier = quantizers(sparse)["barrier"]
    assert barrier.source.startswith("barrier after join")
    with torch.no_grad():
        barrier.threshold.fill_(2.0)
    z = torch.tensor([-1.0, 0.3, 1.1, 1.9, 2.6, 5.0]).view(1, 6, 1, 1).requires_grad_()
    neuron = to_snn(sparse).net.get_submodule("barrier")
    assert isinstance(neuron, MultiLevelIFNeuron)
    for module in (barrier, neuron):
        z.grad = None
        module(z).sum().backward()
        assert z.grad.flatten().tolist() == [0.0, 1.0, 1.0, 1.0, 0.0, 0.0]
        assert module.threshold.grad is not None and module.threshold.grad.abs() > 0


def test_errors_name_the_join():
    qann = build_qann(_Tiny(head_join=True), 4, input_shape=(3, 8, 8))
    with pytest.raises(ConversionError, match=r"join add_1 .*output"):
        rewire_residual(qann, "sparse")
    with pytest.raises(ValueError, match="mode must be one of"):
        rewire_residual(qann, "dense")
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    plain(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ConversionError, match="no residual join"):
        rewire_residual(build_qann(plain, 4, input_shape=(3, 8, 8)), "sparse")


class _Scaled(_Tiny):
    def forward(self, x):
        x = self.act(self.stem(x))
        return self.fc(torch.add(self.conv(x), x, alpha=0.5).mean((2, 3)))


def test_scaled_join_is_refused():
    with pytest.raises(ConversionError, match=r"join add .*alpha=0.5"):
        rewire_residual(build_qann(_Scaled(), 4, input_shape=(3, 8, 8)), "sew")


def test_new_quantizers_match_the_qann():
    qann = build_qann(_Tiny(), 3, input_shape=(3, 8, 8))
    sew = rewire_residual(qann, "sew")
    added = {p: q for p, q in quantizers(sew).items() if p not in quantizers(qann)}
    assert list(added) == ["join_in0"]
    assert all(isinstance(q, MultiLevelQuantizer) and q.levels == 3 for q in added.values())


class _SpikeWalk(nn.Module):
    """Two neurons feeding linear layers through flatten, pads, a sum and a sum with 1."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = MultiLevelIFNeuron(2), MultiLevelIFNeuron(2)
        self.zero_pad, self.one_pad, self.reflect_pad = (nn.Linear(18, 2) for _ in range(3))
        self.spike_sum, self.plus_one = nn.Linear(16, 2), nn.Linear(16, 2)

    def forward(self, x):
        a, b = self.a(x), self.b(x)
        flat = torch.flatten(a, 1)
        return (
            self.zero_pad(F.pad(flat, (1, 1)))
            + self.one_pad(F.pad(flat, (1, 1), value=1.0))
            + self.reflect_pad(F.pad(flat, (1, 1), mode="reflect"))
            + self.spike_sum((a + b).flatten(1))
            + self.plus_one((a + 1.0).flatten(1))
        )


def test_spike_walk_rules_of_sew_streams_and_synaptic_counting():
    gm = trace(_SpikeWalk())
    assert gm(torch.rand(2, 4, 2, 2)).shape == (2, 2)
    linears = [n for n in gm.graph.nodes if n.op == "call_module" and n.target not in ("a", "b")]
    inputs = {n.target: n.args[0] for n in linears}
    streams = {"zero_pad": True, "one_pad": False, "reflect_pad": False, "spike_sum": True,
               "plus_one": False}  # fmt: skip
    assert {name: is_spike_stream(gm, arg) for name, arg in inputs.items()} == streams
    # synaptic counting needs one neuron's event per value: a sum of spikes is analog there
    assert spike_inputs(gm) == dict(streams, spike_sum=False)
