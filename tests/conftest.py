"""Shared fixtures: the offline data folder; its absence fails the run on CI."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

from multispike.zoo.paths import ENV_VAR, shared_data_dir

REQUIRE_VAR = "MULTISPIKE_REQUIRE_DATA"


def _need_data(what: str) -> Path:
    root = shared_data_dir()
    path = root / what if root is not None else None
    if path is not None and path.exists():
        return path
    reason = (
        f"real data '{what}' not found: set {ENV_VAR} to a folder laid out like ../shared/data "
        f"(tried {path or '../shared/data'})"
    )
    if os.environ.get(REQUIRE_VAR) == "1":
        pytest.fail(f"{reason}; {REQUIRE_VAR}=1 forbids skipping", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder (skips, or fails under MULTISPIKE_REQUIRE_DATA=1, when absent)."""
    return _need_data("")


@pytest.fixture(scope="session")
def need_data():
    """``need_data("cifar10/cifar10-full.npz")`` → the path, or skip/fail as above."""
    return _need_data


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a test module: on shared 2-core machines small batches only
    gain OpenMP spin-waiting from more."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def import_tool():
    """``import_tool(name)``: the module ``tools/<name>.py`` (tools/ is a folder of scripts,
    not a package)."""
    return _import_tool


def _import_tool(name: str):
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "tools" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # pickled functions (worker processes) find their module
    spec.loader.exec_module(module)
    return module
