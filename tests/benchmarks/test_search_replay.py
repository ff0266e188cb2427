"""The replay of ``benchmarks/search_efficiency.py`` on its committed tinycnn table: costs, optimum, one search."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from mlperf_track import metrics as m
from mlperf_track.tuning.space import TrialPoint

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
TABLE = BENCHMARKS / "data" / "search_tinycnn_32px.jsonl"


def _load(name: str) -> ModuleType:
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))  # search_efficiency imports search_replay by name
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def replay() -> ModuleType:
    return _load("search_replay")


@pytest.fixture(scope="module")
def table(replay: ModuleType) -> object:
    return replay.ReplayTable.load(TABLE)


def _points() -> list[dict[str, object]]:
    records = [json.loads(line) for line in TABLE.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [record for record in records if record["kind"] == "point"]


def test_the_optimum_is_the_best_full_measurement_within_the_accuracy_limit(replay: ModuleType, table: object) -> None:
    feasible = [
        (record["full"][m.THROUGHPUT], record["config"], record["batch_size"])
        for record in _points()
        if "full" in record and -record["full"].get(m.ACCURACY_TOP1_DELTA, 0.0) <= 0.01
    ]
    best, point = replay.optimum(table)
    assert best == pytest.approx(max(feasible)[0])
    assert (point.choice.key, point.batch_size) == max(feasible)[1:]
    unlimited, _ = replay.optimum(table, max_accuracy_drop=None)
    assert unlimited >= best


def test_the_replay_charges_preparation_once_per_key_and_advances_its_clock(replay: ModuleType, table: object) -> None:
    config = replay.replay_config(table, n_trials=2, sampler="random")
    backend = replay.ReplayBackend(table, replay.short_of(config))
    point = next(p for p in table.space.points() if (table.record(p) or {}).get("prepare_s", 0.0) > 0)
    record = table.record(point)
    case = point.to_case(table.template)
    first = backend.measure(case, timing=backend.short)
    assert first.result is not None
    assert first.result.metrics[m.THROUGHPUT] == pytest.approx(record["short"][m.THROUGHPUT])
    assert backend.last_costs().prepare_s == pytest.approx(record["prepare_s"] + backend.last_costs().variant_build_s)
    assert backend.is_prepared(case)
    before = backend.now
    full = backend.measure(case)
    assert full.result is not None and full.result.metrics[m.THROUGHPUT] == pytest.approx(record["full"][m.THROUGHPUT])
    assert backend.last_costs().prepare_s == 0.0
    assert backend.now - before == pytest.approx(record["full"]["measure_s"])
    missing = TrialPoint(point.choice, 4096)
    assert backend.measure(missing.to_case(table.template)).error is not None
    assert table.grid_cost_s() > sum(float(r["full"]["measure_s"]) for r in _points() if "full" in r)


def test_a_composition_measured_before_its_step_pays_for_building_the_step(replay: ModuleType) -> None:
    """The tables are measured steps first, so a composition's record holds only its last step's build."""
    table = replay.ReplayTable.load(replay.DATA / "search_resnet50_64px.jsonl")
    config = replay.replay_config(table, n_trials=2, sampler="random")
    composition = next(p for p in table.space.points() if "+" in p.choice.variant)
    step = composition.choice.variant.split("+")[0]
    assert table.build_s(step) > 0 and table.build_s(composition.choice.variant) > 0
    first = replay.ReplayBackend(table, replay.short_of(config))
    first.measure(composition.to_case(table.template))
    assert first.last_costs().variant_build_s == pytest.approx(
        table.build_s(step) + table.build_s(composition.choice.variant)
    )
    assert first.has_variant(step)
    after_step = replay.ReplayBackend(table, replay.short_of(config), built={"baseline", step})
    after_step.measure(composition.to_case(table.template))
    assert after_step.last_costs().variant_build_s == pytest.approx(table.build_s(composition.choice.variant))


def test_one_replayed_search_reports_when_it_reached_the_target(table: object) -> None:
    efficiency = _load("search_efficiency")
    best, _ = efficiency.optimum(table)
    run = efficiency.run_search(table, "costaware", 0, budget=10, best=best, limit_mb=None)
    assert run.trials == 10 and 0.0 < (run.best_at_budget or 0.0) <= 1.0 + 1e-9
    if run.trials_to_target is not None:
        assert 1 <= run.trials_to_target <= 10 and 0.0 < (run.seconds_to_target or 0.0) <= run.wall_s + 1e-6
    rows = efficiency.summarise([run], table.space.size, table.grid_cost_s())
    assert rows[0]["strategy"] == "costaware" and rows[0]["seeds"] == 1


def test_the_target_is_judged_on_average_and_in_every_seed() -> None:
    efficiency = _load("search_efficiency")

    def run(seed: int, trials: int | None, seconds: float | None) -> object:
        return efficiency.SearchRun("costaware", seed, 24, 1.0, trials, seconds, 100.0)

    grid_trials, grid_s = 100, 1000.0  # limits: 10 trials, 150 s
    fast = efficiency.summarise([run(0, 5, 50.0), run(1, 12, 100.0)], grid_trials, grid_s)[0]
    assert fast["met_on_average"] and not fast["met_every_seed"]  # mean 8.5 trials and 75 s; seed 1 took 12
    assert efficiency._on_average(fast, 10.0, 150.0).startswith("target on average MET")
    slow = efficiency.summarise([run(0, 5, 50.0), run(1, 9, 300.0)], grid_trials, grid_s)[0]
    assert not slow["met_on_average"]  # mean 175 s
    lost = efficiency.summarise([run(0, 5, 50.0), run(1, None, None)], grid_trials, grid_s)[0]
    assert not lost["met_on_average"]  # a seed that never reached 97% fails the average verdict too
    assert "no seed reached" in efficiency._on_average({"trials_to_target": None}, 10.0, 150.0)
