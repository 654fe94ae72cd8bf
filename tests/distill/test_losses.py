"""The step-wise distillation loss against a hand computation, and event-frame handling."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from multispike.distill.frames import rebin_frames, student_input, teacher_logits
from multispike.distill.losses import stepwise_distillation_loss, stepwise_kl

OUTPUTS = torch.tensor(
    [
        [[1.0, 0.0, -1.0], [0.5, 0.5, 2.0]],  # t = 1
        [[2.0, -1.0, 0.0], [0.0, 1.0, 1.0]],  # t = 2
    ]
)
TEACHER = torch.tensor([[3.0, 0.0, 1.0], [0.0, 0.0, 2.0]])
TARGETS = torch.tensor([0, 2])


def _softmax(row: list[float], tau: float) -> list[float]:
    exps = [math.exp(v / tau) for v in row]
    return [e / sum(exps) for e in exps]


def _hand_loss(alpha: float, tau: float) -> float:
    """L = CE(mean_t o_t, y) + α (1/T) Σ_t τ² KL(p_teacher ‖ p_student_t), batch-averaged."""
    steps, batch = len(OUTPUTS), len(TARGETS)
    outputs, teacher = OUTPUTS.tolist(), TEACHER.tolist()
    ce = 0.0
    for b in range(batch):
        mean = [sum(outputs[t][b][k] for t in range(steps)) / steps for k in range(3)]
        ce += -math.log(_softmax(mean, 1.0)[TARGETS[b]])
    kd = 0.0
    for t in range(steps):
        for b in range(batch):
            p, q = _softmax(teacher[b], tau), _softmax(outputs[t][b], tau)
            kd += tau**2 * sum(pk * math.log(pk / qk) for pk, qk in zip(p, q, strict=True))
    return ce / batch + alpha * kd / (steps * batch)


@pytest.mark.parametrize(("alpha", "tau"), [(1.0, 4.0), (0.5, 1.0), (0.0, 2.0), (3.0, 0.5)])
def test_loss_equals_hand_computation(alpha, tau):
    loss = stepwise_distillation_loss(OUTPUTS, TEACHER, TARGETS, alpha=alpha, tau=tau)
    assert loss.total.item() == pytest.approx(_hand_loss(alpha, tau), rel=1e-5)
    assert loss.total.item() == pytest.approx((loss.ce + alpha * loss.kd).item(), rel=1e-6)


def test_kl_is_zero_when_every_step_matches_the_teacher():
    outputs = TEACHER.unsqueeze(0).expand(3, -1, -1)
    assert stepwise_kl(outputs, TEACHER, tau=2.0).item() == pytest.approx(0.0, abs=1e-6)


def test_single_output_is_one_step():
    one = stepwise_distillation_loss(OUTPUTS[0], TEACHER, TARGETS)
    steps = stepwise_distillation_loss(OUTPUTS[:1], TEACHER, TARGETS)
    assert torch.equal(one.total, steps.total)


def test_no_gradient_reaches_the_teacher_and_every_step_gets_one():
    outputs = OUTPUTS.clone().requires_grad_(True)
    teacher = TEACHER.clone().requires_grad_(True)
    stepwise_distillation_loss(outputs, teacher, TARGETS).total.backward()
    assert teacher.grad is None
    assert all(outputs.grad[t].abs().sum() > 0 for t in range(len(OUTPUTS)))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(outputs=OUTPUTS, teacher_logits=TEACHER[:1]), "do not match"),
        (dict(outputs=OUTPUTS[0, 0], teacher_logits=TEACHER), r"\(B, K\) or \(T, B, K\)"),
        (dict(outputs=OUTPUTS, teacher_logits=TEACHER, tau=0.0), "tau"),
        (dict(outputs=OUTPUTS, teacher_logits=TEACHER, alpha=-1.0), "alpha"),
    ],
)
def test_bad_input_is_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        stepwise_distillation_loss(targets=TARGETS, **kwargs)


FRAMES = torch.arange(2 * 4 * 1 * 2 * 2, dtype=torch.float32).view(2, 4, 1, 2, 2)


def test_rebin_sums_consecutive_frames():
    two = rebin_frames(FRAMES, 2)
    assert torch.equal(two[:, 0], FRAMES[:, 0] + FRAMES[:, 1])
    assert torch.equal(two[:, 1], FRAMES[:, 2] + FRAMES[:, 3])
    assert torch.equal(rebin_frames(FRAMES, 1)[:, 0], FRAMES.sum(1))
    with pytest.raises(ValueError, match="re-bin 4 frames into 5"):
        rebin_frames(FRAMES, 5)


def test_student_input_decouples_frames_and_steps():
    assert torch.equal(student_input(FRAMES, 1, 4), FRAMES.sum(1))  # one frame, every step
    assert torch.equal(student_input(FRAMES, None, None), FRAMES.sum(1))  # QANN: one frame
    held = student_input(FRAMES, 2, 4)  # 2 frames, each held for 2 of 4 steps
    assert held.shape == (4, 2, 1, 2, 2)
    assert torch.equal(held[0], held[1]) and torch.equal(held[0], FRAMES[:, :2].sum(1))
    assert torch.equal(student_input(FRAMES, None, 4), FRAMES.transpose(0, 1))
    images = FRAMES[:, 0]
    assert student_input(images, 1, 4) is images
    with pytest.raises(ValueError, match="multiple of the student frames"):
        student_input(FRAMES, 3, 4)
    with pytest.raises(ValueError, match="QANN student takes one frame"):
        student_input(FRAMES, 2, None)


def test_teacher_averages_logits_over_frames():
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    per_frame = torch.stack([teacher(FRAMES[:, f]) for f in range(4)], 1).mean(1)
    torch.testing.assert_close(teacher_logits(teacher, FRAMES), per_frame)
    assert torch.equal(teacher_logits(teacher, FRAMES[:, 0]), teacher(FRAMES[:, 0]))


def test_probability_targets_equal_class_targets_when_one_hot():
    soft = torch.nn.functional.one_hot(TARGETS, 3).float()
    hard = stepwise_distillation_loss(OUTPUTS, TEACHER, TARGETS)
    torch.testing.assert_close(stepwise_distillation_loss(OUTPUTS, TEACHER, soft), hard)
