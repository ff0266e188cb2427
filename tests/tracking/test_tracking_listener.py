"""The pipeline listener on hand-made events: run tree, parent summary, best case, baseline model, abort."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.entities import Run
from tracking_helpers import make_result

from mlperf_track import metrics as m
from mlperf_track.errors import ExportError
from mlperf_track.models.artifact import ModelArtifact
from mlperf_track.pipeline.config import PipelineConfig
from mlperf_track.pipeline.events import CaseOutcome, PipelineOutcome
from mlperf_track.spec import CaseSpec
from mlperf_track.tracking.listener import MlflowPipelineListener
from mlperf_track.tracking.summary import BEST_PREFIX


def _children(parent_id: str, experiment_id: str) -> dict[str, Run]:
    import mlflow

    runs = mlflow.MlflowClient().search_runs([experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    return {run.info.run_name: run for run in runs}


def _artifact_paths(run_id: str, path: str | None = None) -> set[str]:
    import mlflow

    paths: set[str] = set()
    for item in mlflow.MlflowClient().list_artifacts(run_id, path):
        paths |= _artifact_paths(run_id, item.path) if item.is_dir else {item.path}
    return paths


def _run_events(listener: MlflowPipelineListener, artifact: ModelArtifact | None) -> PipelineOutcome:
    config = PipelineConfig(model="tinycnn", device="cpu", batch_sizes=(1, 4), image_size=8, runtimes=("eager",))
    ok = [
        make_result(batch_size=1, p50=2.0),
        make_result(batch_size=4, p50=4.0),
        make_result(runtime="compile", batch_size=1, p50=1.5),
        make_result(runtime="compile", batch_size=4, p50=2.5),
    ]
    failed_case = CaseSpec(model="tinycnn", runtime="onnxruntime", batch_size=1, image_size=8)
    outcome = PipelineOutcome(config=config)
    if artifact is not None:
        listener.on_baseline_ready(artifact, {"cached": "false", "val_top1": "0.9"})
    listener.on_pipeline_start(config, [r.case for r in ok[:2]] + [failed_case] + [r.case for r in ok[2:]])
    for item in [*ok[:2], None, *ok[2:]]:
        case_outcome = (
            CaseOutcome(case=failed_case, error=ExportError("op aten::foo not supported"))
            if item is None
            else CaseOutcome(case=item.case, result=item)
        )
        listener.on_case_start(case_outcome.case)
        outcome.outcomes.append(case_outcome)
        listener.on_case_end(case_outcome)
    listener.on_pipeline_end(outcome)
    return outcome


def test_run_tree_summary_and_best(tracking: str, tiny_artifact: ModelArtifact, tmp_path: Path) -> None:
    import mlflow

    with mlflow.start_run() as parent:
        listener = MlflowPipelineListener(parent.info.run_id)
        _run_events(listener, tiny_artifact)
        assert mlflow.active_run() is not None and mlflow.active_run().info.run_id == parent.info.run_id  # type: ignore[union-attr]  # children are closed
    children = _children(parent.info.run_id, tracking)
    assert set(children) == {
        "baseline-eager-fp32-bs1",
        "baseline-eager-fp32-bs4",
        "baseline-onnxruntime-fp32-bs1",
        "baseline-compile-fp32-bs1",
        "baseline-compile-fp32-bs4",
    }
    failed = children["baseline-onnxruntime-fp32-bs1"]
    assert failed.info.status == "FAILED"
    assert failed.data.tags["error.type"] == "ExportError"
    assert "aten::foo" in failed.data.tags["error.message"]
    assert failed.data.params["runtime"] == "onnxruntime"
    good = children["baseline-compile-fp32-bs4"]
    assert good.info.status == "FINISHED"
    assert good.data.metrics[m.THROUGHPUT] == pytest.approx(1600.0)
    assert {"samples.csv", "result.json"} <= _artifact_paths(good.info.run_id)

    data = mlflow.get_run(parent.info.run_id).data
    assert data.params["config.batch_sizes"] == "1,4"
    assert data.metrics["cases/planned"] == 5
    assert data.metrics["cases/completed"] == 4 and data.metrics["cases/failed"] == 1
    assert data.tags["best.case"] == "baseline-compile-fp32-bs4"
    assert data.tags["best.run_id"] == good.info.run_id
    assert data.tags["best.status"] == "found"
    assert data.tags["mlflow.note.content"].startswith("tinycnn, 8 px, synthetic on cpu: ship baseline/compile/fp32")
    assert data.params["config.max_accuracy_drop"] == "0.01"
    assert data.metrics[f"{BEST_PREFIX}{m.THROUGHPUT}"] == pytest.approx(1600.0)
    assert data.metrics[f"{BEST_PREFIX}{m.LATENCY_P50}"] == pytest.approx(2.5)
    assert data.tags["baseline.val_top1"] == "0.9"

    paths = _artifact_paths(parent.info.run_id)
    figures = {f"figures/{stem}_vs_batch_size.png" for stem in ("latency", "throughput", "memory")}
    figures.add("figures/accuracy_vs_latency.png")  # the hand-made results have a top-1
    reports = {"report/report.md", "report/report.html", "report/report.json"}
    assert {"summary.json", "summary.csv"} | figures | reports <= paths
    assert not any(path.startswith("report/figures/") for path in paths)  # one copy of each figure
    table = json.loads(
        Path(
            mlflow.artifacts.download_artifacts(
                run_id=parent.info.run_id, artifact_path="summary.json", dst_path=str(tmp_path)
            )
        ).read_text()
    )
    assert len(table["data"]) == 5
    _check_reports(parent.info.run_id, good.info.run_id)

    import torch

    # MLflow 3 keeps models as LoggedModels linked to the run; runs:/<id>/baseline still resolves to it.
    logged = mlflow.search_logged_models(experiment_ids=[tracking], output_format="list")
    assert [(model.name, model.source_run_id) for model in logged] == [("baseline", parent.info.run_id)]
    module = mlflow.pytorch.load_model(f"runs:/{parent.info.run_id}/baseline")
    example = torch.randn(5, 3, 8, 8)
    torch.testing.assert_close(module(example), tiny_artifact.module(example))  # type: ignore[misc]


def _check_reports(parent_id: str, best_id: str) -> None:
    """The parent's reports are mlperf_track.report's, built from its child runs."""
    import mlflow

    markdown = mlflow.artifacts.load_text(f"runs:/{parent_id}/report/report.md")
    assert "## Recommendation" in markdown and "## Summary" in markdown
    assert "- Ship baseline/compile/fp32 at batch 4: 1,600 samples/s, 1.6x the fp32 eager baseline's" in markdown
    assert "configuration: model tinycnn, device cpu" in markdown
    assert "](../figures/latency_vs_batch_size.png)" in markdown  # resolves to the logged figure
    assert "## Failed and killed runs" in markdown and "ExportError" in markdown and "aten::foo" in markdown
    page = mlflow.artifacts.load_text(f"runs:/{parent_id}/report/report.html")
    assert page.count("data:image/png;base64,") == 4
    for config in ("baseline/eager/fp32", "baseline/compile/fp32"):  # the summary rows, one per case
        assert page.count(f"<td>{config}</td>") == 2
    assert best_id[:8] in page and "baseline-onnxruntime-fp32-bs1" in page
    data = json.loads(mlflow.artifacts.load_text(f"runs:/{parent_id}/report/report.json"))
    assert len(data["cases"]) == 4 and len(data["failed"]) == 1
    (answer,) = data["questions"][0]["by_hardware"].values()
    assert answer["recommended"]["run_id"] == best_id
    assert answer["not_eligible"] == {"failed": 1}
    assert {case["parent_run_id"] for case in data["cases"]} == {parent_id}


def test_report_covers_only_this_pipeline(tracking: str) -> None:
    """Two pipelines in one experiment: each parent's report shows its own cases."""
    import mlflow

    from mlperf_track.report.build import report_parent_run

    parents = []
    for p50 in (2.0, 4.0):
        with mlflow.start_run() as parent:
            listener = MlflowPipelineListener(parent.info.run_id, log_model=False)
            result = make_result(p50=p50)
            listener.on_case_end(CaseOutcome(case=result.case, result=result))
            parents.append(parent.info.run_id)
    report = report_parent_run(parents[1], facts=["extra fact"])
    assert report.cases["parent_run_id"].tolist() == [parents[1]]
    assert report.cases[m.LATENCY_P50].tolist() == [4.0]
    assert report.content.facts[1] == "extra fact"
    assert report.questions[0].lines[0].startswith("Ship baseline/eager/fp32 at batch 1: 250.0 samples/s")


def test_a_failing_report_leaves_the_cases_and_warns(
    tracking: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import mlflow

    from mlperf_track.report import build

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("no report today")

    monkeypatch.setattr(build, "report_parent_run", broken)
    with mlflow.start_run() as parent:
        listener = MlflowPipelineListener(parent.info.run_id, log_model=False)
        result = make_result()
        listener.on_case_end(CaseOutcome(case=result.case, result=result))
        listener.on_pipeline_end(PipelineOutcome(config=PipelineConfig(model="tinycnn")))
    assert "could not log the report" in caplog.text and "no report today" in caplog.text
    assert listener.summary_logged
    assert {"summary.json", "summary.csv"} <= _artifact_paths(parent.info.run_id)
    assert _children(parent.info.run_id, tracking)[result.case.name].info.status == "FINISHED"


def test_abort_kills_the_open_child_and_keeps_the_parent(tracking: str) -> None:
    import mlflow

    with mlflow.start_run() as parent:
        listener = MlflowPipelineListener(parent.info.run_id, log_model=False)
        result = make_result()
        listener.on_pipeline_start(PipelineConfig(model="tinycnn"), [result.case])
        listener.on_case_start(result.case)
        listener.abort("KILLED")
        assert mlflow.active_run() is not None and mlflow.active_run().info.run_id == parent.info.run_id  # type: ignore[union-attr]
        listener.log_summary_artifacts()
    child = _children(parent.info.run_id, tracking)[result.case.name]
    assert child.info.status == "KILLED"
    assert child.data.params["batch_size"] == "1"
    notes = mlflow.get_run(parent.info.run_id).data.tags
    assert "was measured" in notes["note.figures/latency_vs_batch_size.png"]
    assert not any(path.startswith("figures/") for path in _artifact_paths(parent.info.run_id))
    assert "No case runs." in mlflow.artifacts.load_text(f"runs:/{parent.info.run_id}/report/report.md")


def test_abort_kills_a_child_interrupted_while_its_case_was_being_logged(
    tracking: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while a finished case is logged into its run: the run left the listener's hands, yet it ends
    KILLED (found in the store), not RUNNING."""
    import mlflow

    from mlperf_track.tracking import logging as tracking_logging

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(tracking_logging, "log_case_result", interrupted)
    with mlflow.start_run() as parent:
        listener = MlflowPipelineListener(parent.info.run_id, log_model=False)
        result = make_result()
        listener.on_case_start(result.case)
        with pytest.raises(KeyboardInterrupt):
            listener.on_case_end(CaseOutcome(case=result.case, result=result))
        listener.abort("KILLED")
    child = _children(parent.info.run_id, tracking)[result.case.name]
    assert child.info.status == "KILLED"
    assert child.data.tags["error.type"] == "KeyboardInterrupt"


def test_case_end_without_start_still_gets_a_child(tracking: str) -> None:
    import mlflow

    with mlflow.start_run() as parent:
        listener = MlflowPipelineListener(parent.info.run_id, log_model=False)
        result = make_result(batch_size=2)
        listener.on_case_end(CaseOutcome(case=result.case, result=result))
    child = _children(parent.info.run_id, tracking)[result.case.name]
    assert child.info.status == "FINISHED"
    assert child.data.metrics[m.LATENCY_P50] == pytest.approx(2.0)


def test_an_interrupt_ends_the_parent_killed_even_when_its_report_fails(
    tracking: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C, then the parent's summary step raises: the parent still ends KILLED (a parent left RUNNING reads as
    a run still measuring), and the interrupt still reaches the caller."""
    import mlflow

    from mlperf_track import pipeline
    from mlperf_track.pipeline.events import PipelineListener
    from mlperf_track.tracking.pipeline_run import _run_and_end

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    def broken() -> None:
        raise RuntimeError("the report broke")

    monkeypatch.setattr(pipeline, "run_pipeline", interrupted)
    parent = mlflow.start_run(experiment_id=tracking).info.run_id
    listener = MlflowPipelineListener(parent, log_model=False)
    monkeypatch.setattr(listener, "log_summary_artifacts", broken)
    with pytest.raises(KeyboardInterrupt):
        _run_and_end(PipelineConfig(model="tinycnn"), PipelineListener(), listener, None)
    assert mlflow.MlflowClient().get_run(parent).info.status == "KILLED"
    assert mlflow.active_run() is None
