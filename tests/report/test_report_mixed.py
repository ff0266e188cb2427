"""Report, export and compare on an experiment as users fill it: two models, three questions, a tune with its
trials, an evaluator run, failed, out-of-memory, invalid and killed cases (all logged by the package itself)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from mixed_experiment import MixedExperiment
from mlflow import MlflowClient

from mlperf_track import metrics as m
from mlperf_track.cli import main
from mlperf_track.engine.eligibility import Limits
from mlperf_track.report.build import Report, build_report, parent_limits
from mlperf_track.report.export import collect_tables
from mlperf_track.report.runs import load_runs
from mlperf_track.report.sections import limits_from_parents, question_result
from mlperf_track.report.tables import CASE, EVALUATOR, PIPELINE, TRIAL, TUNE, pipeline_cases, run_kinds

#: The experiment is logged by the real listener, tuner and evaluator: about 35 s on a quiet 2-core machine.
pytestmark = pytest.mark.slow
QUESTIONS = ["resnet18 · 32 px · digits", "resnet18 · 64 px · digits", "tinycnn · 32 px · digits"]


@pytest.fixture
def cli_store(mixed_experiment: tuple[str, MixedExperiment], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    uri, _ = mixed_experiment
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLPERF_TRACK_EXPERIMENT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return uri


def test_every_kind_of_run_is_told_apart(mixed_experiment: tuple[str, MixedExperiment]) -> None:
    uri, made = mixed_experiment
    runs = load_runs("mlperf_track/mixed", tracking_uri=uri).set_index("run_id")
    kinds = run_kinds(runs.reset_index()).set_axis(runs.index)
    assert kinds[made.evaluator_run] == EVALUATOR
    assert kinds[made.tune_parent] == TUNE
    assert (kinds[runs["parent_run_id"] == made.tune_parent] == TRIAL).all()
    assert {kinds[parent] for parent in [*made.pipelines.values(), made.killed_parent]} == {PIPELINE}
    assert (kinds == CASE).sum() == 3 * 24 + 4  # three pipelines, and the one interrupted after three cases
    cases = pipeline_cases(runs.reset_index())
    assert sorted(cases["question"].unique()) == QUESTIONS
    assert not cases["batch_size"].isna().any()  # the evaluator run (no batch size) is not a case
    killed = cases[cases["status"] == "KILLED"]
    assert len(killed) == 1 and not killed["measured"].any() and killed["hardware"].iloc[0] != "unknown"


@pytest.fixture(scope="module")
def mixed_report(mixed_experiment: tuple[str, MixedExperiment]) -> Report:
    uri, _ = mixed_experiment
    return build_report(load_runs("mlperf_track/mixed", tracking_uri=uri), title="mixed")


def test_the_report_answers_each_question_on_its_own(mixed_report: Report) -> None:
    report = mixed_report
    assert [question.title for question in report.questions] == QUESTIONS
    for question in report.questions:
        (answer,) = question.recommendations.values()
        assert answer.best is not None and answer.best.config == "quantized/onnxruntime/int8"
        assert answer.best.batch_size == 32
        # The fastest eligible case of this question, not of the experiment (tinycnn is 8x faster).
        measured = question.cases[question.cases["measured"].astype(bool) & question.cases["eligible"]]
        assert answer.best.metrics[m.THROUGHPUT] == measured[m.THROUGHPUT].max()
        assert answer.best.question == tuple(question.title.split(" · "))
        assert "(95% CI -1.0..+0.2: no measurable change)" in answer.lines[0]
        assert answer.lines[1].startswith("Runner-up on the Pareto front: baseline/onnxruntime/fp32 at batch 32")
    counts = {q.title: next(iter(q.recommendations.values())).ranking.counts() for q in report.questions}
    assert counts["resnet18 · 64 px · digits"] == {
        "failed": 1,
        "out of memory": 1,
        "invalid measurement": 1,
        "accuracy drop": 5,  # pruned (-3 points) at 1 and 8, distilled (-8 points) at 1, 8 and 32
    }
    assert counts["tinycnn · 32 px · digits"]["killed"] == 1
    excluded = report.content.sections[2].excluded
    assert set(excluded["reason"]) == {"failed", "out of memory", "killed", "invalid measurement", "accuracy drop"}
    why = dict(zip(excluded["reason"], excluded["why"], strict=False))
    assert "the median's 95% CI is 6.1% wide" in why["invalid measurement"]
    assert "OutOfMemoryError" in why["out of memory"] and "exceeds the 1 point accuracy limit" in why["accuracy drop"]
    stems = set(report.content.figures)
    assert (
        "resnet18_32_px_digits__accuracy_vs_latency" in stems
        and "tinycnn_32_px_digits__hardware_comparison" not in stems
    )
    assert len(stems) == 3 * 4
    facts = "\n".join(report.content.facts)
    assert "1 tune run(s)" in facts and "6 tuning trial(s)" in facts and "1 evaluator run(s)" in facts


def test_tables_sort_by_batch_size_then_throughput(mixed_report: Report) -> None:
    summary = mixed_report.content.sections[0].summary
    batches = summary["batch"].astype(int)
    assert batches.is_monotonic_increasing
    for _, rows in summary.groupby(batches):
        speeds = rows["samples/s"].str.replace(",", "").astype(float)
        assert speeds.is_monotonic_decreasing
    assert (summary["verdict"] == "recommended").sum() == 1 and (summary["verdict"] == "runner-up").sum() == 1


def test_cli_report_and_export_take_a_prefix(
    cli_store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "--experiment", "mlperf_track", "--output-dir", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    for question in QUESTIONS:
        assert f"Recommendation: {question}" in out
    assert "logged under report/ of run" in out  # one experiment matched: a report run was made there
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [item["question"] for item in data["questions"]] == QUESTIONS
    target = str(tmp_path / "all.parquet")
    assert main(["export", "--experiment", "mlperf_track", "--to", target, "--no-samples"]) == 0
    runs = pd.read_parquet(tmp_path / "all.parquet" / "runs.parquet")
    assert set(runs["experiment_name"]) == {"mlperf_track/mixed"}
    # Two experiments under the prefix: reported together, logged only to a run given with --run-id.
    MlflowClient(cli_store).create_experiment("mlperf_track/zz-empty")
    assert main(["report", "--experiment", "mlperf_track", "--output-dir", str(tmp_path / "two")]) == 0
    out = capsys.readouterr().out
    assert "logged under" not in out and "Recommendation: tinycnn · 32 px · digits" in out
    assert main(["report", "--experiment", "mlperf", "--no-log"]) == 2
    assert "mlperf_track/mixed" in capsys.readouterr().err  # the closest names


def test_the_limit_is_what_the_pipelines_recorded_unless_given(
    mixed_experiment: tuple[str, MixedExperiment], cli_store: str
) -> None:
    uri, made = mixed_experiment
    runs = load_runs("mlperf_track/mixed", tracking_uri=uri)
    cases = pipeline_cases(runs)
    mine = cases[cases["question"] == QUESTIONS[0]]
    limits, notes = limits_from_parents(mine, runs)
    assert limits == Limits(max_accuracy_drop=0.01) and notes == []  # config.max_accuracy_drop of the parent
    assert parent_limits(MlflowClient(uri), made.pipelines["resnet18 · 32 px"]) == limits
    (answer,) = question_result(QUESTIONS[0], mine, Limits()).recommendations.values()
    assert answer.best is not None and answer.best.config == "distilled/onnxruntime/fp32"  # no limit: the fastest
    assert main(["report", "--experiment", "mlperf_track/mixed", "--max-accuracy-drop", "1pt", "--no-log"]) == 2


def test_export_tables_survive_every_kind_of_run(mixed_experiment: tuple[str, MixedExperiment]) -> None:
    uri, made = mixed_experiment
    tables = collect_tables("mlperf_track/mixed", tracking_uri=uri)
    runs = tables["runs"].set_index("run_id")
    assert runs.loc[made.killed_parent, "status"] == "KILLED"
    assert made.evaluator_run in runs.index and made.evaluator_run not in set(tables["samples"]["run_id"])


def test_compare_by_run_name_or_says_which_ids_to_use(cli_store: str, capsys: pytest.CaptureFixture[str]) -> None:
    name = "baseline-eager-fp32-bs8"  # one per pipeline: ambiguous
    assert main(["compare", "--baseline", name, "--candidate", name]) == 2
    err = capsys.readouterr().err
    assert "runs are named so" in err and "pass one of their ids" in err and "--experiment" in err
    assert main(["compare", "--baseline", "no-such-run", "--candidate", name]) == 2
    assert "mlflow runs list" in capsys.readouterr().err
    assert main(["compare", "--baseline", "evaluate-mlp", "--candidate", "evaluate-mlp"]) == 2
    assert "evaluator run with one file per batch size" in capsys.readouterr().err
