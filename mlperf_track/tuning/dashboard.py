"""What a person reading the study in optuna-dashboard sees: named objectives and the space in plain values.

``optuna-dashboard sqlite:///optuna.db`` opens the study storage the tuner writes. The tuner names the
objectives (:meth:`optuna.Study.set_metric_names`: ``throughput/samples_per_s`` instead of "Objective 0"),
keeps batch size and thread count as parameters with their real values (see :mod:`mlperf_track.tuning.space`),
puts each trial's variant, runtime, precision, outcome, fidelity and costs in its user attributes, and stores a
description of the space in the study's user attributes.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import optuna

    from mlperf_track.tuning.objective import Target
    from mlperf_track.tuning.space import SearchSpace

#: Study user attributes.
SPACE_ATTR: Final = "mlperf_track.space"


def describe_study(study: optuna.Study, space: SearchSpace, targets: tuple[Target, ...]) -> None:
    """Name the objectives and describe the space on a new study."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([target.metric for target in targets])
    study.set_user_attr(
        SPACE_ATTR,
        {
            "configurations": len(space.choices),
            "batch_sizes": list(space.batch_sizes),
            "threads": list(space.threads),
            "points": space.size,
        },
    )
