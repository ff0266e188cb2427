"""The chance that an unmeasured point keeps the accuracy limit, from the accuracy drops measured so far.

Accuracy does not depend on the batch size and hardly on the runtime, so one measured point says much about its
neighbours. The evidence is the constraint value itself (``drop - max_drop``: how far inside or outside the
limit), not a pass/fail flag: a variant that lost 6 points under a 1-point limit will lose about as much at
another precision, while one that lost 1.1 points might not. For a candidate point the nearest measured
neighbourhood decides, with the spread that neighbourhood is known to have:

1. the same variant, runtime and precision measured: its latest outcome (accuracy is measured once per model);
2. the same variant and precision on another runtime: normal belief around their mean excess,
   :data:`RUNTIME_SPREAD`;
3. the same variant at another precision: :data:`PRECISION_SPREAD`;
4. a composition (``a+b``) whose steps, or a shorter composition of them, were measured: at least the worst of
   them is lost (pruning's loss is not undone by quantizing afterwards), :data:`COMPOSITION_SPREAD`;
5. nothing: :data:`UNSEEN_PRIOR` (certain for the fp32 baseline, which is the reference).

The spreads come from the replay tables in ``benchmarks/data`` (resnet18 and resnet50 at 64 px on digits, 359
evaluation images, one image = 0.28 points): the drop of one variant and precision differs between runtimes by
at most 1.2 points, between precisions by at most 1.7, and a composition's by up to 3.9 points from its worst
step's. Each spread is set a little above what was seen, so that evidence shifts the chance but never makes a
near miss certain.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from typing import Final

from scipy.stats import norm

from mlperf_track.tuning.space import Choice

#: Standard deviation (top-1 fraction) of a variant's drop between runtimes at one precision.
RUNTIME_SPREAD: Final = 0.015
#: ... between precisions of one variant.
PRECISION_SPREAD: Final = 0.02
#: ... between a composition and its worst measured step.
COMPOSITION_SPREAD: Final = 0.03
#: Prior chance that a variant or precision never measured keeps accuracy within the limit.
UNSEEN_PRIOR: Final = 0.6
_STEP: Final = "+"


class AccuracyEvidence:
    """Measured accuracy excesses (``drop - max_drop``) grouped by neighbourhood (module docstring)."""

    def __init__(self) -> None:
        self._exact: dict[str, list[float]] = defaultdict(list)
        self._precision: dict[str, list[float]] = defaultdict(list)
        self._variant: dict[str, list[float]] = defaultdict(list)

    @classmethod
    def of(cls, measured: Iterable[tuple[Choice, float]]) -> AccuracyEvidence:
        """Evidence from ``(choice, excess)`` pairs in the order they were measured."""
        evidence = cls()
        for choice, excess in measured:
            evidence.add(choice, excess)
        return evidence

    def add(self, choice: Choice, excess: float) -> None:
        """Record one measured point."""
        self._exact[_exact_key(choice)].append(excess)
        self._precision[f"{choice.variant}/{choice.precision}"].append(excess)
        self._variant[choice.variant].append(excess)

    def __bool__(self) -> bool:
        return bool(self._variant)

    def chance(self, choice: Choice) -> float:
        """P(the point keeps the accuracy limit), from the nearest measured neighbourhood."""
        exact = self._exact.get(_exact_key(choice))
        if exact:
            return float(exact[-1] <= 0)
        same_precision = self._precision.get(f"{choice.variant}/{choice.precision}")
        if same_precision:
            return _within(statistics.fmean(same_precision), RUNTIME_SPREAD)
        same_variant = self._variant.get(choice.variant)
        if same_variant:
            return _within(statistics.fmean(same_variant), PRECISION_SPREAD)
        worst = self._worst_measured_part(choice.variant)
        if worst is not None:
            return _within(worst, COMPOSITION_SPREAD)
        return 1.0 if choice.variant == "baseline" and choice.precision == "fp32" else UNSEEN_PRIOR

    def _worst_measured_part(self, variant: str) -> float | None:
        """The largest mean excess among measured variants made of some of ``variant``'s steps (``None``: none)."""
        steps = set(variant.split(_STEP))
        if len(steps) < 2:
            return None
        parts = [
            statistics.fmean(values)
            for name, values in self._variant.items()
            if name != variant and set(name.split(_STEP)) <= steps
        ]
        return max(parts) if parts else None


def _exact_key(choice: Choice) -> str:
    return f"{choice.variant}/{choice.runtime}/{choice.precision}"


def _within(excess: float, spread: float) -> float:
    """P(excess <= 0) under a normal belief centred on the measured ``excess``."""
    return float(norm.cdf(-excess / spread))
