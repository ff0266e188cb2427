"""Run one load point: warm the model up, run the scenario (real threads or virtual time), summarise."""

from __future__ import annotations

import logging

from mlperf_track.engine.clock import Clock
from mlperf_track.engine.load.config import DeploymentConfig, LoadConfig
from mlperf_track.engine.load.ledger import InferenceFn
from mlperf_track.engine.load.result import LoadResult
from mlperf_track.engine.load.simulate import simulate
from mlperf_track.engine.load.summary import summarize
from mlperf_track.engine.load.threaded import run_threaded

logger = logging.getLogger(__name__)


def warm_up(infer: InferenceFn, deployment: DeploymentConfig, calls: int = 3) -> None:
    """Call ``infer`` at batch 1 and at the largest batch ``calls`` times each, outside any measurement.

    A failure here is not swallowed: a model that cannot run a batch fails before the load starts.
    """
    sizes = sorted({1, deployment.max_batch_size})
    for size in sizes:
        for _ in range(calls):
            infer(size)


def run_load(
    infer: InferenceFn,
    config: LoadConfig,
    deployment: DeploymentConfig | None = None,
    *,
    clock: Clock | None = None,
    simulated: bool = False,
    warmup_calls: int = 3,
) -> LoadResult:
    """Run ``config``'s scenario against a deployment of ``infer`` and judge it by LoadGen's rules.

    Args:
        infer: Runs one batch of ``n`` samples (a prepared model, an HTTP request, a synthetic model).
        config: The scenario, its rate or concurrency, its bound and run length.
        deployment: Queue, workers and dynamic batching (default: one worker, no batching).
        clock: Time source. Real runs use ``perf_counter``; with ``simulated=True`` the service times are read
            from this clock around each call (a :class:`~mlperf_track.engine.clock.FakeClock` that the model
            advances gives a deterministic run).
        simulated: Run in virtual time (:func:`~mlperf_track.engine.load.simulate.simulate`) instead of threads.
        warmup_calls: Untimed calls at batch 1 and at the largest batch before the run (0: none).

    Returns:
        The :class:`LoadResult`; ``result.valid`` says whether LoadGen's rules hold, and why not.
    """
    deployment = deployment or DeploymentConfig()
    if warmup_calls:
        warm_up(infer, deployment, warmup_calls)
    if simulated:
        if clock is None:
            raise ValueError("a simulated run reads service times from a clock: pass clock=")
        run = simulate(infer, config, deployment, clock)
    else:
        run = run_threaded(infer, config, deployment, clock)
    result = summarize(run, config, deployment)
    logger.info(
        "%s: %s, %d queries%s",
        result.label,
        result.verdict,
        len(result.queries),
        f" ({'; '.join(result.invalid_reasons)})" if result.invalid_reasons else "",
    )
    return result
