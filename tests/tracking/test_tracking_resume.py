"""Resume: a killed pipeline is continued, every case FINISHED exactly once under the new parent, the old one KILLED."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.entities import Run
from test_tracking_pipeline_run import _config

from mlperf_track import metrics as m
from mlperf_track.errors import ConfigError
from mlperf_track.liveness import ProcessIdentity, start_ticks
from mlperf_track.pipeline.events import PipelineListener
from mlperf_track.spec import CaseSpec
from mlperf_track.tracking.pipeline_run import run_tracked_pipeline
from mlperf_track.tracking.resume import config_fingerprint, parse_resume
from mlperf_track.tracking.stale import identity_tags

BATCHES = (1, 2, 3, 4)


class _StopAfter(PipelineListener):
    def __init__(self, cases: int) -> None:
        self.cases = cases
        self.measured: list[str] = []

    def on_case_start(self, case: CaseSpec) -> None:
        self.measured.append(case.name)
        if len(self.measured) > self.cases:
            raise KeyboardInterrupt


def _runs(experiment_id: str) -> list[Run]:
    import mlflow

    return list(mlflow.MlflowClient().search_runs([experiment_id], order_by=["attributes.start_time ASC"]))


def _as_if_killed(run_id: str) -> None:
    """What ``kill -9`` leaves: the parent RUNNING, owned by a process that no longer exists."""
    import mlflow

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    gone = dataclasses.replace(ProcessIdentity.current(), pid=child.pid, start=start_ticks(child.pid))
    child.wait()
    client = mlflow.MlflowClient()
    for key, value in identity_tags(gone).items():
        client.set_tag(run_id, key, value)
    client.update_run(run_id, status="RUNNING")


def _interrupted(tmp_path: Path, after: int, **resume: str) -> str:
    import mlflow

    with pytest.raises(KeyboardInterrupt):
        run_tracked_pipeline(_config(tmp_path, batch_sizes=BATCHES), extra_listener=_StopAfter(after), **resume)
    last = mlflow.last_active_run()
    assert last is not None
    return str(last.info.run_id)


def test_a_killed_run_resumed_with_last_ends_with_every_case_finished_once(tracking: str, tmp_path: Path) -> None:
    import mlflow

    killed = _interrupted(tmp_path, after=2)
    _as_if_killed(killed)
    counter = _StopAfter(99)
    outcome = run_tracked_pipeline(_config(tmp_path, batch_sizes=BATCHES), extra_listener=counter, resume="last")
    assert counter.measured == ["baseline-eager-fp32-bs3", "baseline-eager-fp32-bs4"]  # bs1, bs2 taken over
    assert [item.case.batch_size for item in outcome.outcomes] == [1, 2, 3, 4] and len(outcome.results) == 4
    client = mlflow.MlflowClient()
    old, new = client.get_run(killed), client.get_run(outcome.parent_run_id)
    assert old.info.status == "KILLED" and "is gone" in old.data.tags[m.KILLED_REASON_TAG]
    assert old.data.tags[m.RESUMED_BY_TAG] == new.info.run_id
    assert new.info.status == "FINISHED" and new.data.tags[m.RESUMED_FROM_TAG] == killed
    assert new.data.metrics[m.CASES_RESUMED] == 2 and new.data.metrics["cases/completed"] == 4
    children = [run for run in _runs(tracking) if run.data.tags.get("mlflow.parentRunId") == new.info.run_id]
    finished = sorted(run.info.run_name for run in children if run.info.status == "FINISHED")
    assert finished == [f"baseline-eager-fp32-bs{size}" for size in BATCHES]  # every case exactly once
    moved = {run.info.run_name for run in children if run.data.tags.get(m.CHILD_RESUMED_FROM_TAG) == killed}
    assert moved == {"baseline-eager-fp32-bs1", "baseline-eager-fp32-bs2"}
    left_with_old = [run for run in _runs(tracking) if run.data.tags.get("mlflow.parentRunId") == killed]
    assert [run.info.status for run in left_with_old] == ["KILLED"]  # the case that was running
    page = mlflow.artifacts.load_text(f"runs:/{new.info.run_id}/report/report.html")
    summary = page.split("<h2>Summary</h2>")[1].split("<h2>")[0]
    assert summary.count("<td>baseline/eager/fp32</td>") == len(BATCHES)  # the report covers every case


def test_a_resumed_run_killed_again_is_resumed_along_the_chain(tracking: str, tmp_path: Path) -> None:
    import mlflow

    first = _interrupted(tmp_path, after=1)
    second = _interrupted(tmp_path, after=1, resume="last")  # takes over bs1, measures bs2, killed at bs3
    outcome = run_tracked_pipeline(_config(tmp_path, batch_sizes=BATCHES), resume="last")
    client = mlflow.MlflowClient()
    assert client.get_run(outcome.parent_run_id).data.tags[m.RESUMED_FROM_TAG] == second
    assert client.get_run(second).data.tags[m.RESUMED_FROM_TAG] == first
    children = [r for r in _runs(tracking) if r.data.tags.get("mlflow.parentRunId") == outcome.parent_run_id]
    assert sorted(r.info.run_name for r in children if r.info.status == "FINISHED") == [
        f"baseline-eager-fp32-bs{size}" for size in BATCHES
    ]
    finished = [r for r in _runs(tracking) if r.info.status == "FINISHED" and "mlflow.parentRunId" in r.data.tags]
    assert len(finished) == len(BATCHES)  # nothing measured twice anywhere in the experiment


def test_nothing_to_resume_starts_a_new_run(tracking: str, tmp_path: Path) -> None:
    outcome = run_tracked_pipeline(_config(tmp_path, batch_sizes=(1,)), resume="last")
    assert len(outcome.results) == 1
    run_tracked_pipeline(_config(tmp_path, batch_sizes=(1,)), resume="last")  # a FINISHED run is not resumed
    parents = [run for run in _runs(tracking) if "mlflow.parentRunId" not in run.data.tags]
    assert len(parents) == 2 and all(m.RESUMED_FROM_TAG not in run.data.tags for run in parents)


def test_resuming_another_configuration_by_id_is_refused(tracking: str, tmp_path: Path) -> None:
    killed = _interrupted(tmp_path, after=1)
    with pytest.raises(ConfigError, match="batch_sizes 1,2,3,4 there, 1,2 here"):
        run_tracked_pipeline(_config(tmp_path, batch_sizes=(1, 2)), resume=killed)
    other = _config(tmp_path, batch_sizes=(1, 2))
    assert config_fingerprint(other) != config_fingerprint(_config(tmp_path, batch_sizes=BATCHES))
    assert config_fingerprint(other) == config_fingerprint(dataclasses.replace(other, output_dir=tmp_path / "x"))


def test_resume_values() -> None:
    assert parse_resume("--resume", "LAST") == "last"
    assert parse_resume("--resume", "0123456789abcdef0123456789abcdef") == "0123456789abcdef0123456789abcdef"
    with pytest.raises(ConfigError, match="--resume"):
        parse_resume("--resume", "yesterday")
