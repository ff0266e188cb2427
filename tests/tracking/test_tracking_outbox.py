"""The outbox: cases logged while the tracking store is unreachable wait on disk and are logged when it returns.

The outage is real: MLflow is pointed at a port where nothing listens (connection refused), then back.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from tracking_helpers import make_result

from mlperf_track import metrics as m
from mlperf_track.errors import ConfigError
from mlperf_track.pipeline.config import PipelineConfig
from mlperf_track.pipeline.events import CaseOutcome, PipelineOutcome
from mlperf_track.tracking.listener import MlflowPipelineListener
from mlperf_track.tracking.outbox import (
    Backoff,
    Outbox,
    config_from_json,
    config_to_json,
    is_unreachable,
    public_uri,
    read_entries,
)
from mlperf_track.tracking.sync import sync_outbox

CONFIG = PipelineConfig(model="tinycnn", device="cpu", batch_sizes=(1, 2, 3, 4), image_size=8)


def _dead_uri() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # closed again: connections are refused


@pytest.fixture
def fast_failures(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLPERF_TRACK_OUTBOX_WAIT_S", "0")
    yield


class _Outage:
    """Switches MLflow between the test store and a port where nothing listens."""

    def __init__(self, uri: str) -> None:
        self.uri, self.dead = uri, _dead_uri()

    def __enter__(self) -> None:
        import mlflow

        mlflow.set_tracking_uri(self.dead)

    def __exit__(self, *exc: object) -> None:
        import mlflow

        mlflow.set_tracking_uri(self.uri)


def _listener(tracking: str, tmp_path: Path) -> tuple[MlflowPipelineListener, Outbox, str]:
    import mlflow

    uri = mlflow.get_tracking_uri()
    parent = mlflow.MlflowClient().create_run(tracking).info.run_id
    outbox = Outbox(tmp_path / "outbox", parent, uri, tracking)
    outbox.backoff = Backoff(first_s=0.0)  # retry at the next case
    return MlflowPipelineListener(parent, log_model=False, outbox=outbox), outbox, uri


def _case(listener: MlflowPipelineListener, batch_size: int) -> CaseOutcome:
    result = make_result(batch_size=batch_size, p50=1.0 + batch_size)
    outcome = CaseOutcome(case=result.case, result=result)
    listener.on_case_start(result.case)
    listener.on_case_end(outcome)
    return outcome


def _children(tracking: str, parent: str) -> dict[str, tuple[str, float]]:
    import mlflow

    runs = mlflow.MlflowClient().search_runs([tracking], f"tags.mlflow.parentRunId = '{parent}'")
    return {run.info.run_name: (run.info.status, run.data.metrics[m.THROUGHPUT]) for run in runs}


def test_cases_wait_during_an_outage_and_are_logged_in_order_when_it_ends(
    tracking: str, tmp_path: Path, fast_failures: None
) -> None:
    import mlflow

    listener, outbox, uri = _listener(tracking, tmp_path)
    listener.on_pipeline_start(CONFIG, [])
    outcomes = [_case(listener, 1)]
    with _Outage(uri):
        outcomes += [_case(listener, 2), _case(listener, 3)]
        assert [entry.case.batch_size for entry in outbox.entries()] == [2, 3]
    outcomes.append(_case(listener, 4))  # the store is back: 2 and 3 first, then 4
    listener.on_pipeline_end(PipelineOutcome(config=CONFIG, outcomes=outcomes))
    assert not outbox.pending
    children = _children(tracking, listener.parent_run_id)
    assert sorted(children) == [f"baseline-eager-fp32-bs{size}" for size in (1, 2, 3, 4)]
    for outcome in outcomes:  # every run holds its own case's numbers
        status, throughput = children[outcome.case.name]
        assert status == "FINISHED" and throughput == pytest.approx(outcome.result.metrics[m.THROUGHPUT])  # type: ignore[union-attr]
    parent = mlflow.MlflowClient().get_run(listener.parent_run_id)
    assert parent.data.metrics[m.CASES_LOGGED_LATE] == 2 and parent.data.metrics["cases/completed"] == 4
    table = json.loads(mlflow.artifacts.load_text(f"runs:/{listener.parent_run_id}/summary.json"))
    assert len(table["data"]) == 4


def test_what_still_waits_at_the_end_is_synced_later(tracking: str, tmp_path: Path, fast_failures: None) -> None:
    import mlflow

    listener, outbox, uri = _listener(tracking, tmp_path)
    listener.on_pipeline_start(CONFIG, [])
    outcomes = [_case(listener, 1)]
    with _Outage(uri):
        outcomes += [_case(listener, 2), _case(listener, 3)]
        listener.on_pipeline_end(PipelineOutcome(config=CONFIG, outcomes=outcomes))
        outbox.save_parent("FINISHED", CONFIG, "cpu", {})
        assert sync_outbox(tmp_path).left == 2  # still unreachable: nothing lost, nothing logged
    assert len(read_entries(outbox.folder)) == 2
    report = sync_outbox(tmp_path, tracking_uri=uri)
    assert (report.logged, report.left, report.parents_ended) == (2, 0, [listener.parent_run_id])
    assert not outbox.folder.exists()
    children = _children(tracking, listener.parent_run_id)
    assert {status for status, _ in children.values()} == {"FINISHED"} and len(children) == 3
    parent = mlflow.MlflowClient().get_run(listener.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["best.case"] == "baseline-eager-fp32-bs3"
    assert "baseline/eager/fp32" in mlflow.artifacts.load_text(f"runs:/{listener.parent_run_id}/report/report.md")
    assert sync_outbox(tmp_path, tracking_uri=uri).logged == 0  # nothing twice


def test_a_parent_that_cannot_be_ended_is_ended_by_sync(tracking: str, tmp_path: Path, fast_failures: None) -> None:
    """Every case logged, then the store goes away before the parent's end: ``parent.json`` waits for sync."""
    import mlflow

    from mlperf_track.tracking.pipeline_run import _end_parent

    uri = mlflow.get_tracking_uri()
    parent = mlflow.start_run(experiment_id=tracking).info.run_id
    outbox = Outbox(tmp_path / "outbox", parent, uri, tracking)
    listener = MlflowPipelineListener(parent, log_model=False, outbox=outbox)
    listener.on_pipeline_start(CONFIG, [])
    outcomes = [_case(listener, 1), _case(listener, 2)]
    listener.on_pipeline_end(PipelineOutcome(config=CONFIG, outcomes=outcomes))
    with _Outage(uri):
        _end_parent(listener, "FINISHED", launched=False)
    assert not outbox.pending and outbox.waiting
    assert mlflow.MlflowClient().get_run(parent).info.status == "RUNNING"
    report = sync_outbox(tmp_path, tracking_uri=uri)
    assert (report.logged, report.parents_ended) == (0, [parent]) and not outbox.waiting
    run = mlflow.MlflowClient().get_run(parent)
    assert run.info.status == "FINISHED" and m.CASES_LOGGED_LATE not in run.data.metrics


def test_only_unreachable_stores_count_as_outages(tracking: str, fast_failures: None) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException) as refused:
        mlflow.MlflowClient(_dead_uri()).get_experiment("0")
    assert is_unreachable(refused.value)
    with pytest.raises(MlflowException) as missing:
        mlflow.MlflowClient().get_run("0" * 32)
    assert not is_unreachable(missing.value)
    assert not is_unreachable(ConfigError("--x", "y", "z"))
    assert is_unreachable(RuntimeError("wrapped")) is False
    try:
        raise RuntimeError("logging failed") from ConnectionRefusedError("no")
    except RuntimeError as error:
        assert is_unreachable(error)


def test_backoff_doubles_up_to_its_cap_and_resets() -> None:
    now = [0.0]
    backoff = Backoff(first_s=2.0, cap_s=10.0, clock=lambda: now[0])
    assert [backoff.failed() for _ in range(5)] == [2.0, 4.0, 8.0, 10.0, 10.0]
    assert not backoff.due()
    now[0] = 10.0
    assert backoff.due()
    backoff.succeeded()
    assert backoff.failed() == 2.0


def test_configuration_and_uri_as_written_to_disk(tmp_path: Path) -> None:
    config = PipelineConfig(
        model="tinycnn", batch_sizes=(1, 8), options=(("a", "1"),), pin_cores=(0,), output_dir=tmp_path
    )
    assert config_from_json(json.loads(json.dumps(config_to_json(config)))) == config
    assert public_uri("https://alice:secret@mlflow.example:5000/x") == "https://mlflow.example:5000/x"
    assert public_uri("sqlite:////tmp/mlflow.db") == "sqlite:////tmp/mlflow.db"
