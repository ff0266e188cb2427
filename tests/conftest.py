"""Shared test configuration: deterministic seeds, few threads, and the ``gpu`` marker's skip."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault(
    "MLPERF_TRACK_CACHE", os.path.join(os.path.dirname(__file__), "..", ".pytest_cache", "mlperf_track")
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU; none is present")
    for item in items:
        # The marker itself, not ``item.keywords``: keywords also hold every parent directory's name, so a
        # checkout in a folder called ``gpu`` would skip the whole suite.
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _seed_and_threads() -> None:
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(1)
