"""Samplers for the study: the cost-aware default, Optuna's samplers, and the wrapper that keeps them honest.

``auto``: :class:`~mlperf_track.tuning.costaware.CostAwareSampler` for one objective (expected improvement
per second over the unmeasured points, with the short measurements of pruned trials as data; see
``benchmarks/search_efficiency.py`` for how it compares), TPE for several (MOTPE).

``tpe``: :class:`optuna.samplers.TPESampler`, started from an *initial design* that the study's creator
enqueues: each configuration once, at the middle batch size (and thread count) -- see :func:`initial_design`.
Otherwise Optuna 5's defaults: multivariate for one objective, independent for several, ``constant_liar``.
``gp``: :class:`optuna.samplers.GPSampler`. ``grid``: :class:`optuna.samplers.GridSampler` over the whole
space (exhaustive; the reference). ``random``: :class:`optuna.samplers.RandomSampler`. ``nsga2``:
:class:`optuna.samplers.NSGAIISampler` (constrained dominance; for large multi-objective budgets).

Every sampler but ``grid`` (which never repeats) is wrapped in :class:`DistinctPoints`: TPE and GP propose the
best categorical point again and again once they believe in it (a 30-trial study over 28 points spent 13
trials "reusing" earlier outcomes), and an off-candidate batch size must land on a candidate. The wrapper
draws the whole point at once, moves it to the nearest candidate values, and replaces a point the study has
already measured (or is measuring) by the nearest one it has not, so the budget buys new measurements.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import socket
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import optuna
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from mlperf_track.tuning.space import BATCH_PARAM, CONFIG_PARAM, THREADS_PARAM, SearchSpace, TrialPoint

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

    from mlperf_track.spec import CaseSpec
    from mlperf_track.tuning.budget import TimeBudget
    from mlperf_track.tuning.costs import CostModel

#: Random start-up trials of TPE are a fifth of the budget, within these bounds.
MIN_STARTUP_TRIALS: Final = 4
MAX_STARTUP_TRIALS: Final = 10
#: Samplers that start from :func:`initial_design`.
DESIGNED_SAMPLERS: Final = ("tpe",)


def resolve_sampler(name: str, n_objectives: int) -> str:
    """``auto`` is ``costaware`` for one objective and ``tpe`` for several."""
    if name == "auto":
        return "costaware" if n_objectives == 1 else "tpe"
    if name == "costaware" and n_objectives > 1:
        raise optuna.exceptions.OptunaError("the costaware sampler optimises one objective")
    return name


def startup_trials(n_trials: int, space_size: int) -> int:
    """Random trials before TPE models the results: ``n_trials / 5`` within [4, 10], never above the space."""
    return max(1, min(space_size, MAX_STARTUP_TRIALS, max(MIN_STARTUP_TRIALS, n_trials // 5)))


def initial_design(space: SearchSpace, n_trials: int, seed: int) -> list[dict[str, Any]]:
    """Params of the first trials: each configuration once at the middle batch size and thread count.

    At most half the budget is spent on it; with more configurations than that, a seeded random subset.
    """
    choices = list(space.choices)
    limit = max(1, n_trials // 2)
    if len(choices) > limit:
        choices = sorted(random.Random(seed).sample(choices, limit))
    params: dict[str, Any] = {BATCH_PARAM: space.batch_sizes[len(space.batch_sizes) // 2]}
    if space.threads:
        params[THREADS_PARAM] = space.threads[len(space.threads) // 2]
    return [{CONFIG_PARAM: choice.key, **params} for choice in choices]


def worker_seed(seed: int, *, shared: bool) -> int:
    """The sampler seed of this process.

    An in-memory study has one worker, so ``seed`` makes it reproducible. A study in a database may have many
    workers started with the same ``--seed``; each gets a seed derived from ``seed``, the host and the process
    id, or they would all propose the same points.
    """
    if not shared:
        return seed
    digest = hashlib.sha256(f"{seed}:{socket.gethostname()}:{os.getpid()}".encode()).hexdigest()
    return int(digest[:8], 16)


def _point_key(point: TrialPoint) -> tuple[str, int, int | None]:
    return (point.choice.key, point.batch_size, point.num_threads)


def taken_points(space: SearchSpace, trials: Sequence[FrozenTrial], number: int) -> set[tuple[str, int, int | None]]:
    """Points of trials that measured them, are measuring them, or failed on them (not ``number`` itself)."""
    taken = set()
    for trial in trials:
        if trial.number == number or not space.holds_point(trial.params):
            continue
        if trial.state == TrialState.FAIL and "error.type" not in trial.user_attrs:
            continue  # a worker died: the point still has to be measured
        if trial.user_attrs.get("outcome") == "over_budget":
            continue
        taken.add(_point_key(space.point(trial.params)))
    return taken


class DistinctPoints(BaseSampler):
    """Wraps a sampler: whole points at once, on candidate values, never one already taken (module docstring).

    Args:
        base: The sampler that proposes.
        space: The search space.
        seed: Seed for the choice among equally near free points.
    """

    def __init__(self, base: BaseSampler, space: SearchSpace, seed: int = 0) -> None:
        self.base = base
        self.space = space
        self._rng = random.Random(seed)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        """The whole space (the base sampler's own relative space is asked inside :meth:`sample_relative`)."""
        return self.space.distributions()

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        """The base sampler's point (relative part, then each remaining parameter), snapped and made new."""
        if not search_space:
            return {}
        relative_space = self.base.infer_relative_search_space(study, trial)
        params = dict(self.base.sample_relative(study, trial, relative_space)) if relative_space else {}
        for name, distribution in search_space.items():
            if name not in params:
                params[name] = self.base.sample_independent(study, trial, name, distribution)
        point = self.space.point(params)
        taken = taken_points(self.space, study.get_trials(deepcopy=False), trial.number)
        if _point_key(point) in taken:
            point = self._nearest_free(point, taken) or point
        return self.space.params_of(point)

    def _nearest_free(self, point: TrialPoint, taken: set[tuple[str, int, int | None]]) -> TrialPoint | None:
        """The free point closest to ``point``: same configuration first (nearest batch size and threads)."""
        free = [other for other in self.space.points() if _point_key(other) not in taken]
        if not free:
            return None

        def distance(other: TrialPoint) -> tuple[int, float]:
            batch = abs(math.log2(other.batch_size) - math.log2(point.batch_size))
            threads = 0.0
            if other.num_threads is not None and point.num_threads is not None:
                threads = abs(math.log2(other.num_threads) - math.log2(point.num_threads))
            return (0 if other.choice == point.choice else 1, batch + threads)

        nearest = min(distance(other) for other in free)
        return self._rng.choice([other for other in free if distance(other) == nearest])

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        """Delegated (only reached for parameters outside the space)."""
        return self.base.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Delegated."""
        self.base.before_trial(study, trial)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        """Delegated."""
        self.base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        """Delegated."""
        self.base.reseed_rng()


def make_sampler(
    name: str,
    space: SearchSpace,
    *,
    seed: int,
    n_trials: int,
    n_objectives: int = 1,
    maximize: bool = True,
    template: CaseSpec | None = None,
    cost_model: CostModel | None = None,
    budget: TimeBudget | None = None,
    max_accuracy_drop: float | None = None,
) -> BaseSampler:
    """The sampler called ``name`` (one of :data:`mlperf_track.tuning.config.SAMPLERS`).

    ``costaware`` (``auto`` for one objective) needs ``template`` and ``cost_model``, and reads the study's
    accuracy limit ``max_accuracy_drop`` (``None``: none).
    """
    name = resolve_sampler(name, n_objectives)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "costaware":
            if template is None or cost_model is None:
                raise ValueError("the costaware sampler needs the case template and a cost model")
            from mlperf_track.tuning.costaware import CostAwareSampler

            return CostAwareSampler(
                space,
                template,
                cost_model,
                n_trials=n_trials,
                budget=budget,
                maximize=maximize,
                seed=seed,
                max_accuracy_drop=max_accuracy_drop,
            )
        if name == "grid":
            return optuna.samplers.GridSampler(space.grid(), seed=seed)
        base: BaseSampler
        if name == "tpe":
            base = optuna.samplers.TPESampler(
                seed=seed, constant_liar=True, n_startup_trials=startup_trials(n_trials, space.size)
            )
        elif name == "gp":
            base = optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup_trials(n_trials, space.size))
        elif name == "random":
            base = optuna.samplers.RandomSampler(seed=seed)
        elif name == "nsga2":
            base = optuna.samplers.NSGAIISampler(seed=seed)
        else:
            raise ValueError(f"unknown sampler {name!r}")
    return DistinctPoints(base, space, seed)
