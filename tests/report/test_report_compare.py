"""Regression detection: thresholds, the statistics, sample loading and the ``compare`` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from report_experiment_factory import MACHINE_A, FakeExperiment, latency_samples, write_samples_csv

from mlperf_track.cli import main
from mlperf_track.errors import ConfigError, DataError
from mlperf_track.report.compare import (
    Threshold,
    check_regression,
    check_regressions,
    compare_samples,
    parse_thresholds,
)
from mlperf_track.report.samples import load_samples

N = 300


def test_parse_thresholds_reads_relative_absolute_and_several() -> None:
    assert parse_thresholds("p50:5%") == (Threshold("p50", 5.0, True),)
    assert parse_thresholds("median:2.5%, p99:0.5ms") == (Threshold("p50", 2.5, True), Threshold("p99", 0.5, False))
    assert parse_thresholds("mean:10%")[0].text == "mean:10%"


@pytest.mark.parametrize("text", ["", "p50", "p50:5", "p42:5%", "p50:-5%", "p50:five%"])
def test_parse_thresholds_refuses_malformed_items(text: str) -> None:
    with pytest.raises(ConfigError, match="--fail-on"):
        parse_thresholds(text)


def test_same_distribution_is_not_a_regression() -> None:
    base, cand = latency_samples(10.0, seed=1, n=N), latency_samples(10.0, seed=2, n=N)
    comparison = compare_samples(base, cand)
    assert check_regressions(comparison, parse_thresholds("p50:5%,mean:5%,p99:10%")) == []
    change = comparison.changes["p50"]
    assert change.ci_low < 1.0 < change.ci_high


def test_injected_slowdown_is_a_regression_with_a_message() -> None:
    base, cand = latency_samples(10.0, seed=1, n=N), latency_samples(11.0, seed=2, n=N)
    comparison = compare_samples(base, cand)
    message = check_regression(comparison, Threshold("p50", 5.0))
    assert message is not None and "p50 regressed" in message and "p50:5%" in message
    assert comparison.p_slower < 1e-6
    assert comparison.changes["p50"].ci_low > 1.05
    # Beyond the 10% slowdown nothing fails.
    assert check_regression(comparison, Threshold("p50", 15.0)) is None
    assert check_regression(comparison, Threshold("p50", 0.5, relative=False)) is not None


def test_speedup_is_not_a_regression_but_is_significantly_faster() -> None:
    base, cand = latency_samples(10.0, seed=1, n=N), latency_samples(8.0, seed=2, n=N)
    comparison = compare_samples(base, cand)
    assert check_regressions(comparison, parse_thresholds("p50:1%")) == []
    assert comparison.significantly_faster("p50")


def test_tail_only_regression_is_caught_by_p99_not_p50() -> None:
    rng = np.random.default_rng(3)
    base = latency_samples(10.0, seed=1, n=1000)
    cand = latency_samples(10.0, seed=2, n=1000)
    slow = rng.choice(cand.size, size=50, replace=False)
    cand[slow] *= 1.8  # 5% of the calls hit a slow path
    comparison = compare_samples(base, cand)
    assert check_regression(comparison, Threshold("p50", 5.0)) is None
    assert check_regression(comparison, Threshold("p99", 20.0)) is not None


def test_comparison_is_reproducible_for_a_seed() -> None:
    base, cand = latency_samples(10.0, seed=1, n=N), latency_samples(10.3, seed=2, n=N)
    first = compare_samples(base, cand, seed=7).as_dict()
    assert compare_samples(base, cand, seed=7).as_dict() == first
    json.dumps(first)


def test_load_samples_from_csv_json_and_errors(tmp_path: Path) -> None:
    samples = latency_samples(5.0, seed=1, n=20)
    csv_path = write_samples_csv(tmp_path / "samples.csv", samples)
    assert np.allclose(load_samples(str(csv_path)).latency_ms, samples)
    result = {"case": {"model": "m"}, "metrics": {}, "samples_ms": samples.tolist()}
    (tmp_path / "one.json").write_text(json.dumps(result))
    assert np.allclose(load_samples(str(tmp_path / "one.json")).latency_ms, samples)
    (tmp_path / "two.json").write_text(json.dumps({"results": [result, result]}))
    with pytest.raises(DataError, match="2 results"):
        load_samples(str(tmp_path / "two.json"))
    (tmp_path / "bad.csv").write_text("iteration,seconds\n0,1\n")
    with pytest.raises(DataError, match="latency_ms"):
        load_samples(str(tmp_path / "bad.csv"))
    write_samples_csv(tmp_path / "short.csv", samples[:3])
    with pytest.raises(DataError, match="at least"):
        load_samples(str(tmp_path / "short.csv"))
    with pytest.raises(DataError, match="no such file"):
        load_samples(str(tmp_path / "missing.csv"))


def _write_pair(tmp_path: Path, slowdown: float) -> tuple[str, str]:
    base = write_samples_csv(tmp_path / "base.csv", latency_samples(10.0, seed=11, n=N))
    cand = write_samples_csv(tmp_path / "cand.csv", latency_samples(10.0 * slowdown, seed=12, n=N))
    return str(base), str(cand)


def test_cli_exits_1_on_injected_slowdown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base, cand = _write_pair(tmp_path, 1.12)
    out_json = tmp_path / "comparison.json"
    code = main(["compare", "--baseline", base, "--candidate", cand, "--fail-on", "p50:5%", "--json", str(out_json)])
    output = capsys.readouterr().out
    assert code == 1
    assert "REGRESSION" in output and "p50 regressed" in output
    data = json.loads(out_json.read_text())
    assert data["regressions"] and data["thresholds"] == ["p50:5%"]


def test_cli_exits_0_on_one_distribution(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base, cand = _write_pair(tmp_path, 1.0)
    assert main(["compare", "--baseline", base, "--candidate", cand, "--fail-on", "p50:5%,mean:5%"]) == 0
    assert "no significant regression" in capsys.readouterr().out


def test_cli_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base, cand = _write_pair(tmp_path, 1.0)
    assert main(["compare", "--baseline", base, "--candidate", cand, "--fail-on", "p50:lots"]) == 2
    assert main(["compare", "--baseline", base, "--candidate", str(tmp_path / "nope.csv")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_cli_compares_mlflow_runs_by_id(
    two_machine_experiment: FakeExperiment, cli_tracking: str, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = two_machine_experiment.case_run_ids
    eager = runs[(MACHINE_A, "baseline-eager-fp32-bs4")]
    onnx = runs[(MACHINE_A, "baseline-onnxruntime-fp32-bs4")]
    # eager is about 50% slower than ONNX Runtime in the fake experiment.
    assert main(["compare", "--baseline", onnx, "--candidate", f"runs:/{eager}", "--fail-on", "p50:5%"]) == 1
    assert main(["compare", "--baseline", eager, "--candidate", onnx]) == 0
    assert "faster" in capsys.readouterr().out
    assert main(["compare", "--baseline", "0123456789abcdef", "--candidate", onnx]) == 2
