"""``--objective max_qps``: a study whose trials serve a configuration under load and search its ``max_qps``.

A trial is a runnable (variant, runtime, precision) choice of the study's space (:mod:`.space`), a dynamic
batching setting and a number of model instances (workers), [and a CPU thread count]. It is measured by the
load sweep's ``max_qps`` search (:func:`~mlperf_track.pipeline.load_sweep.run_load_plan`: Poisson arrivals,
the highest Server rate whose p99 stays under ``--latency-bound-ms``, LoadGen's validity rules), on the
session's own prepared artifact (:class:`~mlperf_track.pipeline.load_stage.SessionCaseTarget`).

Valid combinations only: the batching setting is one categorical over the valid (max batch size, max queue
delay) pairs, because a queue delay without batching (max batch size 1) only delays each request, it never
buys a fuller batch; so ``max_batch_size=1`` pairs with a delay of 0 alone. The value is the rate the best
passing probe's schedule offered (as LoadGen reports it); a trial where no rate down to the search's minimum
passes has no value and ends ``PRUNED`` with ``outcome = no_passing_rate`` (a zero would be an invented number).
The study names its objective by its metric key, ``best/max_qps`` (:meth:`optuna.Study.set_metric_names`), as the
other objectives do (``throughput/samples_per_s``).

The multi-fidelity, cost-aware and warm-start machinery of the other objectives measures one batch size per
trial and does not apply here: the sampler is TPE (``grid``, ``random`` and ``gp`` as asked; ``auto`` and
``costaware`` mean TPE), and a trial's cost is its search.
"""

from __future__ import annotations

import datetime
import logging
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import optuna

from mlperf_track import metrics as m
from mlperf_track.engine.load.config import SERVER, DeploymentConfig, LoadConfig
from mlperf_track.engine.load.search import SearchConfig
from mlperf_track.errors import MeasurementError
from mlperf_track.pipeline.load_sweep import LoadListener, LoadPlan, LoadSweepOutcome, run_load_plan
from mlperf_track.tuning.config import MAX_QPS, SearchSettings, TuneConfig
from mlperf_track.tuning.objective import ATTR_PRUNED_BECAUSE
from mlperf_track.tuning.space import CONFIG_PARAM, THREADS_PARAM, Choice, SearchSpace, TrialPoint

if TYPE_CHECKING:
    from mlperf_track.spec import CaseSpec
    from mlperf_track.tuning.backend import SessionBackend

logger = logging.getLogger(__name__)

#: Optuna parameter names of the deployment.
BATCHING_PARAM: Final = "batching"
WORKERS_PARAM: Final = "load_workers"
#: The trial outcome of a search in which no rate passed.
NO_PASSING_RATE: Final = "no_passing_rate"

#: Serves ``case`` with ``deployment`` and searches its max_qps (``listener`` sees every load point).
LoadMeasure = Callable[["CaseSpec", DeploymentConfig, LoadListener | None], LoadSweepOutcome]


def batching_keys(settings: SearchSettings) -> list[str]:
    """The valid ``max_batch_size=B,max_queue_delay_ms=D`` pairs (a delay above 0 only with B above 1)."""
    keys: list[str] = []
    for size in sorted(set(settings.max_batch_size)):
        delays = sorted(set(settings.max_queue_delay_ms)) if size > 1 else [0.0]
        keys += [f"max_batch_size={size},max_queue_delay_ms={delay:g}" for delay in delays]
    return keys


def deployment_of(batching: str, workers: int) -> DeploymentConfig:
    """The deployment of a batching key and a worker count."""
    values = dict(item.split("=", 1) for item in batching.split(","))
    return DeploymentConfig(
        workers=workers,
        max_batch_size=int(values["max_batch_size"]),
        max_queue_delay_ms=float(values["max_queue_delay_ms"]),
    )


class MaxQpsObjective:
    """The callable handed to :meth:`optuna.Study.optimize`: one trial, one ``max_qps`` search."""

    def __init__(
        self,
        space: SearchSpace,
        template: CaseSpec,
        settings: SearchSettings,
        measure: LoadMeasure,
        listener_for: Callable[[optuna.Trial], LoadListener | None] | None = None,
    ) -> None:
        self.space = space
        self.template = template
        self.batching = batching_keys(settings)
        self.workers = sorted(set(settings.load_workers))
        self.measure = measure
        self.listener_for = listener_for
        self.outcomes: dict[int, LoadSweepOutcome] = {}

    def distributions(self) -> dict[str, Any]:
        """The parameters as a grid (:class:`optuna.samplers.GridSampler`)."""
        grid: dict[str, list[Any]] = {
            CONFIG_PARAM: [choice.key for choice in self.space.choices],
            BATCHING_PARAM: self.batching,
            WORKERS_PARAM: self.workers,
        }
        if self.space.threads:
            grid[THREADS_PARAM] = list(self.space.threads)
        return grid

    def __call__(self, trial: optuna.Trial) -> float:
        """Serve the trial's point and return its ``max_qps``.

        Raises:
            optuna.TrialPruned: No rate passed (no value was measured).
            MeasurementError: The served model failed (the study records the trial ``FAIL``).
        """
        choice = Choice.from_key(str(trial.suggest_categorical(CONFIG_PARAM, [c.key for c in self.space.choices])))
        batching = str(trial.suggest_categorical(BATCHING_PARAM, self.batching))
        workers = int(trial.suggest_categorical(WORKERS_PARAM, self.workers))
        threads = None
        if self.space.threads:
            threads = int(trial.suggest_categorical(THREADS_PARAM, list(self.space.threads)))
        deployment = deployment_of(batching, workers)
        case = TrialPoint(choice, deployment.max_batch_size, threads).to_case(self.template)
        trial.set_user_attr("case", case.name)
        trial.set_user_attr("deployment", deployment.params())
        listener = self.listener_for(trial) if self.listener_for is not None else None
        try:
            outcome = self.measure(case, deployment, listener)
        except Exception as error:  # a model that fails under load: the trial fails, the study goes on
            trial.set_user_attr("outcome", "failed")
            reason = f"{case.name} with {batching}, {workers} workers: {type(error).__name__}: {error}"
            raise MeasurementError(reason) from error
        self.outcomes[trial.number] = outcome
        search = outcome.search
        trial.set_user_attr("load.search.probes", len(search.probes) if search else 0)
        if search is None or search.max_qps is None:
            reason = f"no rate passed ({search.stop_reason if search else 'no search'})"
            trial.set_user_attr("outcome", NO_PASSING_RATE)
            trial.set_user_attr(ATTR_PRUNED_BECAUSE, reason)
            raise optuna.TrialPruned(reason)
        trial.set_user_attr("outcome", "measured")
        trial.set_user_attr("load.search.stop_reason", search.stop_reason)
        trial.set_user_attr("load.search.target_qps", search.max_qps)
        return float(search.max_scheduled_qps if search.max_scheduled_qps is not None else search.max_qps)


def session_measure(backend: SessionBackend, settings: SearchSettings, seed: int) -> LoadMeasure:
    """Measure on the backend's session: its artifacts, prepared again for each deployment's batches."""
    from mlperf_track.pipeline.load_stage import SessionCaseTarget
    from mlperf_track.pipeline.session import cpu_threads

    assert settings.latency_bound_ms is not None
    config = LoadConfig(
        SERVER,
        target_qps=1.0,
        latency_bound_ms=settings.latency_bound_ms,
        min_duration_s=settings.min_duration,
        seed=seed,
    )

    def measure(case: CaseSpec, deployment: DeploymentConfig, listener: LoadListener | None) -> LoadSweepOutcome:
        plan = LoadPlan(SessionCaseTarget(backend.session, case), config, deployment, search=SearchConfig())
        backend.session.release()
        with cpu_threads(case.num_threads):
            return run_load_plan(plan, listener)

    return measure


@dataclass
class MaxQpsOutcome:
    """A ``max_qps`` study: the study, the best trial (``None``: no trial passed) and the MLflow parent run."""

    study: optuna.Study
    best: optuna.trial.FrozenTrial | None
    run_id: str | None = None


def study_name(config: TuneConfig) -> str:
    """The given name, else ``<model>-<device>-max_qps-<time>-<random>``."""
    if config.search.study_name:
        return config.search.study_name
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    return f"{config.pipeline.model}-{config.pipeline.device}-{MAX_QPS}-{stamp}-{uuid.uuid4().hex[:6]}"


def make_sampler(name: str, grid: dict[str, list[Any]], seed: int) -> optuna.samplers.BaseSampler:
    """``grid``, ``random``, ``gp``; anything else (``auto``, ``costaware``, ``tpe``, ``nsga2``) is TPE."""
    if name == "grid":
        return optuna.samplers.GridSampler(grid, seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name not in ("auto", "tpe"):
        logger.info("--sampler %s does not apply to --objective max_qps: TPE searches instead", name)
    return optuna.samplers.TPESampler(seed=seed)


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The completed trial with the highest ``max_qps``, or ``None``."""
    done = [trial for trial in study.trials if trial.state == optuna.trial.TrialState.COMPLETE and trial.values]
    return max(done, key=lambda trial: trial.values[0]) if done else None


def run_max_qps_study(
    config: TuneConfig, backend: SessionBackend | None = None, *, measure: LoadMeasure | None = None, track: bool = True
) -> MaxQpsOutcome:
    """Run the ``max_qps`` study of ``config`` (``--objective max_qps``), each trial a nested MLflow run.

    Args:
        config: The study; ``search.latency_bound_ms`` is required (checked by :class:`SearchSettings`).
        backend: The session backend (``None``: built from ``config``); closed at the end.
        measure: How a trial is served (``None``: on the backend's session, :func:`session_measure`).
        track: Log a parent run, a child run per trial and each trial's load points under it.
    """
    from mlperf_track.tuning.backend import SessionBackend
    from mlperf_track.tuning.storage import open_storage, resolve_storage_url

    search = config.search
    storage = open_storage(
        resolve_storage_url(search.storage),
        heartbeat_interval_s=search.heartbeat_interval_s,
        grace_period_s=search.grace_period_s,
    )
    backend = backend or SessionBackend(config)
    try:
        space, template = backend.search_space(), backend.template()
        measure = measure or session_measure(backend, search, config.pipeline.seed)
        tracker = None
        if track:
            from mlperf_track.tuning.load_tracking import MaxQpsTracker

            tracker = MaxQpsTracker(config)
        objective = MaxQpsObjective(
            space, template, search, measure, tracker.listener_for if tracker is not None else None
        )
        sampler = make_sampler(search.sampler, objective.distributions(), config.pipeline.seed)
        study = optuna.create_study(
            storage=storage, study_name=study_name(config), direction="maximize", sampler=sampler, load_if_exists=True
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([m.BEST_MAX_QPS])  # the metric key, as the other objectives name theirs
        callbacks = [tracker.log_trial(objective)] if tracker is not None else []
        try:
            study.optimize(
                objective,
                n_trials=search.n_trials,
                timeout=search.time_budget_s,
                catch=(MeasurementError,),
                callbacks=callbacks,
            )
        except BaseException as error:
            if tracker is not None:
                tracker.abort(error)
            raise
        best = best_trial(study)
        if tracker is not None:
            tracker.finish(best)
        return MaxQpsOutcome(study, best, tracker.parent_run_id if tracker is not None else None)
    finally:
        backend.close()
