"""The significance rule of ``compare``: a regression must beat the between-run spread, recorded or replicated."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from report_experiment_factory import write_samples_csv

from mlperf_track.cli import main
from mlperf_track.errors import ConfigError
from mlperf_track.report.compare import Threshold, check_regression, compare_samples
from mlperf_track.report.noise import (
    MIN_FLOOR_RUNS,
    RecordedFloor,
    detectable_change,
    floor_bounds,
    load_noise_floor,
    parse_noise_floor,
)
from mlperf_track.report.noise_floor import record_noise_floor

P50_3 = Threshold("p50", 3.0)
WITHIN = 0.05  # spread of the calls inside one run (log sd)
BETWEEN = 0.02  # spread of one run's level between processes (log sd), the quiet 2-core machine's ~2%


def _run(level: float, offset: float, seed: int, n: int = 300) -> np.ndarray:
    """One run: its process landed ``offset`` (log) away from ``level``; calls spread by WITHIN around that."""
    return np.random.default_rng(seed).lognormal(np.log(level) + offset, WITHIN, n)


def _offsets(count: int, seed: int) -> np.ndarray:
    """``count`` process offsets with a sample sd of exactly BETWEEN (the known spread of the synthetic machine)."""
    draws = np.random.default_rng(seed).standard_normal(count)
    return BETWEEN * (draws - draws.mean()) / draws.std(ddof=1)


def _floor() -> RecordedFloor:
    runs = [_run(10.0, offset, seed=100 + i) for i, offset in enumerate(_offsets(MIN_FLOOR_RUNS, seed=1))]
    return record_noise_floor(runs, description="synthetic")


def test_the_recorded_floor_is_the_spread_between_runs_not_within() -> None:
    floor = _floor()
    assert floor.runs == MIN_FLOOR_RUNS
    # the median of 300 calls adds ~0.4% to the 2% between runs; the 5% within a run must not leak in
    assert floor.floors["p50"] == pytest.approx(BETWEEN, abs=0.004)
    assert set(floor.floors) >= {"p50", "mean", "p99"}


def test_a_floor_needs_eight_separate_runs() -> None:
    with pytest.raises(ConfigError, match="at least 8 runs"):
        record_noise_floor([_run(10.0, 0.0, seed=i) for i in range(MIN_FLOOR_RUNS - 1)])
    with pytest.raises(ConfigError, match=r"runs\[1\]"):
        record_noise_floor([np.array([1.0]), np.array([])] + [np.array([1.0])] * 6)


def test_an_aa_pair_within_the_noise_passes_and_a_ten_percent_slowdown_fails() -> None:
    floor = _floor()
    base, same = _run(10.0, 0.0, seed=1), _run(10.0, 0.04, seed=2)  # identical code, process 4% slower
    blind = compare_samples(base, same, statistics=("p50",), n_resamples=300)
    assert blind.noise.threshold_only and check_regression(blind, P50_3) is not None  # what the old gate did
    aware = compare_samples(base, same, statistics=("p50",), n_resamples=300, noise_floor=floor)
    assert aware.noise.source == "recorded" and aware.noise.runs == MIN_FLOOR_RUNS
    assert check_regression(aware, P50_3) is None
    slow = compare_samples(base, _run(11.0, 0.0, seed=3), statistics=("p50",), n_resamples=300, noise_floor=floor)
    message = check_regression(slow, P50_3)
    assert message is not None and "recorded floor of synthetic" in message


def test_the_threshold_only_fallback_is_announced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = write_samples_csv(tmp_path / "base.csv", _run(10.0, 0.0, seed=1))
    cand = write_samples_csv(tmp_path / "cand.csv", _run(10.0, 0.0, seed=2))
    out = tmp_path / "cmp.json"
    assert main(["compare", "--baseline", str(base), "--candidate", str(cand), "--json", str(out)]) == 0
    assert "the gate is threshold-only" in capsys.readouterr().out
    noise = json.loads(out.read_text())["noise"]
    assert noise["source"] == "none" and noise["threshold_only"] is True


def test_cli_records_a_floor_and_compare_uses_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = [
        str(write_samples_csv(tmp_path / f"run{i}.csv", _run(10.0, offset, seed=200 + i)))
        for i, offset in enumerate(_offsets(MIN_FLOOR_RUNS, seed=2))
    ]
    floor_path = tmp_path / "floor.json"
    assert main(["noise-floor", *paths, "--output", str(floor_path)]) == 0
    assert "noise floor over 8 runs: p50" in capsys.readouterr().out
    assert load_noise_floor(floor_path).runs == MIN_FLOOR_RUNS
    base = write_samples_csv(tmp_path / "base.csv", _run(10.0, 0.0, seed=1))
    cand = write_samples_csv(tmp_path / "cand.csv", _run(10.0, 0.04, seed=2))
    args = ["compare", "--baseline", str(base), "--candidate", str(cand), "--fail-on", "p50:3%"]
    assert main(args) == 1  # threshold-only: a 4% process offset is called a regression
    capsys.readouterr()
    assert main([*args, "--noise-floor", str(floor_path)]) == 0
    assert "recorded floor" in capsys.readouterr().out
    assert main(["noise-floor", *paths[:7], "--output", str(tmp_path / "few.json")]) == 2


def test_a_floor_file_from_too_few_runs_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "floor.json"
    path.write_text(json.dumps({**RecordedFloor({"p50": 0.02}, 8).as_dict(), "runs": 4}))
    with pytest.raises(ConfigError, match="--noise-floor"):
        parse_noise_floor(str(path))
    with pytest.raises(ConfigError, match="--noise-floor"):
        parse_noise_floor(str(tmp_path / "missing.json"))
    path.write_text(json.dumps(RecordedFloor({"p50": 0.02}, 8).as_dict()))
    assert parse_noise_floor(str(path)) == RecordedFloor({"p50": 0.02}, 8)


def test_an_estimated_floor_widens_the_bound() -> None:
    known_low, _ = floor_bounds(1.0, 0.02, 0.05)
    estimated_low, _ = floor_bounds(1.0, 0.02, 0.05, runs=8)
    assert estimated_low < known_low  # t(7) > z
    assert detectable_change(0.02, 0.05) == pytest.approx(0.0476, abs=5e-4)  # 1.645 x sqrt(2) x 2%
    assert detectable_change(0.02, 0.05, runs=8) == pytest.approx(0.0551, abs=5e-4)  # 1.895 x sqrt(2) x 2%


def test_the_rule_is_calibrated_on_many_run_pairs() -> None:
    """Two runs of one code: ~alpha of the ordered pairs flagged; a 10% slowdown at a 2% spread: >= 95% flagged."""
    rng = np.random.default_rng(7)
    a = rng.normal(0.0, BETWEEN, 20_000)
    b = rng.normal(0.0, BETWEEN, 20_000)
    aa = np.array([floor_bounds(float(np.exp(y - x)), BETWEEN, 0.05)[0] > 1.0 for x, y in zip(a, b, strict=True)])
    slow = np.array(
        [floor_bounds(float(np.exp(y + np.log(1.1) - x)), BETWEEN, 0.05)[0] > 1.0 for x, y in zip(a, b, strict=True)]
    )
    assert 0.04 <= aa.mean() <= 0.06
    assert slow.mean() >= 0.95


def test_false_alarms_and_detection_end_to_end() -> None:
    """Separate synthetic runs, every ordered pair through compare with a recorded floor."""
    floor = _floor()
    rng = np.random.default_rng(11)
    a_runs = [_run(10.0, float(rng.normal(0, BETWEEN)), seed=300 + i) for i in range(8)]
    b_runs = [_run(11.0, float(rng.normal(0, BETWEEN)), seed=400 + i) for i in range(8)]

    def flags(x: np.ndarray, y: np.ndarray) -> bool:
        comparison = compare_samples(x, y, statistics=("p50",), n_resamples=200, noise_floor=floor)
        return check_regression(comparison, P50_3) is not None

    aa = [flags(x, y) for x, y in itertools.permutations(a_runs, 2)]
    ab = [flags(x, y) for x, y in itertools.product(a_runs, b_runs)]
    blind = [
        check_regression(compare_samples(x, y, statistics=("p50",), n_resamples=200), P50_3) is not None
        for x, y in itertools.permutations(a_runs, 2)
    ]
    assert sum(aa) / len(aa) <= 0.05 < sum(blind) / len(blind)
    assert sum(ab) / len(ab) >= 0.95
