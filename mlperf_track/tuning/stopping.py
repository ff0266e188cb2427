"""When a study stops early: the time budget cannot fit another trial, or every point is measured.

``--n-trials`` is enforced by the workers' shared budget (:mod:`mlperf_track.tuning.workers`); this callback
adds the two other reasons, each said once in the log and recorded on the outcome (``stop_reason``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from mlperf_track.tuning.sampling import taken_points

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from mlperf_track.spec import CaseSpec
    from mlperf_track.tuning.budget import TimeBudget
    from mlperf_track.tuning.costs import CostModel
    from mlperf_track.tuning.space import SearchSpace

logger = logging.getLogger(__name__)

TIME_BUDGET: Final = "time budget"
EXHAUSTED: Final = "space exhausted"


class StudyStopper:
    """An Optuna callback that stops the study when no trial fits the time budget or no point is left.

    Args:
        space: The search space.
        budget: The time budget.
        cost_model: Predicts the cost of the cheapest point still to measure.
        template: The case template.
    """

    def __init__(self, space: SearchSpace, budget: TimeBudget, cost_model: CostModel, template: CaseSpec) -> None:
        self.space = space
        self.budget = budget
        self.cost_model = cost_model
        self.template = template
        self.reason: str | None = None

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        trials = study.get_trials(deepcopy=False)
        taken = taken_points(self.space, trials, -1)
        free = [p for p in self.space.points() if (p.choice.key, p.batch_size, p.num_threads) not in taken]
        if not free:
            self._stop(study, EXHAUSTED, f"every one of the {self.space.size} points of the space is measured")
            return
        if not self.budget.limited:
            return
        self.cost_model.update(trials)
        cheapest = min(self.cost_model.admission_s(point, self.template) for point in free)
        if not self.budget.fits(cheapest):
            left = max(0.0, self.budget.remaining())
            self._stop(study, TIME_BUDGET, f"{left:.0f} s left, the cheapest point left needs about {cheapest:.0f} s")

    def _stop(self, study: optuna.Study, reason: str, detail: str) -> None:
        if self.reason is None:
            logger.info("stopping the study: %s (%s)", reason, detail)
        self.reason = reason
        study.stop()
