"""Invalid measurements in a study: flagged on the trial, never the best trial nor on the Pareto front."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import optuna
from optuna.study import StudyDirection
from tuning_fakes import FakeBackend, small_space

from mlperf_track import metrics as m
from mlperf_track.errors import MeasurementError
from mlperf_track.pipeline.events import CaseOutcome
from mlperf_track.spec import CaseSpec
from mlperf_track.tuning.objective import (
    ATTR_INVALID_REASONS,
    ATTR_VALID,
    INVALID_MEASUREMENT,
    Limits,
    TrialObjective,
    is_feasible,
    targets_for,
)
from mlperf_track.tuning.results import summarize

optuna.logging.set_verbosity(optuna.logging.WARNING)
REASON = "stopped at max_time with the median's 95% CI 4.10% wide, above the 2.00% target"


@dataclass
class NoisyBackend(FakeBackend):
    """The fake, except that cases of the batch sizes in ``invalid_batches`` come back not valid."""

    invalid_batches: frozenset[int] = field(default_factory=frozenset)

    def measure(self, case: CaseSpec) -> CaseOutcome:
        outcome = super().measure(case)
        if outcome.result is not None and case.batch_size in self.invalid_batches:
            outcome.result = replace(outcome.result, invalid_reasons=(REASON,))
        return outcome


def _run(backend: NoisyBackend, objective: str) -> tuple[optuna.Study, TrialObjective]:
    targets = targets_for(objective, with_accuracy=False)
    directions = [StudyDirection.MAXIMIZE if t.direction == "maximize" else StudyDirection.MINIMIZE for t in targets]
    study = optuna.create_study(directions=directions, sampler=optuna.samplers.GridSampler(backend.space.grid()))
    trial_objective = TrialObjective(backend.space, targets, Limits(), backend.measure, backend.template())
    study.optimize(trial_objective, n_trials=backend.space.size, catch=(MeasurementError,))
    return study, trial_objective


def test_the_fastest_point_measured_invalidly_is_not_the_best() -> None:
    backend = NoisyBackend(small_space((1, 8, 64)), measures_accuracy=False, invalid_batches=frozenset({64}))
    study, objective = _run(backend, "throughput")
    invalid = [t for t in study.trials if t.params and t.user_attrs.get(ATTR_VALID) is False]
    assert invalid and all(t.constraints[INVALID_MEASUREMENT] == 1.0 for t in invalid)
    assert all(t.user_attrs[ATTR_INVALID_REASONS] == [REASON] and not is_feasible(t) for t in invalid)
    valid = [t for t in study.trials if t.user_attrs.get(ATTR_VALID) is True]
    assert valid and all(t.constraints[INVALID_MEASUREMENT] == 0.0 and is_feasible(t) for t in valid)
    fastest = max(study.trials, key=lambda t: t.values[0])
    assert fastest.user_attrs[ATTR_VALID] is False  # the invalid point did measure fastest...
    summary = summarize(study, objective.targets)
    assert summary.found and summary.best[0].user_attrs[ATTR_VALID] is True  # ...but is not named best
    assert summary.best[0].values[0] == max(t.values[0] for t in valid)
    assert study.best_trial.user_attrs[ATTR_VALID] is True  # Optuna's own view agrees


def test_invalid_points_stay_off_the_pareto_front() -> None:
    backend = NoisyBackend(small_space((1, 8, 64)), measures_accuracy=False, invalid_batches=frozenset({1, 64}))
    study, objective = _run(backend, "multi")
    front = summarize(study, objective.targets).best
    assert front and all(t.user_attrs[ATTR_VALID] is True for t in front)
    assert all(objective.space.point(t.params).batch_size == 8 for t in front)


def test_a_reused_duplicate_keeps_the_flag() -> None:
    backend = NoisyBackend(small_space((64,)), measures_accuracy=False, invalid_batches=frozenset({64}))
    targets = targets_for("throughput", with_accuracy=False)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    objective = TrialObjective(backend.space, targets, Limits(), backend.measure, backend.template())
    study.optimize(objective, n_trials=4)
    assert len(backend.measured) < 4  # duplicates were reused, not measured again
    assert all(t.user_attrs[ATTR_VALID] is False and t.constraints[INVALID_MEASUREMENT] == 1.0 for t in study.trials)
    assert m.THROUGHPUT in study.trials[-1].user_attrs["metrics"]
