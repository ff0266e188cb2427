"""Run a study end to end: space, storage, sampler, objective, MLflow, answer.

:func:`run_tune` is what ``mlperf-track tune`` and ``mlflow run . -e tune`` call. Each call is one worker;
several calls with the same database ``storage`` and ``study_name`` share the study (see
:mod:`mlperf_track.tuning.workers`).
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
from mlperf_track.tuning.config import TuneConfig
from mlperf_track.tuning.objective import Limits, Target, TrialObjective, point_of, targets_for
from mlperf_track.tuning.results import StudySummary, study_limits, summarize, trials_frame
from mlperf_track.tuning.sampling import DESIGNED_SAMPLERS, initial_design, make_sampler, worker_seed
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
    """

    study: optuna.Study
    summary: StudySummary
    frame: pd.DataFrame
    space: SearchSpace
    template: CaseSpec
    trials_run: int
    run_id: str | None = None

    def case_of(self, trial: optuna.trial.FrozenTrial) -> CaseSpec | None:
        """The case a trial measured."""
        point = point_of(self.space, trial)
        return point.to_case(self.template) if point is not None else None


def default_study_name(config: TuneConfig, device: str) -> str:
    """``<model>-<device>-<objective>-<time>-<random>``: a new study per call unless a name is given."""
    model = re.sub(r"[^A-Za-z0-9_.-]+", "_", config.model.rstrip("/").split("/")[-1]) or "model"
    return f"{model}-{device}-{config.objective}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def _signature(config: TuneConfig, space: SearchSpace, targets: tuple[Target, ...], template: CaseSpec) -> Any:
    """What must match for a worker to join an existing study (JSON-normalised)."""
    fixed = {
        key: value
        for key, value in template.to_dict().items()
        if key in ("model", "device", "image_size", "dataset", "channels_last")
    }
    data = {
        "space": space.to_dict(),
        "targets": [target.metric for target in targets],
        "limits": [config.memory_limit_mb, config.p99_slo_ms, config.max_accuracy_drop],
        "case": fixed,
    }
    return json.loads(json.dumps(data))


def _targets(config: TuneConfig, backend: TuningBackend) -> tuple[Target, ...]:
    with_accuracy = backend.measures_accuracy
    if config.max_accuracy_drop is not None and not with_accuracy:
        raise ConfigError(
            "--max-accuracy-drop",
            config.max_accuracy_drop,
            hint="accuracy needs a labelled dataset: use --dataset digits (or auto)",
        )
    if config.objective == "multi" and not with_accuracy:
        logger.warning("the dataset has no labels: the multi-objective study trades throughput against latency only")
    return targets_for(config.objective, with_accuracy=with_accuracy)


def _parent_params(config: TuneConfig, backend: TuningBackend, space: SearchSpace, **extra: Any) -> dict[str, Any]:
    template = backend.template()
    return {
        "model": config.model,
        "study.device": backend.device,
        "study.objective": config.objective,
        "study.n_trials": config.n_trials,
        "study.sampler": config.sampler,
        "study.seed": config.seed,
        "study.memory_limit_mb": "none" if config.memory_limit_mb is None else f"{config.memory_limit_mb:g}",
        "study.p99_slo_ms": "none" if config.p99_slo_ms is None else f"{config.p99_slo_ms:g}",
        "study.max_accuracy_drop": "none" if config.max_accuracy_drop is None else f"{config.max_accuracy_drop:g}",
        "study.image_size": template.image_size,
        "study.dataset": template.dataset,
        "study.batch_sizes": ",".join(map(str, space.batch_sizes)),
        "study.threads": ",".join(map(str, space.threads)) or "default",
        "study.n_configs": len(space.choices),
        "study.space_size": space.size,
        **extra,
    }


def run_tune(config: TuneConfig, backend: TuningBackend | None = None, *, track: bool = True) -> TuneOutcome:
    """Run (this worker's share of) the study described by ``config``.

    Args:
        config: The study.
        backend: What measures; ``None`` builds a :class:`~mlperf_track.tuning.backend.SessionBackend`.
        track: Log to MLflow (the tracking URI and experiment come from
            :func:`mlperf_track.tracking.setup.configure_tracking`).

    Raises:
        ConfigError: Bad input (nothing runnable, an existing study with other settings, ...).
        StorageError: The Optuna storage or the MLflow store cannot be used.
    """
    if backend is None:
        from mlperf_track.tuning.backend import SessionBackend

        backend = SessionBackend(config)
    used: TuningBackend = backend
    try:
        return _run(config, used, track=track)
    finally:
        used.close()


def _run(config: TuneConfig, backend: TuningBackend, *, track: bool) -> TuneOutcome:
    url = resolve_storage_url(config.storage)
    handler = StaleTrialHandler(max_retry=config.max_retry)
    # The storage first: a wrong URL fails in a second, before variants are built.
    storage = open_storage(
        url,
        heartbeat_interval_s=config.heartbeat_interval_s,
        grace_period_s=config.grace_period_s,
        stale_handler=handler,
    )
    space = backend.search_space()
    targets = _targets(config, backend)
    limits = Limits(config.memory_limit_mb, config.p99_slo_ms, config.max_accuracy_drop)
    template = backend.template()
    study_name = config.study_name or default_study_name(config, backend.device)
    seed = worker_seed(config.seed, shared=url is not None)
    sampler = make_sampler(config.sampler, space, seed=seed, n_trials=config.n_trials)
    study, created = open_study(
        storage,
        study_name=study_name,
        directions=[t.direction for t in targets],
        sampler=sampler,
        signature=_signature(config, space, targets, template),
    )
    if created and config.sampler in DESIGNED_SAMPLERS:
        for params in initial_design(space, config.n_trials, seed):
            study.enqueue_trial(params, skip_if_exists=True)
    objective = TrialObjective(space, targets, limits, backend.measure, template)
    logger.info(
        "study %s (%s): %d configurations x %d batch sizes%s = %d points, budget %d trials",
        study_name,
        redact(url),
        len(space.choices),
        len(space.batch_sizes),
        f" x {len(space.threads)} thread counts" if space.threads else "",
        space.size,
        config.n_trials,
    )
    tracker = None
    if track:
        extra = {"study.name": study_name, "study.storage": redact(url), "study.sampler_seed": seed}
        tracker = _start_tracking(config, backend, space, objective, _parent_params(config, backend, space, **extra))
    if tracker is not None:
        handler.listeners.append(tracker.log_stale_trial)
    try:
        ran = run_worker(
            study,
            objective,
            config.n_trials,
            heartbeat=url is not None,
            callbacks=[_log_trial, *([tracker.log_trial] if tracker else []), objective.forget],
        )
        answer_limits = study_limits(config)
        summary = summarize(study, targets, limits=answer_limits, device=backend.device)
        frame = trials_frame(study, targets, answer_limits)
        outcome = TuneOutcome(study, summary, frame, space, template, ran, tracker.run_id if tracker else None)
        if tracker is not None:
            from mlperf_track.tuning.plots import study_figures

            best = [trial.number for trial in summary.best]
            figures = study_figures(study, frame, targets, config.memory_limit_mb, best)
            tracker.finish(summary, frame, figures, outcome.case_of)
    except KeyboardInterrupt as error:
        if tracker is not None:
            tracker.fail(error, status="KILLED")
        raise
    except BaseException as error:
        if tracker is not None:
            tracker.fail(error)
        raise
    return outcome


def _start_tracking(
    config: TuneConfig, backend: TuningBackend, space: SearchSpace, objective: TrialObjective, params: dict[str, Any]
) -> MlflowTuneTracker:
    from mlperf_track.tracking.setup import configure_tracking
    from mlperf_track.tuning.tracking import MlflowTuneTracker

    configure_tracking(config.experiment)
    tracker = MlflowTuneTracker(objective, backend.template())
    study_name = str(params["study.name"])
    tags = {"mlperf_track.command": "tune", "optuna.study_name": study_name}
    space_info = {**space.to_dict(), "skipped": [list(item) for item in space.skipped]}
    tracker.start(run_name=f"tune-{study_name}", params=params, tags=tags, space=space_info)
    return tracker


def _log_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """One log line per finished trial: state, case, values, and what made it infeasible."""
    values = ", ".join(f"{value:.4g}" for value in trial.values) if trial.values else "no value"
    broken = ", ".join(f"{key} {value:+.1%}" for key, value in trial.constraints.items() if value > 0)
    logger.info(
        "trial %d %s %s: %s%s",
        trial.number,
        trial.state.name,
        trial.user_attrs.get("case", trial.params),
        values,
        f" (infeasible: {broken})" if broken else "",
    )
