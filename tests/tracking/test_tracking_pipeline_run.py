"""``run_tracked_pipeline`` in process: the parent's end state on success, bad input, Ctrl-C, all-failed."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from mlflow.entities import Run

from mlperf_track import metrics as m
from mlperf_track.errors import ConfigError, MeasurementError
from mlperf_track.pipeline.config import PipelineConfig
from mlperf_track.pipeline.events import CaseOutcome, PipelineListener
from mlperf_track.spec import CaseSpec, TimingConfig
from mlperf_track.tracking.pipeline_run import run_tracked_pipeline

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(
    not (REPO / "mlperf_track" / "variants" / "registry.py").is_file(), reason="the pipeline is not written yet"
)
FAST = TimingConfig(warmup_iters=1, warmup_s=0.0, min_iters=3, max_iters=20, max_time_s=0.1, target_rel_ci=0.5)


def _config(tmp_path: Path, **overrides: object) -> PipelineConfig:
    values: dict[str, object] = {
        "model": "tinycnn",
        "device": "cpu",
        "batch_sizes": (1, 2),
        "image_size": 16,
        "epochs": 0,
        "timing": FAST,
        "cache_dir": tmp_path / "cache",
        "output_dir": tmp_path / "out",
    }
    values.update(overrides)
    return PipelineConfig(**values)  # type: ignore[arg-type]


def _runs(experiment_id: str) -> tuple[Run, list[Run]]:
    import mlflow

    runs = mlflow.MlflowClient().search_runs([experiment_id])
    parents = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    assert len(parents) == 1
    return parents[0], [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]


def test_success_finishes_the_parent(tracking: str, tmp_path: Path) -> None:
    import mlflow

    outcome = run_tracked_pipeline(_config(tmp_path))
    parent, children = _runs(tracking)
    assert parent.info.status == "FINISHED"
    assert len(outcome.results) == len(children) == 2
    assert all(m.LATENCY_P50 in child.data.metrics for child in children)
    assert parent.data.tags["mlperf_track.role"] == "pipeline"
    page = mlflow.artifacts.load_text(f"runs:/{parent.info.run_id}/report/report.html")
    summary = page.split("<h2>Summary</h2>")[1].split("<h2>")[0]
    assert summary.count("<td>baseline/eager/fp32</td>") == 2  # one summary row per case
    figures = {item.path for item in mlflow.MlflowClient().list_artifacts(parent.info.run_id, "figures")}
    assert {f"figures/{name}_vs_batch_size.png" for name in ("latency", "throughput", "memory")} <= figures


def test_bad_input_fails_the_parent(tracking: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        run_tracked_pipeline(_config(tmp_path, runtimes=("no-such-runtime",)))
    parent, children = _runs(tracking)
    assert parent.info.status == "FAILED" and children == []
    assert parent.data.tags["error.type"] == "ConfigError"
    assert "no-such-runtime" in parent.data.tags["error.message"]


def _killed_at_the_second_case(experiment_id: str) -> Run:
    """Check the end state of a pipeline interrupted when its second case started; returns the parent."""
    import mlflow

    parent, children = _runs(experiment_id)
    assert parent.info.status == "KILLED"
    status = {child.info.run_name: child.info.status for child in children}
    assert status == {"baseline-eager-fp32-bs1": "FINISHED", "baseline-eager-fp32-bs2": "KILLED"}
    paths = {item.path for item in mlflow.MlflowClient().list_artifacts(parent.info.run_id)}
    assert {"summary.json", "report", "figures"} <= paths
    return parent


class _InterruptOnSecondCase(PipelineListener):
    def __init__(self) -> None:
        self.started = 0

    def on_case_start(self, case: CaseSpec) -> None:
        self.started += 1
        if self.started == 2:
            raise KeyboardInterrupt


def test_ctrl_c_kills_open_runs_and_keeps_finished_ones(tracking: str, tmp_path: Path) -> None:
    import mlflow

    with pytest.raises(KeyboardInterrupt):
        run_tracked_pipeline(_config(tmp_path), extra_listener=_InterruptOnSecondCase())
    assert mlflow.active_run() is None
    parent = _killed_at_the_second_case(tracking)
    # The report after Ctrl-C shows the finished case; the killed one measured nothing.
    page = mlflow.artifacts.load_text(f"runs:/{parent.info.run_id}/report/report.html")
    summary = page.split("<h2>Summary</h2>")[1].split("<h2>")[0]
    assert summary.count("<td>baseline/eager/fp32</td>") == 1
    assert "1 measured case run(s), 0 failed, 1 killed" in page and "killed before it finished" in page


class _InterruptInsideAStoreRead(PipelineListener):
    """Ctrl-C landing inside a tracking-store read: a SELECT on the store's own pooled SQLite connection, one row
    read of several, then the interrupt (as a signal raises it between two bytecodes)."""

    def on_case_start(self, case: CaseSpec) -> None:
        if case.batch_size != 2:
            return
        from mlflow.tracking._tracking_service.utils import _get_store
        from sqlalchemy import text

        with _get_store().ManagedSessionMaker() as session:
            rows = session.execute(text("select run_uuid from runs"))
            rows.fetchone()
            raise KeyboardInterrupt


def test_ctrl_c_inside_a_store_read_still_ends_the_runs_killed(
    tracking: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The interrupted read's open cursor holds SQLite's SHARED lock while its frames live: kept, the cleanup's
    writes failed with "database is locked" after MLflow's 20 s busy timeout (in CI the parent stayed RUNNING)."""
    caplog.set_level(logging.WARNING)
    with pytest.raises(KeyboardInterrupt):
        run_tracked_pipeline(_config(tmp_path), extra_listener=_InterruptInsideAStoreRead())
    _killed_at_the_second_case(tracking)
    assert not [record.getMessage() for record in caplog.records if "database is locked" in record.getMessage()]


def test_all_cases_failed_fails_the_parent(tracking: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlperf_track.pipeline.session import BenchmarkSession

    def failing(self: BenchmarkSession, case: CaseSpec, *, profile: bool = False) -> CaseOutcome:
        return CaseOutcome(case=case, error=MeasurementError("broken on purpose"))

    monkeypatch.setattr(BenchmarkSession, "run_case", failing)
    with pytest.raises(MeasurementError, match="all 2 cases failed"):
        run_tracked_pipeline(_config(tmp_path))
    parent, children = _runs(tracking)
    assert parent.info.status == "FAILED"
    assert {child.info.status for child in children} == {"FAILED"}
    assert {child.data.tags["error.message"] for child in children} == {"broken on purpose"}


@pytest.mark.parametrize("outcome", ["finished", "failed"])
def test_the_log_file_reaches_the_parent_however_it_ends(tracking: str, tmp_path: Path, outcome: str) -> None:
    import mlflow

    log = tmp_path / "run-1.log"
    log.write_text("torch says something on fd 2\n", encoding="utf-8")
    runtimes = ("eager",) if outcome == "finished" else ("no-such-runtime",)
    try:
        run_tracked_pipeline(_config(tmp_path, runtimes=runtimes, batch_sizes=(1,)), log_file=log)
    except ConfigError:
        assert outcome == "failed"
    parent, _ = _runs(tracking)
    text = mlflow.artifacts.load_text(f"runs:/{parent.info.run_id}/logs/mlperf_track.log")
    assert "torch says something on fd 2" in text


def test_runs_go_to_the_experiment_named_after_the_model(
    tracking: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    run_tracked_pipeline(_config(tmp_path, batch_sizes=(1,)))
    run = mlflow.last_active_run()
    assert run is not None
    assert mlflow.get_experiment(run.info.experiment_id).name == "mlperf_track/tinycnn"
