"""Run a study end to end: space, storage, warm start, sampler, pruner, objective, budget, MLflow, answer.

:func:`run_tune` is what ``mlperf-track tune`` and ``mlflow run . -e tune`` call. Each call is one worker;
several calls with the same database ``storage`` and ``study_name`` share the study (see
:mod:`mlperf_track.tuning.workers`). The study stops at whichever comes first: ``n_trials`` trials (points
reused from earlier runs count: they are what the study knows), the time budget (wall clock from this call,
preparation included), or every point of the space measured.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlperf_track.errors import ConfigError
from mlperf_track.tuning.budget import Clock, TimeBudget
from mlperf_track.tuning.config import TuneConfig
from mlperf_track.tuning.costs import CostModel
from mlperf_track.tuning.dashboard import describe_study
from mlperf_track.tuning.objective import Fidelity, Limits, Target, TrialObjective, point_of, targets_for
from mlperf_track.tuning.pruning import make_pruner, short_timing
from mlperf_track.tuning.results import StudySummary, study_limits, summarize, trials_frame
from mlperf_track.tuning.sampling import (
    DESIGNED_SAMPLERS,
    initial_design,
    make_sampler,
    resolve_sampler,
    taken_points,
    worker_seed,
)
from mlperf_track.tuning.space import BATCH_PARAM, CONFIG_PARAM, THREADS_PARAM
from mlperf_track.tuning.stopping import StudyStopper
from mlperf_track.tuning.storage import StaleTrialHandler, open_storage, open_study, redact, resolve_storage_url
from mlperf_track.tuning.workers import run_worker

if TYPE_CHECKING:
    import optuna
    import pandas as pd

    from mlperf_track.spec import CaseSpec
    from mlperf_track.tuning.backend import TuningBackend
    from mlperf_track.tuning.space import SearchSpace
    from mlperf_track.tuning.tracking import MlflowTuneTracker

logger = logging.getLogger(__name__)


@dataclass
class TuneOutcome:
    """What one worker's call of :func:`run_tune` leaves behind.

    Attributes:
        study: The study (every worker's trials).
        summary: The answer: best feasible trial or Pareto front, counts.
        frame: The trials table.
        space: The search space.
        template: The case template (turns a trial's point into its case).
        trials_run: Trials this worker ran.
        run_id: The MLflow parent run, when tracked.
        wall_s: Seconds this call took (preparation included), on the study's clock.
        stop_reason: Why the study stopped (``n_trials``, ``time budget``, ``space exhausted``).
        reused: Trials added from earlier runs (warm start).
    """

    study: optuna.Study
    summary: StudySummary
    frame: pd.DataFrame
    space: SearchSpace
    template: CaseSpec
    trials_run: int
    run_id: str | None = None
    wall_s: float = 0.0
    stop_reason: str = "n_trials"
    reused: int = 0

    def case_of(self, trial: optuna.trial.FrozenTrial) -> CaseSpec | None:
        """The case a trial measured."""
        point = point_of(self.space, trial)
        return point.to_case(self.template) if point is not None else None


def default_study_name(config: TuneConfig) -> str:
    """``<model>-<device>-<objective>-<time>-<random>``: a new study per call unless a name is given."""
    pipeline = config.pipeline
    model = re.sub(r"[^A-Za-z0-9_.-]+", "_", pipeline.model.rstrip("/").split("/")[-1]) or "model"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{model}-{pipeline.device}-{config.search.objective}-{stamp}-{uuid.uuid4().hex[:6]}"


def _signature(config: TuneConfig, space: SearchSpace, targets: tuple[Target, ...], template: CaseSpec) -> Any:
    """What must match for a worker to join an existing study (JSON-normalised)."""
    fixed = {
        key: value
        for key, value in template.to_dict().items()
        if key in ("model", "device", "image_size", "dataset", "channels_last")
    }
    search = config.search
    data = {
        "space": space.to_dict(),
        "targets": [target.metric for target in targets],
        "limits": [search.memory_limit_mb, search.p99_slo_ms, config.pipeline.max_accuracy_drop],
        "case": fixed,
    }
    return json.loads(json.dumps(data))


def _targets(config: TuneConfig, backend: TuningBackend) -> tuple[Target, ...]:
    with_accuracy = backend.measures_accuracy
    if config.search.objective == "multi" and not with_accuracy:
        logger.warning("the dataset has no labels: the multi-objective study trades throughput against latency only")
    return targets_for(config.search.objective, with_accuracy=with_accuracy)


def _limits(config: TuneConfig, backend: TuningBackend, space: SearchSpace) -> Limits:
    """The study's constraints; the accuracy limit applies where accuracy is measured."""
    drop = config.pipeline.max_accuracy_drop
    if drop is not None and not backend.measures_accuracy:
        changes = [c.key for c in space.choices if c.variant != "baseline" or c.precision != "fp32"]
        if changes:
            raise ConfigError(
                "--max-accuracy-drop",
                drop,
                hint=f"{len(changes)} configurations can change accuracy ({changes[0]}, ...) and the dataset has no "
                "labels: use --dataset digits (or auto), or --max-accuracy-drop none",
            )
        drop = None  # every candidate is the fp32 baseline: accuracy cannot change
    return Limits(config.search.memory_limit_mb, config.search.p99_slo_ms, drop)


def _parent_params(config: TuneConfig, backend: TuningBackend, space: SearchSpace, **extra: Any) -> dict[str, Any]:
    template = backend.template()
    search, pipeline = config.search, config.pipeline

    def number(value: float | None) -> str:
        return "none" if value is None else f"{value:g}"

    return {
        "model": pipeline.model,
        "study.device": backend.device,
        "study.objective": search.objective,
        "study.n_trials": search.n_trials,
        "study.time_budget_s": number(search.time_budget_s),
        "study.sampler": search.sampler,
        "study.pruner": search.pruner,
        "study.short_time_s": number(search.short_time_s),
        "study.warm_start": search.warm_start,
        "study.seed": pipeline.seed,
        "study.memory_limit_mb": number(search.memory_limit_mb),
        "study.p99_slo_ms": number(search.p99_slo_ms),
        "study.max_accuracy_drop": number(pipeline.max_accuracy_drop),
        "study.image_size": template.image_size,
        "study.dataset": template.dataset,
        "study.batch_sizes": ",".join(map(str, space.batch_sizes)),
        "study.threads": ",".join(map(str, space.threads)) or "default",
        "study.n_configs": len(space.choices),
        "study.space_size": space.size,
        **extra,
    }


def run_tune(
    config: TuneConfig, backend: TuningBackend | None = None, *, track: bool = True, clock: Clock | None = None
) -> TuneOutcome:
    """Run (this worker's share of) the study described by ``config``.

    Args:
        config: The study.
        backend: What measures; ``None`` builds a :class:`~mlperf_track.tuning.backend.SessionBackend`.
        track: Log to MLflow (the tracking URI and experiment come from
            :func:`mlperf_track.tracking.setup.configure_tracking`).
        clock: Seconds now for the time budget (default: the backend's ``clock``, else :func:`time.monotonic`).

    Raises:
        ConfigError: Bad input (nothing runnable, an existing study with other settings, ...).
        StorageError: The Optuna storage or the MLflow store cannot be used.
    """
    budget = TimeBudget(config.search.time_budget_s, clock or getattr(backend, "clock", None) or time.monotonic)
    if backend is None:
        from mlperf_track.tuning.backend import SessionBackend

        backend = SessionBackend(config)
    used: TuningBackend = backend
    try:
        return _run(config, used, budget, track=track)
    finally:
        used.close()


def _run(config: TuneConfig, backend: TuningBackend, budget: TimeBudget, *, track: bool) -> TuneOutcome:
    search = config.search
    url = resolve_storage_url(search.storage)
    handler = StaleTrialHandler(max_retry=search.max_retry)
    # The storage first: a wrong URL fails in a second, before the baseline is prepared.
    storage = open_storage(
        url,
        heartbeat_interval_s=search.heartbeat_interval_s,
        grace_period_s=search.grace_period_s,
        stale_handler=handler,
    )
    space = backend.search_space()
    targets = _targets(config, backend)
    limits = _limits(config, backend, space)
    template = backend.template()
    study_name = search.study_name or default_study_name(config)
    seed = worker_seed(config.pipeline.seed, shared=url is not None)
    short = None
    if len(targets) == 1 and search.short_time_s is not None and search.pruner != "none":
        short = short_timing(config.pipeline.timing, search.short_time_s)
    multi_fidelity = short is not None
    cost_model = CostModel(
        space,
        is_prepared=getattr(backend, "is_prepared", None),
        has_variant=getattr(backend, "has_variant", None),
        multi_fidelity=multi_fidelity,
    )
    maximize = targets[0].direction == "maximize"
    sampler_name = resolve_sampler(search.sampler, len(targets))
    sampler = make_sampler(
        sampler_name, space, seed=seed, n_trials=search.n_trials, n_objectives=len(targets), maximize=maximize,
        template=template, cost_model=cost_model, budget=budget, max_accuracy_drop=limits.max_accuracy_drop,
    )  # fmt: skip
    study, created = open_study(
        storage,
        study_name=study_name,
        directions=[t.direction for t in targets],
        sampler=sampler,
        signature=_signature(config, space, targets, template),
    )
    if multi_fidelity:
        study.pruner = make_pruner(search.pruner)  # read by Trial.should_prune after the short measurement
    if created:
        describe_study(study, space, targets)
    objective = TrialObjective(
        space,
        targets,
        limits,
        backend.measure,
        template,
        fidelity=Fidelity(short),
        full_timing=config.pipeline.timing,
        costs=getattr(backend, "last_costs", None),
        budget=budget,
        cost_model=cost_model,
    )
    logger.info(
        "study %s (%s): %d configurations x %d batch sizes%s = %d points, budget %d trials%s; sampler %s%s",
        study_name,
        redact(url),
        len(space.choices),
        len(space.batch_sizes),
        f" x {len(space.threads)} thread counts" if space.threads else "",
        space.size,
        search.n_trials,
        _budget_text(search.time_budget_s, budget),
        sampler_name,
        f", short measurement {search.short_time_s:g} s then pruner {search.pruner}" if multi_fidelity else "",
    )
    if space.skipped:
        logger.info(
            "%d combinations are not searched (they cannot run here; search_space.json on the parent run says why)",
            len(space.skipped),
        )
    tracker = None
    if track:
        extra = {"study.name": study_name, "study.storage": redact(url), "study.sampler_seed": seed}
        tracker = _start_tracking(config, backend, space, objective, _parent_params(config, backend, space, **extra))
        handler.listeners.append(tracker.log_stale_trial)
    # Warm start reads the MLflow store: only a tracked study uses it (an untracked one has no experiment).
    known = created and track
    reused = _warm_start(config, study, space=space, targets=targets, limits=limits, template=template) if known else 0
    if created and sampler_name in DESIGNED_SAMPLERS:
        taken = taken_points(space, study.get_trials(deepcopy=False), -1)
        for params in initial_design(space, search.n_trials, seed):
            if (params[CONFIG_PARAM], params[BATCH_PARAM], params.get(THREADS_PARAM)) not in taken:
                study.enqueue_trial(params, skip_if_exists=True)
    stopper = StudyStopper(space, budget, cost_model, template)
    try:
        ran = run_worker(
            study,
            objective,
            search.n_trials,
            heartbeat=url is not None,
            callbacks=[_log_trial, *([tracker.log_trial] if tracker else []), objective.forget, stopper],
        )
        answer_limits = study_limits(config, limits)
        summary = summarize(study, targets, limits=answer_limits, device=backend.device)
        frame = trials_frame(study, targets, answer_limits)
        outcome = TuneOutcome(
            study, summary, frame, space, template, ran, tracker.run_id if tracker else None,
            wall_s=budget.elapsed(), stop_reason=stopper.reason or "n_trials", reused=reused,
        )  # fmt: skip
        logger.info("study %s stopped (%s) after %.0f s", study_name, outcome.stop_reason, outcome.wall_s)
        if tracker is not None:
            from mlperf_track.tuning.plots import study_figures

            best = [trial.number for trial in summary.best]
            figures = study_figures(study, frame, targets, search.memory_limit_mb, best)
            tracker.finish(summary, frame, figures, outcome.case_of, wall_s=budget.elapsed(), stop=outcome.stop_reason)
    except KeyboardInterrupt as error:
        if tracker is not None:
            tracker.fail(error, status="KILLED")
        raise
    except BaseException as error:
        if tracker is not None:
            tracker.fail(error)
        raise
    return outcome


def _warm_start(
    config: TuneConfig,
    study: optuna.Study,
    *,
    space: SearchSpace,
    targets: tuple[Target, ...],
    limits: Limits,
    template: CaseSpec,
) -> int:
    """Add the points earlier runs measured (``--warm-start``) to a new study; how many were added."""
    from mlperf_track.tuning.config import is_none

    if is_none(config.search.warm_start):
        return 0
    from mlperf_track.tuning.warmstart import add_known_points, find_known_points

    experiment = config.search.warm_start if config.search.warm_start.strip().lower() != "auto" else None
    try:
        known = find_known_points(space, template, experiment=experiment or config.search.experiment)
    except Exception as error:  # an unreachable or empty store must not stop a study that can measure
        logger.warning("warm start skipped: %s: %s", type(error).__name__, error)
        return 0
    return add_known_points(study, space, known, targets=targets, limits=limits, device=template.device)


def _budget_text(seconds: float | None, budget: TimeBudget) -> str:
    """`` or 300 s (180 s of it left)``: the budget started with ``tune``, so preparing the baseline spent some."""
    return f" or {seconds:g} s ({max(0.0, budget.remaining()):.0f} s of it left)" if seconds else ""


def _start_tracking(
    config: TuneConfig, backend: TuningBackend, space: SearchSpace, objective: TrialObjective, params: dict[str, Any]
) -> MlflowTuneTracker:
    from mlperf_track.tracking.setup import configure_tracking
    from mlperf_track.tuning.tracking import MlflowTuneTracker

    configure_tracking(config.search.experiment)
    tracker = MlflowTuneTracker(objective, backend.template())
    study_name = str(params["study.name"])
    tags = {"mlperf_track.command": "tune", "optuna.study_name": study_name}
    space_info = {**space.to_dict(), "skipped": [list(item) for item in space.skipped]}
    tracker.start(run_name=f"tune-{study_name}", params=params, tags=tags, space=space_info)
    return tracker


def _log_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """One log line per finished trial: outcome, case, values, fidelity, costs, and what made it infeasible."""
    attrs = trial.user_attrs
    values = ", ".join(f"{value:.4g}" for value in trial.values) if trial.values else "no value"
    broken = ", ".join(f"{key} {value:+.1%}" for key, value in trial.constraints.items() if value > 0)
    costs = ""
    if "trial_s" in attrs:
        costs = (
            f" [{attrs.get('fidelity', '?')} fidelity, preparation {attrs.get('prepare_s', 0):.1f} s "
            f"({attrs.get('preparation', 'none')}), measurement {attrs.get('measure_s', 0):.1f} s]"
        )
    logger.info(
        "trial %d %s %s: %s%s%s",
        trial.number,
        attrs.get("outcome", trial.state.name.lower()),
        attrs.get("case", trial.params),
        values,
        f" (infeasible: {broken})" if broken else "",
        costs,
    )
