"""Reports: tidy runs, Pareto front, summary, figures, the written files and the ``report`` command."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from report_experiment_factory import MACHINE_A, MACHINE_B, FakeExperiment

from mlperf_track import metrics as m
from mlperf_track.cli import main
from mlperf_track.errors import ConfigError
from mlperf_track.report.build import build_report, write_report
from mlperf_track.report.runs import load_runs
from mlperf_track.report.tables import case_runs, config_labels, pareto_mask


def test_pareto_mask_keeps_only_undominated_rows() -> None:
    frame = pd.DataFrame({"speed": [10.0, 20.0, 15.0, 5.0, 20.0, None], "acc": [0.9, 0.8, 0.85, 0.95, 0.7, 0.99]})
    mask = pareto_mask(frame, [("speed", True), ("acc", True)])
    assert mask.tolist() == [True, True, True, True, False, False]


def test_config_labels_show_what_varies() -> None:
    frame = pd.DataFrame(
        {
            "run_name": ["a", "b"],
            "model": ["m", "m"],
            "variant": ["baseline", "baseline"],
            "runtime": ["eager", "compile"],
            "precision": ["fp32", "fp32"],
            "num_threads": ["1", "2"],
            "option.compile_mode": ["default", "default"],
        }
    )
    assert config_labels(frame).tolist() == ["baseline/eager/fp32/threads=1", "baseline/compile/fp32/threads=2"]


def test_load_runs_tidies_params_metrics_and_tags(
    two_machine_experiment: FakeExperiment, report_store: tuple[str, Path]
) -> None:
    runs = load_runs("two-machines", tracking_uri=report_store[0])
    assert len(runs) == 1 + 2 * 9 + 1  # parent, cases on two machines, one failure
    cases = case_runs(runs)
    assert len(cases) == 18
    assert str(cases["batch_size"].dtype) == "Int64"
    assert set(cases["hardware"]) == {MACHINE_A, MACHINE_B}
    assert cases["memory_mb"].notna().all()
    children = load_runs(
        "two-machines", tracking_uri=report_store[0], parent_run_id=two_machine_experiment.parent_run_id
    )
    assert len(children) == 19


def test_unknown_experiment_names_close_matches(report_store: tuple[str, Path], two_machine_experiment: object) -> None:
    with pytest.raises(ConfigError, match="two-machines"):
        load_runs("two-machine", tracking_uri=report_store[0])


def test_report_files_are_self_contained_and_complete(
    two_machine_experiment: FakeExperiment, report_store: tuple[str, Path], tmp_path: Path
) -> None:
    runs = load_runs("two-machines", tracking_uri=report_store[0])
    report = build_report(runs, title="tiny report", source="experiment 'two-machines'")
    files = write_report(report, tmp_path)
    expected_figures = {
        "latency_vs_batch_size",
        "throughput_vs_batch_size",
        "memory_vs_batch_size",
        "accuracy_vs_latency",
        "hardware_comparison",
    }
    assert set(report.content.figures) == expected_figures
    for stem in expected_figures:
        assert files[f"figures/{stem}.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = files["report.html"].read_text()
    assert page.count("data:image/png;base64,") == len(expected_figures)
    assert not re.search(r"""(src|href)=["']?(https?:|//|figures/)""", page)  # nothing outside the page
    assert "ExportError" in page and "pruned-openvino-fp32-bs1" in page
    markdown = files["report.md"].read_text()
    assert "## Summary" in markdown and "](figures/latency_vs_batch_size.png)" in markdown
    summary = markdown.split("## Summary")[1].split("## Not eligible")[0]
    assert summary.count("| baseline/") + summary.count("| quantized/") == 18
    data = json.loads(files["report.json"].read_text())
    assert len(data["cases"]) == 18
    # The quantized model is fastest but loses 1.1 points of top-1, beyond the default 1-point limit.
    (question,) = data["questions"]
    best = question["by_hardware"][MACHINE_A]["recommended"]
    assert best["config"] == "baseline/onnxruntime/fp32" and best["batch_size"] == 16
    assert best["hardware"] == MACHINE_A
    assert question["by_hardware"][MACHINE_A]["not_eligible"] == {"failed": 1, "accuracy drop": 3}
    assert "quantized/onnxruntime/fp32 | 16 | " in markdown.split("## Not eligible")[1]
    # The quantized model is fastest but least accurate; the baseline ONNX model is the accurate end.
    front = {(case["config"], case["hardware"]) for case in data["cases"] if case["pareto"]}
    assert ("quantized/onnxruntime/fp32", MACHINE_A) in front
    assert ("baseline/onnxruntime/fp32", MACHINE_A) in front
    assert ("baseline/eager/fp32", MACHINE_B) not in front


def test_report_without_accuracy_or_cases_explains_what_is_missing(tmp_path: Path) -> None:
    runs = pd.DataFrame(
        {
            "run_id": ["r1"],
            "run_name": ["x"],
            "status": ["FINISHED"],
            "batch_size": [1],
            "variant": ["baseline"],
            "runtime": ["eager"],
            "precision": ["fp32"],
            "device": ["cpu"],
            "hw.cpu": ["cpu"],
            m.LATENCY_P50: [2.0],
            m.THROUGHPUT: [500.0],
        }
    )
    report = build_report(runs, title="no accuracy")
    assert "accuracy_vs_latency" not in report.content.figures
    (section,) = report.content.sections
    assert any("accuracy" in note for note in section.notes)
    assert any("memory" in note for note in section.notes)
    # No limit was recorded: the pipeline default (1 point) applies, and the fp32 baseline needs no accuracy.
    assert section.recommendation[0].startswith("Ship baseline/eager/fp32 at batch 1: 500.0 samples/s")
    empty = build_report(runs.iloc[:0], title="empty")
    files = write_report(empty, tmp_path)
    assert "No case runs." in files["report.md"].read_text()


def test_cli_report_logs_to_the_given_run(
    fresh_experiment: FakeExperiment, cli_tracking: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parent = fresh_experiment.parent_run_id
    code = main(
        ["report", "--experiment", fresh_experiment.name, "--run-id", parent, "--output-dir", str(tmp_path / "out")]
    )
    assert code == 0
    assert "report.html" in capsys.readouterr().out
    client = MlflowClient(cli_tracking)
    logged = {item.path for item in client.list_artifacts(parent, "report")}
    assert {"report/report.md", "report/report.html", "report/report.json", "report/figures"} <= logged
    assert (tmp_path / "out" / "report.html").is_file()


def test_cli_report_makes_a_report_run_when_none_is_given(
    fresh_experiment: FakeExperiment, cli_tracking: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLPERF_TRACK_EXPERIMENT", fresh_experiment.name)
    assert main(["report"]) == 0
    client = MlflowClient(cli_tracking)
    runs = client.search_runs([fresh_experiment.experiment_id], "tags.`mlperf_track.role` = 'report'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert any(item.path == "report/report.html" for item in client.list_artifacts(runs[0].info.run_id, "report"))
    assert (Path("mlperf_track_report") / fresh_experiment.name / "report.md").is_file()


def test_cli_report_unknown_experiment_exits_2(cli_tracking: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--experiment", "no-such-experiment", "--no-log"]) == 2
    assert "no-such-experiment" in capsys.readouterr().err


def test_run_kinds_tell_cases_from_everything_else_an_experiment_holds() -> None:
    from mlperf_track.report.tables import run_kinds

    case = {"variant": "baseline", "runtime": "eager", "precision": "fp32", "batch_size": 1, m.LATENCY_P50: 1.0}
    frame = pd.DataFrame(
        [
            {"run_id": "case", **case},
            {"run_id": "trial", **case, "trial.number": "3"},
            {"run_id": "evaluator", m.LATENCY_P50: 1.0, f"{m.LATENCY_P50}_bs8": 2.0},
            {"run_id": "parent", "model": "m", "mlperf_track.role": "pipeline"},
            {"run_id": "tune", "model": "m", "study.objective": "throughput"},
            {"run_id": "load", "load.scenario": "server", "deploy.workers": "1"},
            {"run_id": "mystery"},
        ]
    )
    kinds = dict(zip(frame["run_id"], run_kinds(frame), strict=True))
    assert kinds == {
        "case": "case",
        "trial": "tuning trial",
        "evaluator": "evaluator",
        "parent": "pipeline",
        "tune": "tune",
        "load": "load test",
        "mystery": "other",
    }
