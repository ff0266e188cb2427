"""The chance that an unmeasured point keeps the accuracy limit, from the accuracy drops measured so far.

Accuracy does not depend on the batch size and hardly on the runtime, so each measured point says much about
others. The model is additive, like the throughput surrogate's: a point's top-1 drop is the sum of the drops of
its variant's steps (``pruned_structured+quantized_int8_ort`` = pruning's + quantization's) and of its
precision when it is not fp32, plus a runtime's small numerical difference (the observation noise). Each effect
has a normal prior centred on no drop; measured drops (the constraint value plus the limit: how far inside or
outside the limit, not a pass/fail flag) give the posterior in closed form (a Bayesian linear model with the
fp32 baseline, the reference, fixed at zero). So a variant that lost 6 points under a 1-point limit is given up
at every precision and runtime; sibling compositions that share its step inherit the blame once the other
steps are seen to be harmless; a near miss leaves a real chance.

A point already measured is decided by its own outcome (accuracy is measured once per prepared model).

Scales, from the replay tables in ``benchmarks/data`` (resnet18 and resnet50 at 64 px on digits, 359
evaluation images: one image is 0.28 points): step drops from 0 to 9 points, so :data:`EFFECT_SD` 3 points
(an unseen step keeps a 1-point limit with chance ~0.63); bf16 against fp32 on the same model -0.3 to +0.8
points, so :data:`PRECISION_SD` 1 point; one variant and precision differs between runtimes by at most 1.2
points, so :data:`RUNTIME_SD` 0.7 points.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Final

import numpy as np
from scipy.stats import norm

from mlperf_track.tuning.space import Choice

#: Prior standard deviation (top-1 fraction) of the drop a variant step causes, and a non-fp32 precision.
EFFECT_SD: Final = 0.03
PRECISION_SD: Final = 0.01
#: Standard deviation of one point's drop around its variant's and precision's (runtime numerics, evaluation).
RUNTIME_SD: Final = 0.007
BASELINE: Final = "baseline"
_STEP: Final = "+"
_REFERENCE_PRECISION: Final = "fp32"


def _effects(choice: Choice) -> list[str]:
    """The effects a point's drop is the sum of (none for the fp32 baseline, the reference)."""
    names = [] if choice.variant == BASELINE else [f"step={step}" for step in choice.variant.split(_STEP)]
    if choice.precision != _REFERENCE_PRECISION:
        names.append(f"precision={choice.precision}")
    return names


def _prior_sd(effect: str) -> float:
    return PRECISION_SD if effect.startswith("precision=") else EFFECT_SD


def _exact_key(choice: Choice) -> str:
    return f"{choice.variant}/{choice.runtime}/{choice.precision}"


class AccuracyEvidence:
    """Measured accuracy drops and the additive model over them (module docstring).

    Args:
        max_drop: The accuracy limit (the largest top-1 drop allowed, a fraction).
        measured: ``(choice, excess)`` pairs in the order they were measured, ``excess = drop - max_drop`` (the
            study's constraint value).
    """

    def __init__(self, max_drop: float, measured: Iterable[tuple[Choice, float]] = ()) -> None:
        self.max_drop = max_drop
        self._exact: dict[str, float] = {}
        rows: list[tuple[list[str], float]] = []
        for choice, excess in measured:
            self._exact[_exact_key(choice)] = excess  # the latest outcome of that model
            rows.append((_effects(choice), excess + max_drop))
        names = sorted({name for effects, _ in rows for name in effects})
        self._index = {name: i for i, name in enumerate(names)}
        prior_sd = np.array([_prior_sd(name) for name in names])
        self._mean = np.zeros(len(names))
        self._cov = np.diag(prior_sd**2)
        if rows and names:
            x = np.array([self._row(effects) for effects, _ in rows])
            drops = np.array([drop for _, drop in rows])
            precision = np.diag(1.0 / prior_sd**2) + x.T @ x / RUNTIME_SD**2
            self._cov = np.linalg.inv(precision)
            self._mean = self._cov @ (x.T @ drops) / RUNTIME_SD**2

    def __bool__(self) -> bool:
        return bool(self._exact)

    def _row(self, effects: Sequence[str]) -> np.ndarray:
        row = np.zeros(len(self._index))
        for name in effects:
            if name in self._index:
                row[self._index[name]] = 1.0
        return row

    def chance(self, choice: Choice) -> float:
        """P(the point keeps the accuracy limit)."""
        exact = self._exact.get(_exact_key(choice))
        if exact is not None:
            return float(exact <= 0)
        effects = _effects(choice)
        if not effects:
            return 1.0  # the fp32 baseline on any runtime is the reference
        row = self._row(effects)
        unseen = sum(_prior_sd(name) ** 2 for name in effects if name not in self._index)
        mean = float(row @ self._mean)
        variance = float(row @ self._cov @ row) + unseen + RUNTIME_SD**2
        return float(norm.cdf((self.max_drop - mean) / math.sqrt(variance)))
