"""MLflow runs of a ``max_qps`` study: a parent, a child per trial, each trial's load points under it.

Parent (``mlperf_track.role=tune``, ``study.objective=max_qps``): the study's settings as params, then
``best/max_qps`` and the best trial's configuration (tags ``best.trial``, ``best.case``, ``best.deployment``).
Trial (``trial <n>``): its point (params ``config``, ``batching``, ``load_workers``[, ``num_threads``]),
``best/max_qps`` when a rate passed, the tag ``trial.outcome``, and, from the load sweep's own logging
(:mod:`mlperf_track.tracking.load_run`), a child run per probe and the latency-vs-load figures.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import optuna

from mlperf_track import metrics as m
from mlperf_track.interrupts import release_unwound_frames
from mlperf_track.pipeline.load_sweep import LoadListener
from mlperf_track.tuning.objective import ATTR_PRUNED_BECAUSE

if TYPE_CHECKING:
    from mlperf_track.tuning.config import TuneConfig
    from mlperf_track.tuning.load_study import MaxQpsObjective

logger = logging.getLogger(__name__)


class MaxQpsTracker:
    """Starts the parent run on creation; :meth:`listener_for` starts a trial's run, :meth:`log_trial` ends it."""

    def __init__(self, config: TuneConfig) -> None:
        import mlflow

        from mlperf_track.tracking.context import hardware_software_tags
        from mlperf_track.tracking.pipeline_run import ROLE_TAG
        from mlperf_track.tracking.setup import configure_tracking, experiment_for

        search = config.search
        configure_tracking(experiment_for(search.experiment, config.pipeline.model))
        run = mlflow.start_run(run_name=f"tune max_qps {config.pipeline.model}")
        self.parent_run_id = run.info.run_id
        mlflow.set_tags({**hardware_software_tags(), ROLE_TAG: "tune", "study.objective": "max_qps"})
        mlflow.log_params(
            {
                "model": config.pipeline.model,
                "device": config.pipeline.device,
                "load.latency_bound_ms": f"{search.latency_bound_ms:g}",
                "load.min_duration": f"{search.min_duration:g}",
                "search.max_batch_size": ",".join(str(value) for value in search.max_batch_size),
                "search.max_queue_delay_ms": ",".join(f"{value:g}" for value in search.max_queue_delay_ms),
                "search.load_workers": ",".join(str(value) for value in search.load_workers),
                "n_trials": str(search.n_trials),
            }
        )
        self._trial_runs: dict[int, str] = {}

    def listener_for(self, trial: optuna.Trial) -> LoadListener:
        """Start the trial's run (the active one while its probes are logged under it)."""
        import mlflow

        from mlperf_track.tracking.load_run import MlflowLoadListener

        run = mlflow.start_run(run_name=f"trial {trial.number}", nested=True, parent_run_id=self.parent_run_id)
        self._trial_runs[trial.number] = run.info.run_id
        mlflow.log_params({key: str(value) for key, value in trial.params.items()})
        return MlflowLoadListener(run.info.run_id)

    def log_trial(self, objective: MaxQpsObjective) -> Callable[[optuna.Study, optuna.trial.FrozenTrial], None]:
        """The study callback that ends a trial's run with its value, outcome and load figures."""

        def log(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            import mlflow

            from mlperf_track.tracking.load_run import log_sweep_summary

            run_id = self._trial_runs.pop(trial.number, None)
            if run_id is None:
                return
            tags = {"trial.outcome": str(trial.user_attrs.get("outcome", trial.state.name.lower()))}
            if ATTR_PRUNED_BECAUSE in trial.user_attrs:
                tags["note.best/max_qps"] = str(trial.user_attrs[ATTR_PRUNED_BECAUSE])
            mlflow.set_tags(tags)
            sweep = objective.outcomes.pop(trial.number, None)
            if sweep is not None:
                log_sweep_summary(sweep, run_id)  # best/max_qps (the rate LoadGen reports) and the figures
            failed = trial.state == optuna.trial.TrialState.FAIL
            mlflow.end_run(status="FAILED" if failed else "FINISHED")

        return log

    def finish(self, best: optuna.trial.FrozenTrial | None) -> None:
        """The best trial on the parent, then end it."""
        import mlflow

        if best is not None and best.values:
            mlflow.log_metric(m.BEST_MAX_QPS, best.values[0])
            mlflow.set_tags(
                {
                    "best.trial": str(best.number),
                    "best.case": str(best.user_attrs.get("case", "")),
                    "best.deployment": json.dumps(best.user_attrs.get("deployment", {}), sort_keys=True),
                }
            )
        else:
            mlflow.set_tag(f"note.{m.BEST_MAX_QPS}", "no trial found a rate whose p99 stayed under the bound")
        mlflow.end_run(status="FINISHED")

    def abort(self, error: BaseException) -> None:
        """End every open run: KILLED on Ctrl-C, else FAILED with the error's tags."""
        from mlperf_track.tracking.pipeline_run import end_open_runs, fail_parent

        release_unwound_frames(error)  # an error that landed inside a store read must not lock out the writes below
        if isinstance(error, KeyboardInterrupt):
            end_open_runs("KILLED")
        else:
            fail_parent(error)
