"""What a trial costs, and what the next one is expected to cost.

A trial's time goes to *preparation* (building its variant, then the runtime's export, compile or engine build,
the first call and the accuracy pass: everything a later trial with the same preparation key does not redo)
and *measurement* (warm-up and timed windows, at one or two fidelities). Backends report both per measurement
(:class:`TrialCosts`); the objective stores them on the trial (user attributes ``prepare_s``, ``measure_s``,
``variant_build_s``, ``preparation``), the MLflow adapter logs them, and :class:`CostModel` learns from them.

:class:`CostModel` predicts a point's cost from what the study has seen, most specific first (the same runtime,
options, precision and variant; the same runtime and options; the same runtime; anything), so one torch.compile
trial teaches it that compiling is expensive and the next compile point is priced accordingly. Preparation is
free when the backend still holds the prepared model (``is_prepared``) and a variant is built once; a
composition (``a+b``) builds each of its leading steps (``a``, then ``a+b``) that is not built yet, and each is
priced by its last step's recipe (:meth:`CostModel.step_build_s`): from that recipe's own builds, else from
builds of recipes of its kind (recipes that train, :attr:`~mlperf_track.variants.base.Variant.trains`: pruning's
recovery, distillation; or recipes that calibrate or convert), else from any build, else
:data:`PRIOR_BUILD_S`. On resnet50 at 64 px a structured pruning's recovery took 53 s where every int8
calibration took 7-8 s: once one recipe that trains was built, another (distillation) is priced by it, not by
the calibrations. Before that nothing tells the two kinds apart: pricing a recipe that trains at its time cap
(60 s) was tried on the replay tables of ``benchmarks/search_efficiency.py`` and made resnet18's study slower
(its pruning recovers in 6 s) without making resnet50's faster.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from optuna.trial import FrozenTrial, TrialState

from mlperf_track.variants.compose import SEPARATOR, prefixes

if TYPE_CHECKING:
    from mlperf_track.spec import CaseSpec
    from mlperf_track.tuning.space import SearchSpace, TrialPoint

#: Trial user attributes.
ATTR_PREPARE_S: Final = "prepare_s"
ATTR_MEASURE_S: Final = "measure_s"
ATTR_BUILD_S: Final = "variant_build_s"
ATTR_TRIAL_S: Final = "trial_s"
ATTR_PREPARATION: Final = "preparation"
ATTR_SHORT_MEASURE_S: Final = "short_measure_s"
ATTR_FULL_MEASURE_S: Final = "full_measure_s"
#: The variants a trial built (a list, :attr:`TrialCosts.built`).
ATTR_BUILT: Final = "variant_built"
#: Values of :data:`ATTR_PREPARATION`.
PREPARED_NEW: Final = "new"
PREPARED_CACHED: Final = "cached"
#: Before anything is observed: seconds to prepare a configuration, build a variant, measure briefly and fully.
PRIOR_PREPARE_S: Final = 10.0
PRIOR_BUILD_S: Final = 20.0
PRIOR_SHORT_S: Final = 1.0
PRIOR_FULL_S: Final = 3.0


@dataclass(frozen=True)
class TrialCosts:
    """The cost of one measurement call.

    Attributes:
        prepare_s: Preparation this call did (0 when the prepared model and the variant were reused).
        measure_s: The rest of the call (warm-up and timed windows).
        variant_build_s: Part of ``prepare_s`` spent building the variant.
        prepared: Whether this call prepared the model (a cache miss).
        stage: Where a failure happened: ``variant`` (the build), ``case`` (preparation or measurement), or
            empty when the call succeeded.
        built: The variants this call built, in order (a composition's leading steps included:
            :func:`~mlperf_track.variants.compose.prefixes`); empty when every one was built already.
    """

    prepare_s: float
    measure_s: float
    variant_build_s: float = 0.0
    prepared: bool = True
    stage: str = ""
    built: tuple[str, ...] = ()


@dataclass(frozen=True)
class Prediction:
    """A point's expected cost in seconds."""

    variant_build_s: float
    prepare_s: float
    short_s: float
    full_s: float
    p_full: float

    @property
    def total_s(self) -> float:
        """Build + preparation + short measurement + (the full one, weighted by how often trials reach it)."""
        return self.variant_build_s + self.prepare_s + self.short_s + self.p_full * self.full_s


def _median(values: Sequence[float], default: float) -> float:
    return statistics.median(values) if values else default


class CostModel:
    """Predicts the cost of a point from the study's finished trials (see the module docstring).

    Args:
        space: The search space (it knows which runtimes prepare per batch size).
        is_prepared: Whether the backend holds the prepared model of a case now (``None``: assume not).
        has_variant: Whether the backend has built a variant (``None``: assume it has).
        multi_fidelity: Whether trials measure briefly first (else every trial is a full measurement).
    """

    def __init__(
        self,
        space: SearchSpace,
        *,
        is_prepared: Callable[[CaseSpec], bool] | None = None,
        has_variant: Callable[[str], bool] | None = None,
        multi_fidelity: bool = True,
    ) -> None:
        self.space = space
        self.is_prepared = is_prepared
        self.has_variant = has_variant
        self.multi_fidelity = multi_fidelity
        self._trials: list[FrozenTrial] = []
        self._step_builds: dict[str, float] = {}

    def update(self, trials: Sequence[FrozenTrial]) -> None:
        """Learn from ``trials`` (those with cost attributes; call before predicting)."""
        self._trials = [trial for trial in trials if ATTR_MEASURE_S in trial.user_attrs]
        self._step_builds = {}

    def _prepare_times(self, point: TrialPoint) -> float:
        choice = point.choice
        levels: list[Callable[[FrozenTrial], bool]] = [
            lambda t: t.params.get("config") == choice.key,
            lambda t: _attr(t, "runtime") == choice.runtime and _options(t) == choice.options,
            lambda t: _attr(t, "runtime") == choice.runtime,
            lambda t: True,
        ]
        prepared = [t for t in self._trials if t.user_attrs.get("preparation") == PREPARED_NEW]
        for matches in levels:
            times = [
                float(t.user_attrs[ATTR_PREPARE_S]) - float(t.user_attrs.get(ATTR_BUILD_S, 0.0))
                for t in prepared
                if matches(t)
            ]
            if times:
                return max(0.0, statistics.median(times))
        return PRIOR_PREPARE_S

    def predict(self, point: TrialPoint, template: CaseSpec) -> Prediction:
        """The expected cost of measuring ``point`` next."""
        case = point.to_case(template)
        cached = self.is_prepared is not None and self.is_prepared(case)
        build_s = sum(self.step_build_s(_last_step(name)) for name in self._unbuilt(point.choice.variant))
        shorts = [
            float(t.user_attrs[ATTR_SHORT_MEASURE_S]) for t in self._trials if ATTR_SHORT_MEASURE_S in t.user_attrs
        ]
        fulls = [float(t.user_attrs[ATTR_FULL_MEASURE_S]) for t in self._trials if ATTR_FULL_MEASURE_S in t.user_attrs]
        if not self.multi_fidelity:
            return Prediction(
                build_s,
                0.0 if cached else self._prepare_times(point),
                0.0,
                _median(fulls, PRIOR_FULL_S),
                1.0,
            )
        reached = [t for t in self._trials if ATTR_SHORT_MEASURE_S in t.user_attrs]
        p_full = (sum(1 for t in reached if ATTR_FULL_MEASURE_S in t.user_attrs) + 1) / (len(reached) + 2)
        return Prediction(
            build_s,
            0.0 if cached else self._prepare_times(point),
            _median(shorts, PRIOR_SHORT_S),
            _median(fulls, PRIOR_FULL_S),
            p_full,
        )

    def _unbuilt(self, variant: str) -> list[str]:
        """The builds ``variant`` needs: each leading step (``a``, ``a+b``, ...) not built yet."""
        if self.has_variant is None or self.has_variant(variant):
            return []
        return [name for name in prefixes(variant) if not self.has_variant(name)]

    def step_build_s(self, step: str) -> float:
        """The expected seconds of building recipe ``step`` on top of what is built (module docstring): the
        median of its own builds, else of its kind's, else of any build (per step built: a trial's build that
        trained counts for the steps that trained, the calibration after them being the smaller part), else
        :data:`PRIOR_BUILD_S`."""
        if step in self._step_builds:  # asked for every candidate point: once per update is enough
            return self._step_builds[step]
        trains = _trains(step)
        own: list[float] = []
        kind: list[float] = []
        anything: list[float] = []
        for trial in self._trials:
            built = [_last_step(name) for name in trial.user_attrs.get(ATTR_BUILT) or ()]
            seconds = float(trial.user_attrs.get(ATTR_BUILD_S, 0.0))
            if not built or seconds <= 0:
                continue
            if built == [step]:
                own.append(seconds)
            training = [name for name in built if _trains(name)]
            per_step = seconds / len(training or built)
            anything.append(per_step)
            if bool(training) == trains:
                kind.append(per_step)
        self._step_builds[step] = _median(own or kind or anything, PRIOR_BUILD_S)
        return self._step_builds[step]

    def admission_s(self, point: TrialPoint, template: CaseSpec) -> float:
        """A cautious cost for the time budget's admission of ``point``: preparation, which cannot be cut short,
        at the largest time seen for its configuration, or at the largest seen anywhere when it was never
        prepared (a runtime's first configuration says little about another's: a compile mode, a precision)."""
        expected = self.predict(point, template)
        if expected.prepare_s == 0.0:  # held by the backend
            return expected.total_s
        prepared = [t for t in self._trials if t.user_attrs.get("preparation") == PREPARED_NEW]
        own = [_preparation(t) for t in prepared if t.params.get("config") == point.choice.key]
        anywhere = [_preparation(t) for t in prepared]
        cautious = max(own) if own else max([expected.prepare_s, *anywhere])
        return expected.total_s - expected.prepare_s + cautious

    def typical_trial_s(self) -> float:
        """The median seconds a finished trial took (a prior before any trial finished)."""
        return _median(
            [float(t.user_attrs[ATTR_TRIAL_S]) for t in self._trials if ATTR_TRIAL_S in t.user_attrs],
            PRIOR_PREPARE_S + PRIOR_FULL_S,
        )


def _last_step(variant: str) -> str:
    return variant.rsplit(SEPARATOR, 1)[-1]


def _trains(step: str) -> bool:
    """Whether recipe ``step`` trains (``False`` for a name that is not a registered recipe)."""
    from mlperf_track.errors import ConfigError
    from mlperf_track.variants.registry import get_variant

    try:
        return get_variant(step).trains
    except ConfigError:
        return False


def _preparation(trial: FrozenTrial) -> float:
    return max(0.0, float(trial.user_attrs[ATTR_PREPARE_S]) - float(trial.user_attrs.get(ATTR_BUILD_S, 0.0)))


def _attr(trial: FrozenTrial, key: str) -> str | None:
    value = trial.user_attrs.get(key)
    return None if value is None else str(value)


def _options(trial: FrozenTrial) -> tuple[tuple[str, str], ...]:
    prefix = "option."
    return tuple(
        sorted((key[len(prefix) :], str(value)) for key, value in trial.user_attrs.items() if key.startswith(prefix))
    )


def finished_with_costs(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """Trials that ended (in any state) and carry cost attributes."""
    ended = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return [trial for trial in trials if trial.state in ended and ATTR_MEASURE_S in trial.user_attrs]
