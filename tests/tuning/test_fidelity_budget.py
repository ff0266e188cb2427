"""Multi-fidelity (a short first measurement, the pruners) and the time budget, with the fake's simulated clock."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import mlflow
import optuna
import pytest
from optuna.trial import TrialState
from tuning_fakes import FakeBackend, runs_of, small_space

from mlperf_track import metrics as m
from mlperf_track.pipeline.events import CaseOutcome
from mlperf_track.spec import CaseSpec, TimingConfig
from mlperf_track.tuning.budget import TimeBudget
from mlperf_track.tuning.config import TuneConfig
from mlperf_track.tuning.pruning import CiPruner, optimistic_bound, short_timing
from mlperf_track.tuning.runner import run_tune
from mlperf_track.tuning.space import SearchSpace

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _config(**kwargs: object) -> TuneConfig:
    values: dict[str, object] = {"device": "cpu", "n_trials": 12, "seed": 0, "storage": "none"}
    values.update(kwargs)
    return TuneConfig.create("fakenet", **values)


def test_short_timing_is_a_short_window_of_the_full_rules() -> None:
    full = TimingConfig(warmup_iters=5, warmup_s=0.5, min_iters=20, min_time_s=1.0, max_time_s=5.0, target_rel_ci=0.01)
    short = short_timing(full, 0.3)
    assert (short.max_time_s, short.min_time_s, short.min_iters) == (0.3, 0.0, 5)
    assert short.warmup_s <= 0.1 and short.target_rel_ci >= 0.05
    assert short.max_cv == full.max_cv and short.confidence == full.confidence


def test_optimistic_bound_uses_the_median_ci() -> None:
    metrics = {m.LATENCY_P50: 10.0, m.LATENCY_P50_CI_LOW: 8.0, m.LATENCY_P50_CI_HIGH: 12.0}
    assert optimistic_bound(100.0, metrics, maximize=True) == pytest.approx(125.0)
    assert optimistic_bound(20.0, metrics, maximize=False) == pytest.approx(16.0)
    assert optimistic_bound(100.0, {}, maximize=True) == pytest.approx(100.0 / 0.75)  # no CI: a wide guess


def test_pruned_trials_keep_their_short_figures_apart_and_are_never_the_answer() -> None:
    backend = FakeBackend(small_space((1, 8, 64)))
    outcome = run_tune(_config(sampler="grid", n_trials=9, max_accuracy_drop=None), backend, track=False)
    trials = outcome.study.trials
    pruned = [t for t in trials if t.user_attrs.get("outcome") == "pruned"]
    measured = [t for t in trials if t.user_attrs.get("outcome") == "measured"]
    assert pruned and measured
    for trial in pruned:
        assert trial.state == TrialState.PRUNED and trial.user_attrs["fidelity"] == "short"
        assert "metrics" not in trial.user_attrs and m.THROUGHPUT in trial.user_attrs["short_metrics"]
        assert trial.user_attrs["pruned_because"]
    for trial in measured:
        assert trial.user_attrs["fidelity"] == "full" and m.THROUGHPUT in trial.user_attrs["metrics"]
    assert {t.number for t in outcome.summary.best} <= {t.number for t in measured}
    frame = outcome.frame.set_index("number")
    for trial in pruned:
        row = frame.loc[trial.number]
        assert row["value.throughput"] is None or row["value.throughput"] != row["value.throughput"]  # None/NaN
        assert row["short_throughput"] > 0 and not row["eligible"]
    assert outcome.summary.n_pruned == len(pruned) and outcome.summary.n_measured == len(measured)
    # a full measurement is paid only by trials the pruner let through
    full_calls = [timing for timing in backend.timings if timing is None or timing.max_time_s > 1]
    assert len(full_calls) == len(measured)


def test_ci_pruner_prunes_only_what_cannot_beat_the_best_so_far() -> None:
    study = optuna.create_study(direction="maximize", pruner=CiPruner(margin=0.05))
    best = study.ask()
    best.report(90.0, 1)
    study.tell(best, 100.0)

    def verdict(bound: float) -> bool:
        trial = study.ask()
        trial.set_user_attr("short_bound", bound)
        trial.report(bound * 0.8, 1)
        pruned = trial.should_prune()
        study.tell(trial, state=TrialState.PRUNED)
        return pruned

    assert verdict(90.0)  # 90 * 1.05 < 100: cannot win
    assert not verdict(97.0)  # within the margin: measured in full
    assert not verdict(130.0)


def test_halving_keeps_a_third_of_the_short_values() -> None:
    backend = FakeBackend(small_space((1, 2, 4, 8, 16, 32)))
    outcome = run_tune(
        _config(sampler="random", pruner="halving", n_trials=15, max_accuracy_drop=None), backend, track=False
    )
    states = [t.user_attrs.get("outcome") for t in outcome.study.trials]
    assert states.count("pruned") >= states.count("measured")


def test_without_a_short_time_every_trial_is_measured_in_full_once() -> None:
    backend = FakeBackend(small_space((1, 8)))
    run_tune(_config(short_time_s=None, n_trials=4), backend, track=False)
    assert backend.timings == [None] * 4


def test_time_budget_300_s_stops_within_the_budget_and_logs_each_trials_costs(tracking: str) -> None:
    """The issue's Must show, on the fake's simulated clock: preparation 60-150 s (more than the budget in all,
    as a compile or an engine build of a large model), measurements of 0.5 and 3 s. A configuration never
    prepared is admitted at the slowest preparation seen (``CostModel.admission_s``)."""
    space = small_space((1, 2, 4, 8, 16, 32, 64, 128))
    prepare = {"baseline/eager/fp32": 60.0, "baseline/eager/bf16": 100.0, "baseline/onnxruntime/fp32": 150.0}
    backend = FakeBackend(space, prepare_s=prepare)
    outcome = run_tune(_config(time_budget_s=300.0, n_trials=50, max_accuracy_drop=None), backend)
    assert backend.now <= 300.0
    assert outcome.wall_s <= 300.0 and outcome.stop_reason == "time budget"
    assert len(outcome.study.trials) < 50
    parent = next(run for run in runs_of(tracking) if "mlflow.parentRunId" not in run.data.tags)
    children = [run for run in runs_of(tracking) if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.data.tags[m.STOP_REASON_TAG] == "time budget"
    assert parent.data.metrics[m.STUDY_WALL_S] <= 300.0
    assert parent.data.params["study.time_budget_s"] == "300"
    outcomes = set()
    for child in children:
        tags, metrics = child.data.tags, child.data.metrics
        outcomes.add(tags[m.TRIAL_OUTCOME_TAG])
        assert tags[m.TRIAL_FIDELITY_TAG] in ("short", "full", "none")
        if tags[m.TRIAL_OUTCOME_TAG] != "over_budget":
            assert {m.TRIAL_PREPARE_S, m.TRIAL_MEASURE_S, m.TRIAL_WALL_S} <= set(metrics)
            assert tags[m.TRIAL_PREPARATION_TAG] in ("new", "cached")
        if tags[m.TRIAL_OUTCOME_TAG] == "pruned":  # its short figures only, never as the objective's value
            assert m.SHORT_THROUGHPUT in metrics and "objective/0" not in metrics and m.THROUGHPUT not in metrics
    assert {"measured", "pruned"} <= outcomes
    prepared = [child for child in children if child.data.tags.get(m.TRIAL_PREPARATION_TAG) == "new"]
    assert all(child.data.metrics[m.TRIAL_PREPARE_S] >= 60.0 for child in prepared)
    artifacts = {item.path for item in mlflow.MlflowClient().list_artifacts(parent.info.run_id)}
    assert "trials.json" in artifacts


class _SlowBaseline(FakeBackend):
    """A backend whose space is ready only after 120 simulated seconds (a baseline trained before the search)."""

    def search_space(self) -> SearchSpace:
        self.now += 120.0
        return super().search_space()


def test_the_study_says_how_much_of_the_time_budget_is_left_when_the_search_starts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="mlperf_track.tuning.runner")
    run_tune(_config(time_budget_s=300.0, n_trials=2), _SlowBaseline(small_space((1, 8))), track=False)
    (start,) = [record.getMessage() for record in caplog.records if "points, budget" in record.getMessage()]
    left = re.search(r"budget 2 trials or 300 s \((\d+) s of it left\)", start)
    assert left is not None and 0 < int(left.group(1)) <= 180, start  # the baseline's 120 s are spent already


def test_a_trial_that_would_overrun_the_budget_is_not_started() -> None:
    space = small_space((1, 8))
    backend = FakeBackend(space, prepare_s={key.key: 100.0 for key in space.choices})
    outcome = run_tune(_config(time_budget_s=150.0, n_trials=10, sampler="random"), backend, track=False)
    assert backend.now <= 150.0
    over = [t for t in outcome.study.trials if t.user_attrs.get("outcome") == "over_budget"]
    assert all(t.state == TrialState.PRUNED and "metrics" not in t.user_attrs for t in over)
    from mlperf_track.cli.tune import render_costs

    line = render_costs(outcome)
    assert (f"{len(over)} not started for the time budget" in line) == bool(over), line


def test_time_budget_counts_on_an_injected_clock() -> None:
    now = [100.0]
    budget = TimeBudget(60.0, clock=lambda: now[0])
    assert budget.remaining() == pytest.approx(60.0 - 3.0)  # 5% kept for finishing the study
    now[0] = 150.0
    assert not budget.fits(10.0) and budget.fits(5.0)
    assert TimeBudget(None).remaining() == float("inf")


@dataclass
class _Failing(FakeBackend):
    """The fake, except that the short measurement of one configuration fails."""

    def measure(self, case: CaseSpec, timing: TimingConfig | None = None) -> CaseOutcome:
        if timing is not None and case.runtime == "onnxruntime":
            self.measured.append(case)
            return CaseOutcome(case, error=RuntimeError("broken export"))
        return super().measure(case, timing)


def test_a_failure_in_the_short_measurement_fails_the_trial_with_its_fidelity() -> None:
    backend = _Failing(small_space((1, 8)))
    outcome = run_tune(_config(sampler="grid", n_trials=6, max_accuracy_drop=None), backend, track=False)
    failed = [t for t in outcome.study.trials if t.state == TrialState.FAIL]
    assert failed and all(t.user_attrs["outcome"] == "failed" and t.user_attrs["fidelity"] == "none" for t in failed)
