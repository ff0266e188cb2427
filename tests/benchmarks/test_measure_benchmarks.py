"""The scoring and summaries of the measurement benchmarks (fidelity, regression gate, min duration), on known data."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gate() -> ModuleType:
    return _load("regression_gate")


@pytest.fixture(scope="module")
def fidelity() -> ModuleType:
    return _load("fidelity")


@pytest.fixture(scope="module")
def min_duration() -> ModuleType:
    return _load("min_duration")


def _run(gate: ModuleType, level: float, seed: int, replicates: int = 3, n: int = 150) -> object:
    rng = np.random.default_rng(seed)
    offset = rng.normal(0, 0.01)  # each process lands a little differently
    return gate.Run([rng.lognormal(np.log(level * (1 + offset)), 0.03, n) for _ in range(replicates)])


def test_gate_scores_a_quiet_machine(gate: ModuleType) -> None:
    a_runs = [_run(gate, 10.0, seed) for seed in range(4)]
    b_runs = [_run(gate, 11.0, 100 + seed) for seed in range(4)]
    scores = {score.mode: score for score in gate.score(a_runs, b_runs, noise_floor=0.01)}
    assert set(scores) == {"threshold-only", "recorded floor", "replicates", "replicates + floor"}
    assert scores["recorded floor"].aa_pairs == 12 and scores["recorded floor"].ab_pairs == 16
    assert scores["recorded floor"].false_alarms <= 0.05 and scores["recorded floor"].detection == 1.0
    assert scores["replicates"].detection == 1.0 and scores["replicates + floor"].detection == 1.0
    assert gate._verdict(scores["recorded floor"]) == "meets both targets"
    text = gate.render(list(scores.values()), a_runs, b_runs, 0.01, "t")
    assert "noise floor given with --noise-floor (taken as known): 1.00%" in text and "/12 pairs" in text


def test_gate_refuses_too_few_runs(gate: ModuleType) -> None:
    with pytest.raises(SystemExit):
        gate._parse(["--calibration-runs", "4"])
    with pytest.raises(SystemExit):
        gate._parse(["--runs", "4"])
    assert gate._parse(["--quick"]).runs == 3


def test_gate_verdict_names_each_miss(gate: ModuleType) -> None:
    assert gate._verdict(gate.Score("x", 0.3, 0.5, 2, 4)) == "too many false alarms; misses slowdowns"
    assert gate._verdict(gate.Score("x", 0.0, 0.9, 2, 4)) == "misses slowdowns"


def test_min_duration_summary(min_duration: ModuleType) -> None:
    runs = [
        min_duration.Run(process, 0, window, p50, 100, 0.01)
        for process, (window, p50) in enumerate([(0.5, 10.0), (0.5, 11.0), (1.0, 10.0), (1.0, 10.1)])
    ]
    rows = {row.window_s: row for row in min_duration.summarise(runs)}
    assert rows[0.5].max_range == pytest.approx(0.1) and rows[0.5].pairs_over_limit == pytest.approx(0.5)
    assert rows[1.0].pairs_over_limit == 0.0 and rows[1.0].runs == 2
    assert "| 0.5 | 2 |" in min_duration.render(list(rows.values()), "t")


def test_min_duration_separates_processes_from_rounds(min_duration: ModuleType) -> None:
    # two processes 10% apart, each repeating itself exactly over two rounds
    runs = [
        min_duration.Run(process, round_, 1.0, level, 100, 0.01)
        for process, level in enumerate([10.0, 11.0])
        for round_ in range(2)
    ]
    (row,) = min_duration.summarise(runs)
    assert row.cv == pytest.approx(np.std(np.log([10.0, 11.0]), ddof=1))
    assert row.within_cv == 0.0
    assert row.pairs_over_limit == pytest.approx(0.5)  # only pairs of different processes count
    with pytest.raises(SystemExit):
        min_duration._parse(["--processes", "6"])


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("[ INFO ]    Median:        3.82 ms", 3.82),
        ("[ INFO ]    Median:        387.82 us", 0.38782),
        ("Average: 1 ms", None),
    ],
)
def test_benchmark_app_median_is_read_in_milliseconds_whatever_unit_it_prints(
    fidelity: ModuleType, line: str, expected: float | None
) -> None:
    found = fidelity.median_latency_ms(f"[ INFO ] Latency:\n{line}\n[ INFO ] Throughput: 1542.62 FPS\n")
    assert found == (None if expected is None else pytest.approx(expected))
