"""Zoo tests run tiny batches: one intra-op thread avoids OpenMP spin-waiting on shared cores."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield
