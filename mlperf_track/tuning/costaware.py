"""The default sampler: expected improvement per second over the unmeasured points, with multi-fidelity data.

Each proposal scores every point not measured yet (nor running, nor excluded by a failure or an
out-of-memory at a smaller batch size):

    score = EI(point) x P(feasible) / (c0 + predicted seconds)^kappa

- EI is the expected improvement of log throughput (or of -log p99) over the best feasible, fully measured
  trial, under the posterior of :class:`~mlperf_track.tuning.surrogate.BayesianLinear` fitted to every trial
  measured so far: full measurements with a small noise, short ones (pruned trials) with a larger one.
- P(feasible) multiplies the chances of each limit: accuracy from an additive Bayesian model of the drops
  measured so far (each variant step and non-fp32 precision adds its own drop; how far inside or outside the
  limit each point was, not a pass/fail flag: :mod:`~mlperf_track.tuning.accuracy_evidence`; accuracy does not
  depend on the batch size); memory and p99 from a Bayesian model of the constraint's log ratio.
- The cost (:class:`~mlperf_track.tuning.costs.CostModel`) is what the point would cost now: nothing to
  prepare when the backend holds its prepared model, a variant build when the variant is new, and the
  measurement. ``c0`` is the cost of a trial as such (the time per trial the budget allows, or the typical trial
  so far), so a free point is cheap but never free. ``kappa`` falls from :data:`KAPPA_START` to 0 as the budget
  (trials or time, whichever is further spent) is used, Lee et al.'s cost cooling (CArBO, 2020): early trials
  favour cheap information, late ones the best expected gain whatever its price. With a time budget, points
  predicted not to fit are not proposed.

Before any measurement the first trial is a baseline configuration at the batch size the prior favours (the
largest for throughput, the smallest for latency: :func:`~mlperf_track.tuning.surrogate.prior_means`). Like Optuna's
samplers it keeps no state between calls: everything is read from the study, so it resumes and runs in several
workers (each worker's cache of prepared models is its own).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import optuna
from optuna.samplers import BaseSampler, RandomSampler
from optuna.trial import FrozenTrial, TrialState

from mlperf_track.tuning.accuracy_evidence import AccuracyEvidence
from mlperf_track.tuning.pruning import SHORT_STEP
from mlperf_track.tuning.space import Choice, SearchSpace, TrialPoint
from mlperf_track.tuning.surrogate import (
    BayesianLinear,
    FeatureMap,
    expected_improvement,
    probability_at_most,
)

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

    from mlperf_track.spec import CaseSpec
    from mlperf_track.tuning.budget import TimeBudget
    from mlperf_track.tuning.costs import CostModel

#: Noise (standard deviation on the log scale) of a full and of a short measurement.
FULL_NOISE: Final = 0.05
SHORT_NOISE: Final = 0.15
#: The cost exponent at the start of a study. Lee et al. start at 1 (pure EI per second); on the replayed
#: resnet tables (benchmarks/search_efficiency.py) that spent the first third of the trials on the cheapest
#: baseline configurations, because a variant's build made every point of it look 10x dearer than another
#: batch size of a prepared model. With the surrogate's calibrated priors
#: (:data:`~mlperf_track.tuning.surrogate.PRIOR_SD`) 0.25 reached 97% of the optimum in 6.5 trials and 51 s
#: (resnet18) and 4.7 trials and 83 s (resnet50), against 7.1 trials and 53 s, 5.7 trials and 100 s at 0.5;
#: anything from 0.15 to 0.35 did about as well. A quarter still prefers the cheaper of two equal gains.
KAPPA_START: Final = 0.25
#: Constraints modelled as a log ratio (value = measured / limit - 1) and the accuracy constraint.
RATIO_CONSTRAINTS: Final = ("memory", "p99_latency")
ACCURACY_CONSTRAINT: Final = "accuracy_drop"


def _key(point: TrialPoint) -> tuple[str, int, int | None]:
    return (point.choice.key, point.batch_size, point.num_threads)


class CostAwareSampler(BaseSampler):
    """Expected improvement per second (module docstring) over a static :class:`SearchSpace`.

    Args:
        space: The search space.
        template: The case template (the cost model asks the backend about cases).
        cost_model: Predicts the cost of a point.
        n_trials: The study's trial budget.
        budget: The study's time budget.
        maximize: Whether the objective is maximised (throughput) or minimised (latency).
        seed: Seed for tie-breaking.
        max_accuracy_drop: The study's accuracy limit (``None``: none, accuracy is not a constraint).
    """

    def __init__(
        self,
        space: SearchSpace,
        template: CaseSpec,
        cost_model: CostModel,
        *,
        n_trials: int,
        budget: TimeBudget | None = None,
        maximize: bool = True,
        seed: int = 0,
        max_accuracy_drop: float | None = None,
    ) -> None:
        self.space = space
        self.template = template
        self.cost_model = cost_model
        self.n_trials = n_trials
        self.budget = budget
        self.maximize = maximize
        self.seed = seed
        self.max_accuracy_drop = max_accuracy_drop
        self.points = space.points()
        self.features = FeatureMap(self.points)
        self._matrix = self.features.matrix(self.points)
        self._fallback = RandomSampler(seed=seed)

    # -- Optuna's sampler interface -----------------------------------------------------------------------

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        """The whole (static) space: every parameter is proposed jointly."""
        return self.space.distributions()

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        """The point with the best score (module docstring)."""
        if not search_space:
            return {}
        trials = study.get_trials(deepcopy=False)
        free = self._free(trials, trial.number)
        if not free.any():  # every point measured: propose one again; the objective reuses it, the runner stops
            return self.space.params_of(self.points[0])
        index = self._choose(study, trials, free, trial.number)
        return self.space.params_of(self.points[index])

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        """Not used (every parameter is relative); random as a safe fallback."""
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    # -- scoring ------------------------------------------------------------------------------------------

    def _free(self, trials: Sequence[FrozenTrial], number: int) -> np.ndarray:
        taken = set()
        failed_variants: set[str] = set()
        failed_choices: set[str] = set()
        oom: dict[str, int] = {}
        for other in trials:
            if other.number == number or not self.space.holds_point(other.params):
                continue
            if other.user_attrs.get("outcome") == "over_budget":
                continue
            if other.state == TrialState.FAIL and "error.type" not in other.user_attrs:
                continue  # a dead worker's trial: its point is still to be measured
            point = self.space.point(other.params)
            taken.add(_key(point))
            if other.state == TrialState.FAIL:
                stage = other.user_attrs.get("error.stage")
                (failed_variants if stage == "variant" else failed_choices).add(
                    point.choice.variant if stage == "variant" else point.choice.key
                )
            if other.user_attrs.get("outcome") == "out_of_memory":
                oom[point.choice.key] = min(oom.get(point.choice.key, point.batch_size), point.batch_size)
        return np.array(
            [
                _key(p) not in taken
                and p.choice.variant not in failed_variants
                and p.choice.key not in failed_choices
                and p.batch_size < oom.get(p.choice.key, math.inf)
                for p in self.points
            ]
        )

    def _observations(
        self, study: optuna.Study, trials: Sequence[FrozenTrial]
    ) -> tuple[list[int], list[float], list[float], list[bool]]:
        """(point index, log value, noise, feasible-and-full) of every trial with a value."""
        index = {_key(p): i for i, p in enumerate(self.points)}
        rows, values, noise, incumbent = [], [], [], []
        for trial in trials:
            if not self.space.holds_point(trial.params):
                continue
            position = index.get(_key(self.space.point(trial.params)))
            if position is None:
                continue
            if trial.state == TrialState.COMPLETE and trial.values:
                value, sd = float(trial.values[0]), FULL_NOISE
                feasible = (
                    all(v <= 0 for v in trial.constraints.values()) and trial.user_attrs.get("valid") is not False
                )
            elif trial.state == TrialState.PRUNED and SHORT_STEP in trial.intermediate_values:
                value, sd, feasible = float(trial.intermediate_values[SHORT_STEP]), SHORT_NOISE, False
            else:
                continue
            if not value > 0 or not math.isfinite(value):
                continue
            rows.append(position)
            values.append(math.log(value) if self.maximize else -math.log(value))
            noise.append(sd)
            incumbent.append(feasible)
        return rows, values, noise, incumbent

    def _feasibility(self, trials: Sequence[FrozenTrial], candidates: np.ndarray) -> np.ndarray:
        """P(every limit holds) for each candidate point."""
        probability = np.ones(len(candidates))
        measured_accuracy: list[tuple[Choice, float]] = []
        ratio_rows: dict[str, tuple[list[int], list[float]]] = defaultdict(lambda: ([], []))
        index = {_key(p): i for i, p in enumerate(self.points)}
        for trial in trials:
            if not self.space.holds_point(trial.params):
                continue
            point = self.space.point(trial.params)
            for name, value in trial.constraints.items():
                if name == ACCURACY_CONSTRAINT:
                    measured_accuracy.append((point.choice, value))
                elif name in RATIO_CONSTRAINTS and value > -1 and _key(point) in index:
                    ratio_rows[name][0].append(index[_key(point)])
                    ratio_rows[name][1].append(math.log1p(value))
        if measured_accuracy and self.max_accuracy_drop is not None:
            evidence = AccuracyEvidence(self.max_accuracy_drop, measured_accuracy)
            probability *= np.array([evidence.chance(self.points[position].choice) for position in candidates])
        for rows, values in ratio_rows.values():
            model = BayesianLinear(self.features.prior_sd).fit(
                self._matrix[rows], np.array(values), np.full(len(values), 0.1)
            )
            mean, sd = model.predict(self._matrix[candidates])
            probability *= probability_at_most(mean, np.sqrt(sd**2 + 0.1**2), 0.0)
        return probability

    def _choose(self, study: optuna.Study, trials: Sequence[FrozenTrial], free: np.ndarray, number: int) -> int:
        rng = np.random.default_rng(self.seed * 100_003 + number)
        candidates = np.flatnonzero(free)
        self.cost_model.update(trials)
        costs = np.array([self.cost_model.predict(self.points[i], self.template).total_s for i in candidates])
        rows, values, noise, incumbent = self._observations(study, trials)
        if not rows:
            return int(self._first(candidates, costs, rng))
        prior = self.features.prior_mean(maximize=self.maximize)
        model = BayesianLinear(self.features.prior_sd, prior).fit(self._matrix[rows], np.array(values), np.array(noise))
        mean, sd = model.predict(self._matrix[candidates])
        feasible_values = [value for value, ok in zip(values, incumbent, strict=True) if ok]
        best = max(feasible_values) if feasible_values else max(values)
        gain = expected_improvement(mean, sd, best) * self._feasibility(trials, candidates)
        used = self._used_fraction(trials)
        c0 = self._trial_cost(trials)
        score = gain / np.power(c0 + costs, KAPPA_START * (1.0 - used))
        if self.budget is not None and self.budget.limited:
            cautious = np.array([self.cost_model.admission_s(self.points[i], self.template) for i in candidates])
            fits = cautious <= self.budget.remaining()  # what the objective will admit
            if fits.any():
                score = np.where(fits, score, -np.inf)
        top = np.flatnonzero(score >= score.max() * (1 - 1e-9)) if np.isfinite(score.max()) else np.arange(len(score))
        return int(candidates[rng.choice(top)])

    def _first(self, candidates: np.ndarray, costs: np.ndarray, rng: np.random.Generator) -> int:
        """A baseline configuration at the favoured batch size (module docstring) and the middle thread count,
        cheapest first."""
        sizes, threads = self.space.batch_sizes, self.space.threads
        favoured_batch = max(sizes) if self.maximize else min(sizes)
        middle_threads = threads[len(threads) // 2] if threads else None

        def rank(row: int) -> tuple[int, float]:
            point = self.points[candidates[row]]
            preferred = (
                point.choice.variant == "baseline"
                and point.batch_size == favoured_batch
                and point.num_threads == middle_threads
            )
            return (0 if preferred else 1, float(costs[row]))

        ranks = [rank(row) for row in range(len(candidates))]
        best = min(ranks)
        return int(candidates[rng.choice([row for row, item in enumerate(ranks) if item == best])])

    def _used_fraction(self, trials: Sequence[FrozenTrial]) -> float:
        done = sum(1 for trial in trials if trial.state.is_finished())
        used = min(1.0, done / max(1, self.n_trials))
        return max(used, self.budget.used_fraction() if self.budget is not None else 0.0)

    def _trial_cost(self, trials: Sequence[FrozenTrial]) -> float:
        """Seconds a trial costs as such: the budget's time per remaining trial, or the typical trial."""
        typical = self.cost_model.typical_trial_s()
        if self.budget is None or not self.budget.limited:
            return typical
        left = sum(1 for trial in trials if trial.state.is_finished())
        per_trial = self.budget.remaining() / max(1, self.n_trials - left)
        return max(1.0, min(per_trial, 10 * typical))
