"""Multi-fidelity: a short first measurement, and the rule that stops a trial after it.

Every trial of a one-objective study is first measured briefly (:func:`short_timing`: a window of
``--short-time`` seconds, a few calls, a wide confidence interval) and reports that value as Optuna's
intermediate value at :data:`SHORT_STEP`; only a trial the pruner lets through gets the full adaptive
measurement (reported at :data:`FULL_STEP`). A pruned trial ends ``PRUNED`` with its short figures kept apart
(``short_metrics``), never as if fully measured.

Two rules, compared on replayed measurements by ``benchmarks/search_efficiency.py``:

- ``ci`` (:class:`CiPruner`, the default): prune when even the optimistic end of the short measurement's 95%
  confidence interval (:func:`optimistic_bound`), widened by :data:`CI_MARGIN`, cannot beat the best feasible
  fully measured trial. It prunes only what looks clearly worse; the margin is for what a CI does not see, a short
  window's bias (a cold cache, a CPU frequency step). That bias can be larger than both: on the replay tables of
  the 2-core VM (0.3 s short windows) the widened bound fell below the full measurement for 18-22% of the points
  (a CI describes the spread inside a window, not from one window to the next). Wider margins (0.2, 0.4) made no
  difference to the replayed searches (the same trials and seconds to 97% within 0.2 trials and 2 s), so the
  margin stays small; a point pruned after a low short window is not measured again in that study.
- ``halving``: Optuna's :class:`~optuna.pruners.SuccessiveHalvingPruner` (one rung, reduction factor 3): only
  the top third of the short values so far go on, whatever their spread. It spends less on contenders, and
  loses a true optimum whenever a short value falls below two earlier ones by chance.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Final

import optuna
from optuna.pruners import BasePruner
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from mlperf_track import metrics as m
from mlperf_track.spec import TimingConfig

#: Intermediate-value steps: the short measurement and the full one (resource units for successive halving).
SHORT_STEP: Final = 1
FULL_STEP: Final = 2
#: Trial user attribute: the optimistic end of the short measurement's CI for the objective.
ATTR_SHORT_BOUND: Final = "short_bound"
#: How far beyond its CI a short measurement may still be from its full one (bias, not noise).
CI_MARGIN: Final = 0.05
#: Relative half-width assumed when a short measurement has no CI of its median (too few calls).
FALLBACK_REL_CI: Final = 0.25
#: Calls of the short window: enough for a CI of the median (5 at 95%), not more.
SHORT_MIN_ITERS: Final = 5


def short_timing(full: TimingConfig, seconds: float) -> TimingConfig:
    """The timing of the short first measurement: ``full``'s rules with a window of about ``seconds``."""
    return replace(
        full,
        warmup_iters=min(full.warmup_iters, 2),
        warmup_s=min(full.warmup_s, seconds / 3),
        min_iters=SHORT_MIN_ITERS,
        min_time_s=0.0,
        max_time_s=seconds,
        target_rel_ci=max(full.target_rel_ci, 0.05),
        throughput_time_s=min(full.throughput_time_s, seconds),
    )


def optimistic_bound(value: float, metrics: dict[str, float], maximize: bool) -> float:
    """The best the objective could be, given a short measurement's ``value`` and its median's 95% CI.

    Throughput scales with 1/latency, a p99 with the median: the relative CI of the median latency carries over
    (:data:`FALLBACK_REL_CI` without one).
    """
    p50 = metrics.get(m.LATENCY_P50)
    low, high = metrics.get(m.LATENCY_P50_CI_LOW), metrics.get(m.LATENCY_P50_CI_HIGH)
    if p50 and low and high and all(math.isfinite(x) and x > 0 for x in (p50, low, high)):
        faster = p50 / low  # >= 1: how much faster the median could be
    else:
        faster = 1.0 / (1.0 - FALLBACK_REL_CI)
    return value * faster if maximize else value / faster


def incumbent(study: optuna.Study) -> float | None:
    """The best value of a feasible, valid, fully measured trial of a one-objective study, or ``None``."""
    values = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if trial.values is None or any(value > 0 for value in trial.constraints.values()):
            continue
        if trial.user_attrs.get("valid") is False:
            continue
        values.append(float(trial.values[0]))
    if not values:
        return None
    return max(values) if study.direction == StudyDirection.MAXIMIZE else min(values)


class CiPruner(BasePruner):
    """Prune a trial whose short measurement cannot beat the incumbent (see the module docstring).

    Args:
        margin: Relative slack on top of the confidence interval.
    """

    def __init__(self, margin: float = CI_MARGIN) -> None:
        self.margin = margin

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        """Whether the trial, which just reported its short value, should stop."""
        if trial.last_step != SHORT_STEP or ATTR_SHORT_BOUND not in trial.user_attrs:
            return False
        best = incumbent(study)
        if best is None:
            return False
        bound = float(trial.user_attrs[ATTR_SHORT_BOUND])
        if study.direction == StudyDirection.MAXIMIZE:
            return bound * (1.0 + self.margin) < best
        return bound * (1.0 - self.margin) > best


def make_pruner(name: str) -> BasePruner:
    """The pruner ``--pruner`` names (``auto`` is ``ci``)."""
    if name in ("auto", "ci"):
        return CiPruner()
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=SHORT_STEP, reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"unknown pruner {name!r}")
