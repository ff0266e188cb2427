"""The MLflow plugin entry points of the installed package resolve to the tracking classes."""

from __future__ import annotations

import importlib.metadata

import pytest

from mlperf_track.tracking.context import MlperfTrackRunContextProvider
from mlperf_track.tracking.evaluator import MlperfTrackEvaluator

EXPECTED = {
    "mlflow.run_context_provider": ("mlperf_track", MlperfTrackRunContextProvider),
    "mlflow.model_evaluator": ("mlperf_track", MlperfTrackEvaluator),
}


def _installed() -> bool:
    try:
        importlib.metadata.distribution("mlperf-track")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(not _installed(), reason="mlperf-track is not installed (pip install -e .)")
@pytest.mark.parametrize("group", sorted(EXPECTED))
def test_entry_point_resolves(group: str) -> None:
    name, expected = EXPECTED[group]
    points = {point.name: point for point in importlib.metadata.entry_points(group=group)}
    assert name in points, f"setup.cfg lacks the {group} entry point"
    assert points[name].load() is expected


@pytest.mark.skipif(not _installed(), reason="mlperf-track is not installed (pip install -e .)")
def test_mlflow_lists_the_evaluator() -> None:
    from mlflow.models.evaluation import list_evaluators

    assert "mlperf_track" in list_evaluators()
