"""Record a machine's noise floor: how far runs of one configuration, each in its own process, spread apart.

What ``compare`` needs from a noise floor is the spread *between runs* (separate processes: a process restart
lands on other cores, another memory layout, other neighbours), not the spread of the calls inside one run:
the latter shrinks with the run's length and says nothing about where the next run's median lands. So the
floor is estimated from the per-run statistics of at least :data:`~mlperf_track.report.noise.MIN_FLOOR_RUNS`
runs: for each statistic, the standard deviation of its log over the runs (about its coefficient of
variation). Record it from runs made exactly like the runs you will compare (same model, settings, machine
and run length): the floor belongs to that setup.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mlperf_track.errors import ConfigError
from mlperf_track.report.compare import STATISTICS, statistic_of
from mlperf_track.report.noise import MIN_FLOOR_RUNS, RecordedFloor

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)


def record_noise_floor(runs: Sequence[np.ndarray], *, description: str = "") -> RecordedFloor:
    """The between-run spread of every statistic over ``runs`` (one latency sample set per separate run).

    Args:
        runs: Per-call latencies (ms) of each run, one array per run.
        description: What was measured, kept with the floor.

    Raises:
        ConfigError: Fewer than :data:`~mlperf_track.report.noise.MIN_FLOOR_RUNS` runs, or a run without
            positive latencies.
    """
    import numpy as np

    if len(runs) < MIN_FLOOR_RUNS:
        raise ConfigError(
            "runs", len(runs), f"at least {MIN_FLOOR_RUNS} runs, each in its own process",
            hint="fewer underestimate the spread between runs",
        )  # fmt: skip
    arrays = [np.asarray(run, dtype=float) for run in runs]
    for index, values in enumerate(arrays):
        if values.size == 0 or not np.all(np.isfinite(values)) or np.any(values <= 0):
            raise ConfigError(f"runs[{index}]", f"{values.size} latencies", "positive, finite latencies")
    floors = {}
    for name in STATISTICS:
        logs = np.log([float(statistic_of(name, values)) for values in arrays])
        floors[name] = float(np.std(logs, ddof=1))
    logger.debug("noise floor over %d runs: p50 %.2f%%", len(arrays), 100 * floors["p50"])
    return RecordedFloor(floors, len(arrays), description)
