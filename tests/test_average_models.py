"""benchmarks/average_models.py: the weighted average of saved models' state dicts."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "average_models.py"
spec = importlib.util.spec_from_file_location("average_models", SCRIPT)
average_models = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = average_models
spec.loader.exec_module(average_models)


def test_average_state_weights_every_tensor_by_its_coefficient():
    a = {"w": torch.tensor([1.0, 2.0]), "threshold": torch.tensor([4.0])}
    b = {"w": torch.tensor([3.0, 6.0]), "threshold": torch.tensor([0.0])}
    out = average_models.average_state([a, b], [0.25, 0.75])
    assert torch.equal(out["w"], torch.tensor([2.5, 5.0]))
    assert torch.equal(out["threshold"], torch.tensor([1.0]))
    assert out["w"].dtype == torch.float32
    assert torch.equal(a["w"], torch.tensor([1.0, 2.0]))  # the inputs are untouched


def test_average_state_names_the_tensors_one_model_lacks():
    with pytest.raises(ValueError, match="model 1 .*'bias'"):
        average_models.average_state(
            [{"w": torch.ones(1), "bias": torch.ones(1)}, {"w": torch.ones(1)}], [0.5, 0.5]
        )


def test_average_state_names_a_tensor_whose_shape_differs():
    # (1,) and (3,) would broadcast silently: the average must refuse them
    with pytest.raises(ValueError, match=r"threshold: model 1 has shape \(3,\), model 0 \(1,\)"):
        average_models.average_state(
            [{"threshold": torch.ones(1)}, {"threshold": torch.ones(3)}], [0.5, 0.5]
        )
