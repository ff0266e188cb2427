"""A load sweep in MLflow (SQLite store): parent, one child per point, FAILED points, figures, best/max_qps."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from mlperf_track import metrics as m
from mlperf_track.engine.load.config import DeploymentConfig, LoadConfig
from mlperf_track.engine.load.search import SearchConfig
from mlperf_track.errors import MeasurementError
from mlperf_track.pipeline.load_sweep import LoadListener, LoadPlan, LoadPoint
from mlperf_track.pipeline.load_target import OpenTarget, SyntheticTarget
from mlperf_track.tracking.load_run import POINTS_TABLE, QUERIES_FILE, RESULT_FILE, run_tracked_load_plan
from mlperf_track.tracking.pipeline_run import ROLE_TAG

QUICK = {"min_duration_s": 0.2, "min_query_count": 30, "early_stopping": False}


class _Flaky(LoadListener):
    """A target whose model fails while ``broken`` (as a point killed by a limit fails); as a listener it breaks
    the model for the second point only."""

    device = "cpu"
    name = "flaky"

    def __init__(self) -> None:
        self.broken = False
        self.finished = 0

    @contextlib.contextmanager
    def open(self, max_batch_size: int) -> Iterator[OpenTarget]:
        def infer(samples: int) -> None:
            if self.broken:
                raise MemoryError("out of memory under a 10 MiB limit")

        yield OpenTarget(infer, {"load.target": "test"})

    def point_finished(self, point: LoadPoint) -> None:
        self.finished += 1
        self.broken = self.finished == 1


def _children(parent_id: str) -> list[mlflow.entities.Run]:
    runs = mlflow.search_runs(filter_string=f"tags.mlflow.parentRunId = '{parent_id}'", output_format="list")
    return sorted(runs, key=lambda run: run.info.start_time)


def test_each_point_is_a_child_run_and_the_parent_has_the_figures(tracking: str, tmp_path: Path) -> None:
    config = LoadConfig("server", target_qps=1.0, latency_bound_ms=200.0, **QUICK)
    plan = LoadPlan(SyntheticTarget(1.0), config, DeploymentConfig(max_batch_size=4), rates=(50.0, 150.0))
    outcome = run_tracked_load_plan(plan, run_name="sweep")
    parent = mlflow.search_runs(filter_string="attributes.run_name = 'sweep'", output_format="list")[0]
    assert parent.info.status == "FINISHED" and parent.data.tags[ROLE_TAG] == "load"
    assert parent.data.params["load.rates"] == "50,150" and parent.data.params["deploy.max_batch_size"] == "4"
    children = _children(parent.info.run_id)
    assert [child.info.run_name for child in children] == ["server@50qps", "server@150qps"]
    for child, result in zip(children, outcome.results, strict=True):
        assert child.info.status == "FINISHED"
        assert child.data.metrics[m.LOAD_LATENCY_P99] == pytest.approx(result.metrics[m.LOAD_LATENCY_P99])
        for key in (m.LOAD_QUEUE_P99, m.LOAD_COMPUTE_P99, m.LOAD_ACHIEVED_QPS, m.LOAD_OFFERED_QPS, m.LOAD_DROPPED):
            assert key in child.data.metrics
        assert child.data.tags[m.VALID_TAG] == str(result.valid).lower()
        assert child.data.params["load.target_qps"] in ("50.0", "150.0")
        files = {item.path for item in mlflow.MlflowClient().list_artifacts(child.info.run_id)}
        assert {QUERIES_FILE, RESULT_FILE} <= files
    client = mlflow.MlflowClient()
    figures = {item.path for item in client.list_artifacts(parent.info.run_id, "figures")}
    assert figures == {"figures/latency_vs_load.png", "figures/latency_cdf.png", "figures/queue_vs_compute.png"}
    table = json.loads(Path(client.download_artifacts(parent.info.run_id, POINTS_TABLE, str(tmp_path))).read_text())
    assert len(table["data"]) == 2


def test_a_failed_point_is_a_failed_child_and_the_sweep_goes_on(tracking: str) -> None:
    config = LoadConfig("server", target_qps=1.0, latency_bound_ms=200.0, **QUICK)
    flaky = _Flaky()
    plan = LoadPlan(flaky, config, rates=(40.0, 60.0, 80.0))
    outcome = run_tracked_load_plan(plan, run_name="flaky", extra_listener=flaky)
    assert [point.error is None for point in outcome.points] == [True, False, True]
    parent = mlflow.search_runs(filter_string="attributes.run_name = 'flaky'", output_format="list")[0]
    children = _children(parent.info.run_id)
    assert [child.info.status for child in children] == ["FINISHED", "FAILED", "FINISHED"]
    assert children[1].data.tags["error.type"] == "MemoryError"
    assert "10 MiB" in children[1].data.tags["error.message"]
    assert parent.info.status == "FINISHED"


def test_every_point_failing_fails_the_parent(tracking: str) -> None:
    broken = _Flaky()
    broken.broken = True
    config = LoadConfig("single_stream", **QUICK)
    with pytest.raises(MeasurementError, match="all 1 load points failed"):
        run_tracked_load_plan(LoadPlan(broken, config), run_name="broken")
    parent = mlflow.search_runs(filter_string="attributes.run_name = 'broken'", output_format="list")[0]
    assert parent.info.status == "FAILED"
    assert mlflow.active_run() is None


def test_a_search_logs_best_max_qps(tracking: str) -> None:
    config = LoadConfig("server", target_qps=1.0, latency_bound_ms=500.0, min_duration_s=0.3)
    plan = LoadPlan(SyntheticTarget(2.0), config, search=SearchConfig(start_qps=200.0, tolerance=0.3, max_probes=4))
    outcome = run_tracked_load_plan(plan, run_name="search")
    parent = mlflow.search_runs(filter_string="attributes.run_name = 'search'", output_format="list")[0]
    assert outcome.search is not None and outcome.search.max_qps is not None
    assert parent.data.metrics[m.BEST_MAX_QPS] == pytest.approx(outcome.search.max_scheduled_qps)
    assert parent.data.tags["load.search.stop_reason"] == outcome.search.stop_reason
    assert float(parent.data.tags["load.search.target_qps"]) == pytest.approx(outcome.search.max_qps)
    assert len(_children(parent.info.run_id)) == len(outcome.search.probes)
