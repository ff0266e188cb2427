"""The study's time budget: wall-clock seconds from the start of ``tune``, preparation included.

``--time-budget`` and ``--n-trials`` both bound a study; it stops at whichever comes first. To stop *within*
the budget rather than after it, a trial starts only when its predicted cost fits in what is left after a
reserve for finishing the study (the summary, figures and MLflow logging), and the full measurement's timed
window is capped to the time left. Preparation (a compile, an engine build) cannot be cut short once it has
started, so its prediction decides (:class:`~mlperf_track.tuning.costs.CostModel`). The clock is injectable:
tests and the replay benchmark pass a simulated one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

#: Seconds kept for finishing a study (summary, figures, logging), at most this fraction of the budget.
FINISH_RESERVE_S: Final = 10.0
FINISH_RESERVE_FRACTION: Final = 0.05

Clock = Callable[[], float]


@dataclass
class TimeBudget:
    """Seconds a study may take, measured on ``clock`` from ``start``.

    Attributes:
        seconds: The budget, or ``None`` for no time limit.
        clock: Seconds now (default: :func:`time.monotonic`).
        start: When the study started on that clock (default: when this object was made).
    """

    seconds: float | None
    clock: Clock = time.monotonic
    start: float = field(default=float("nan"))

    def __post_init__(self) -> None:
        if self.start != self.start:  # NaN: not given
            self.start = self.clock()

    @property
    def limited(self) -> bool:
        """Whether there is a time limit."""
        return self.seconds is not None

    def elapsed(self) -> float:
        """Seconds since the start."""
        return self.clock() - self.start

    def reserve(self) -> float:
        """Seconds kept for finishing the study."""
        if self.seconds is None:
            return 0.0
        return min(FINISH_RESERVE_S, FINISH_RESERVE_FRACTION * self.seconds)

    def remaining(self) -> float:
        """Seconds left for trials (``inf`` without a limit)."""
        if self.seconds is None:
            return float("inf")
        return self.seconds - self.reserve() - self.elapsed()

    def fits(self, predicted_s: float) -> bool:
        """Whether a trial predicted to take ``predicted_s`` seconds ends within the budget."""
        return predicted_s <= self.remaining()

    def used_fraction(self) -> float:
        """How much of the budget is spent (0 without a limit)."""
        if self.seconds is None:
            return 0.0
        return min(1.0, max(0.0, self.elapsed() / self.seconds))
