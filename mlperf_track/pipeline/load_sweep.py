"""A load sweep: several load points (rates, or a ``max_qps`` search) against one target, one deployment.

Each point runs in this process with the CPU and thread limits applied, or, with a memory limit, in a child
process that rebuilds the target under the limit (:func:`~mlperf_track.engine.load.isolated.run_isolated`).
A point that fails (killed by a limit, a model error) is kept as a failed point and the sweep goes on. With
background load, the sweep runs twice, unloaded then loaded, and each loaded point carries its slowdown
against the unloaded twin. Listeners see every point as it finishes (MLflow logs one child run each).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from mlperf_track import metrics as m
from mlperf_track.engine.load.background import BackgroundLoad
from mlperf_track.engine.load.config import OFFLINE, SERVER, DeploymentConfig, LoadConfig
from mlperf_track.engine.load.resources import ResourceLimits, constrained
from mlperf_track.engine.load.result import LoadResult
from mlperf_track.engine.load.run import run_load
from mlperf_track.engine.load.search import SearchConfig, SearchOutcome, find_max_qps
from mlperf_track.pipeline.load_target import LoadTarget, OpenTarget

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadPlan:
    """What to sweep.

    Attributes:
        target: What is under load.
        config: The scenario; for Server, ``target_qps`` is replaced by each rate.
        deployment: Queue, workers, batching.
        limits: Resources the deployment gets.
        rates: Server rates to run, in order (empty with ``search``: search instead).
        search: How to search for ``max_qps`` (Server without rates); a ``start_qps`` of ``None`` is calibrated
            (half the Offline throughput), and the search then gives up below 1/32 of it.
        background: Contention to inject (then the sweep also runs unloaded, first).
        isolated_timeout_s: Time cap of one memory-limited point, model loading included.
    """

    target: LoadTarget
    config: LoadConfig
    deployment: DeploymentConfig = field(default_factory=DeploymentConfig)
    limits: ResourceLimits = field(default_factory=ResourceLimits)
    rates: tuple[float, ...] = ()
    search: SearchConfig | None = None
    background: BackgroundLoad = field(default_factory=BackgroundLoad)
    isolated_timeout_s: float = 3600.0


@dataclass
class LoadPoint:
    """One point: its scenario, and its result or the error that ended it."""

    config: LoadConfig
    loaded: bool = False
    result: LoadResult | None = None
    error: BaseException | None = None

    @property
    def label(self) -> str:
        """``server@20qps`` (``+load`` under background load)."""
        return f"{self.config.label}+load" if self.loaded else self.config.label


class LoadListener:
    """Receives sweep events; override what you need."""

    def point_finished(self, point: LoadPoint) -> None:
        """A point finished (with a result or an error)."""


class _Deferred(LoadListener):
    """Holds loaded points back until their slowdown is known."""


@dataclass
class LoadSweepOutcome:
    """Every point, and the ``max_qps`` found (unloaded, and under background load when injected)."""

    plan: LoadPlan
    points: list[LoadPoint] = field(default_factory=list)
    search: SearchOutcome | None = None
    loaded_search: SearchOutcome | None = None

    @property
    def results(self) -> list[LoadResult]:
        """The results of the points that produced one."""
        return [point.result for point in self.points if point.result is not None]


def _run_point_in_child(
    target: LoadTarget, config: LoadConfig, deployment: DeploymentConfig, limits: ResourceLimits
) -> LoadResult:
    """The job of an isolated point (module-level, so the ``spawn`` child can unpickle it)."""
    with target.open(deployment.max_batch_size) as opened, constrained(limits, target.device) as tags:
        return run_load(opened.infer, config, deployment).with_tags({**opened.tags, **tags})


class _Runner:
    """Runs points of a plan, reusing one opened target for the in-process ones."""

    def __init__(self, plan: LoadPlan, opened: OpenTarget | None) -> None:
        self.plan = plan
        self.opened = opened

    def run(self, config: LoadConfig) -> LoadResult:
        plan = self.plan
        if plan.limits.memory_limit_mb is not None:
            from mlperf_track.engine.load.isolated import run_isolated

            job = functools.partial(_run_point_in_child, plan.target, config, plan.deployment, plan.limits)
            return run_isolated(job, memory_limit_mb=plan.limits.memory_limit_mb, timeout_s=plan.isolated_timeout_s)
        assert self.opened is not None
        with constrained(plan.limits, plan.target.device) as tags:
            result = run_load(self.opened.infer, config, plan.deployment)
        return result.with_tags({**self.opened.tags, **tags})


def calibrate_start_qps(run: Callable[[LoadConfig], LoadResult], plan: LoadPlan) -> float:
    """Half the deployment's Offline throughput (a short run at full batches): where a search starts."""
    deployment = plan.deployment
    samples = max(32, 8 * deployment.max_batch_size * deployment.workers)
    probe = LoadConfig(OFFLINE, min_duration_s=0.0, min_query_count=samples, seed=plan.config.seed)
    rate = run(probe).metrics.get(m.LOAD_SAMPLES_PER_S)
    if not rate:
        raise ValueError("the calibration run completed no query: the model fails under load")
    logger.info("calibration: %.4g samples/s offline; the search starts at half of it", rate)
    return rate / 2.0


def _sweep(
    plan: LoadPlan, runner: _Runner, loaded: bool, listener: LoadListener
) -> tuple[list[LoadPoint], SearchOutcome | None]:
    points: list[LoadPoint] = []

    def run_point(config: LoadConfig) -> LoadResult:
        point = LoadPoint(config, loaded)
        try:
            point.result = runner.run(config)
        except Exception as error:  # a failed point is recorded and the sweep goes on
            logger.error("load point %s failed: %s: %s", point.label, type(error).__name__, error)
            point.error = error
        points.append(point)
        listener.point_finished(point)
        if point.error is not None:
            raise point.error
        assert point.result is not None
        return point.result

    config = plan.config
    if config.scenario != SERVER:
        with contextlib.suppress(Exception):
            run_point(config)
        return points, None
    if plan.rates:
        for rate in plan.rates:
            with contextlib.suppress(Exception):
                run_point(replace(config, target_qps=rate))
        return points, None
    search = plan.search or SearchConfig()
    if search.start_qps is None:
        start = calibrate_start_qps(runner.run, plan)
        # Below 1/32 of the calibrated start a Server run lasts 32x longer and cannot pass anyway: the bound is
        # then under what a lone query takes. Stop there rather than halving for hours.
        search = replace(search, start_qps=start, min_qps=max(search.min_qps, start / 32))
    outcome = find_max_qps(lambda rate: run_point(replace(config, target_qps=rate)), search)
    return points, outcome


def _add_slowdown(unloaded: list[LoadPoint], loaded: list[LoadPoint]) -> None:
    """Give each loaded point its p99 slowdown and achieved-rate ratio against the unloaded point of its label."""
    base = {point.label: point.result for point in unloaded if point.result is not None}
    for point in loaded:
        twin = base.get(point.label.removesuffix("+load"))
        if point.result is None or twin is None:
            continue
        extra = {}
        p99, twin_p99 = point.result.metrics.get(m.LOAD_LATENCY_P99), twin.metrics.get(m.LOAD_LATENCY_P99)
        if p99 is not None and twin_p99:
            extra[m.LOAD_P99_SLOWDOWN] = p99 / twin_p99
        qps, twin_qps = point.result.metrics.get(m.LOAD_ACHIEVED_QPS), twin.metrics.get(m.LOAD_ACHIEVED_QPS)
        if qps is not None and twin_qps:
            extra[m.LOAD_QPS_RATIO] = qps / twin_qps
        point.result = point.result.with_metrics(extra)


@contextlib.contextmanager
def _opened(plan: LoadPlan) -> Iterator[OpenTarget | None]:
    if plan.limits.memory_limit_mb is not None:
        yield None  # each point builds its own target in its limited child
        return
    with plan.target.open(plan.deployment.max_batch_size) as opened:
        yield opened


def run_load_plan(plan: LoadPlan, listener: LoadListener | None = None) -> LoadSweepOutcome:
    """Run every point of ``plan``; failed points are kept, never raised.

    Raises:
        ConfigError, DeviceError: Limits this machine cannot apply (checked before anything runs).
    """
    listener = listener or LoadListener()
    plan.limits.check(plan.target.device)
    outcome = LoadSweepOutcome(plan)
    with _opened(plan) as opened:
        runner = _Runner(plan, opened)
        outcome.points, outcome.search = _sweep(plan, runner, False, listener)
        if plan.background.active:
            unloaded = list(outcome.points)
            with plan.background:
                loaded_points, outcome.loaded_search = _sweep(plan, runner, True, _Deferred())
            _add_slowdown(unloaded, loaded_points)
            for point in loaded_points:
                listener.point_finished(point)
            outcome.points.extend(loaded_points)
    return outcome
