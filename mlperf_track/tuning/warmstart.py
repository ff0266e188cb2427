"""Warm start: offer a new study the points earlier runs already measured on the same question and machine.

``--warm-start auto`` looks in the study's MLflow experiment, ``--warm-start NAME`` in experiment ``NAME``,
``none`` nowhere. A run counts when it is a FINISHED case (a pipeline child run, a ``tune`` trial run measured
in full, or one pruned after its short measurement) of the same model, image size, dataset, device
and ``channels_last``, whose point is in the new study's space, and whose machine is this one: every ``hw.*``
and ``sw.*`` tag this process would log (CPU, GPU, Python, torch, CUDA, platform, mlperf_track version) has
the same value on the run. The mlperf_track git commit is not compared (a commit that changes measurements
changes the package version, or a user runs ``--warm-start none``). Runtime library versions logged per case
(``sw.openvino``, ...) are not compared either: they are known only once a runtime is loaded.

Each fully measured point becomes a COMPLETE trial (:meth:`optuna.Study.add_trial`) with the run's metrics as
values, the study's constraints recomputed from them, and user attributes ``outcome = reused`` and
``reused_from = <run id>``. A point an earlier study pruned after its short measurement becomes a PRUNED trial
with that short value as its intermediate value and the constraints the run recorded (``constraint/*``: the
short measurement already showed them), ``fidelity = short``: a one-objective study knows it was no contender
without measuring it again (a full measurement of the same point wins over a short one). The samplers read them
like any trial, so a repeated question answers from what is known and measures only what is new; these trials
count toward ``n_trials`` (what the study knows), are not logged again as MLflow runs (their runs exist), and
appear in the parent's trials table with ``reused_from``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from mlperf_track import metrics as m
from mlperf_track.errors import MeasurementError
from mlperf_track.tuning import objective as o
from mlperf_track.tuning.pruning import SHORT_STEP
from mlperf_track.tuning.space import Choice, SearchSpace, TrialPoint

if TYPE_CHECKING:
    import optuna
    from mlflow.entities import Run
    from optuna.trial import FrozenTrial

    from mlperf_track.spec import CaseSpec

logger = logging.getLogger(__name__)

#: Host tags that identify software builds rather than versions: not compared.
IGNORED_TAGS: Final = frozenset({"sw.mlperf_track_git_commit"})
#: Runs read per page, and at most this many pages.
PAGE_SIZE: Final = 1000
MAX_PAGES: Final = 20


@dataclass(frozen=True)
class KnownPoint:
    """A point of the space an earlier run measured.

    Attributes:
        point: The point.
        run_id: The run that measured it.
        run_name: That run's name.
        metrics: Its metrics (for a short measurement, the short figures under the measured keys).
        valid: The run's validity verdict, when it has one.
        start_time: When the run started (ms since the epoch).
        fidelity: ``full``, or ``short``: a trial pruned after its short measurement.
        constraints: A short measurement's constraint values as its run recorded them.
        pruned_because: Why that trial was pruned.
    """

    point: TrialPoint
    run_id: str
    run_name: str
    metrics: dict[str, float]
    valid: bool | None
    start_time: int
    fidelity: str = o.FULL
    constraints: dict[str, float] = field(default_factory=dict)
    pruned_because: str = ""

    def rank(self) -> tuple[bool, int]:
        """Which of two runs of one point to keep: a full measurement, then the newest."""
        return (self.fidelity == o.FULL, self.start_time)


def fingerprint() -> dict[str, str]:
    """The ``hw.*`` and ``sw.*`` tags a run must share with this process to be reused."""
    from mlperf_track.tracking.context import hardware_software_tags

    return {key: value for key, value in hardware_software_tags().items() if key not in IGNORED_TAGS}


def _experiment_ids(name: str | None) -> list[str]:
    import mlflow

    if name:
        experiment = mlflow.get_experiment_by_name(name)
        return [experiment.experiment_id] if experiment is not None else []
    try:  # the experiment the study will log to (MLflow's current one)
        from mlflow.tracking.fluent import _get_experiment_id

        return [str(_get_experiment_id())]
    except Exception:  # no current experiment
        return []


def _runs(experiment_ids: list[str], template: CaseSpec) -> list[Run]:
    from mlflow.tracking import MlflowClient

    question = {
        "model": template.model,
        "image_size": str(template.image_size),
        "dataset": template.dataset,
        "device": template.device,
    }
    conditions = [f"params.{key} = '{value}'" for key, value in question.items() if "'" not in value]
    conditions.append("attributes.status = 'FINISHED'")
    client = MlflowClient()
    runs: list[Run] = []
    token = None
    for _ in range(MAX_PAGES):
        page = client.search_runs(experiment_ids, " and ".join(conditions), max_results=PAGE_SIZE, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            break
    return runs


def _options_of(run: Run, runtime: str) -> dict[str, str]:
    """The run's runtime options with the runtime's declared defaults filled in."""
    from mlperf_track.runtimes.registry import get_runtime

    options = {spec.key: spec.default for spec in get_runtime(runtime).accepted_options if spec.searched}
    options.update(
        {key.removeprefix("option."): value for key, value in run.data.params.items() if key.startswith("option.")}
    )
    return options


def _point_of(run: Run, space: SearchSpace, template: CaseSpec) -> TrialPoint | None:
    params = run.data.params
    try:
        batch = int(params["batch_size"])
        variant, runtime, precision = params["variant"], params["runtime"], params["precision"]
    except (KeyError, ValueError):
        return None
    if params.get("channels_last", "false") != str(template.channels_last).lower():
        return None
    threads_text = params.get("num_threads", "default")
    threads = None if threads_text == "default" else int(threads_text)
    if space.threads:
        if threads not in space.threads:
            return None
    elif threads != template.num_threads:
        return None
    if batch not in space.batch_sizes:
        return None
    try:
        options = _options_of(run, runtime)
    except Exception:  # an unknown runtime
        return None
    fixed = dict(template.options)
    for choice in space.choices:
        if (choice.variant, choice.runtime, choice.precision) != (variant, runtime, precision):
            continue
        wanted = {**fixed, **dict(choice.options)}
        if all(options.get(key) == value for key, value in wanted.items()):
            return TrialPoint(
                Choice(variant, runtime, precision, choice.options), batch, threads if space.threads else None
            )
    return None


def _valid(run: Run) -> bool | None:
    value = run.data.tags.get(m.VALID_TAG)
    return None if value is None else value.strip().lower() == "true"


def _fidelity(run: Run) -> str | None:
    """``full`` for a fully measured case, ``short`` for a trial pruned after its short measurement, else ``None``."""
    tags, metrics = run.data.tags, run.data.metrics
    outcome = tags.get(m.TRIAL_OUTCOME_TAG)
    if outcome in (None, o.MEASURED, o.REUSED) and m.THROUGHPUT in metrics:
        return o.FULL
    if outcome == o.PRUNED and tags.get(m.TRIAL_FIDELITY_TAG) == o.SHORT and m.SHORT_THROUGHPUT in metrics:
        return o.SHORT
    return None


def _known(run: Run, point: TrialPoint, fidelity: str) -> KnownPoint:
    metrics = dict(run.data.metrics)
    constraints: dict[str, float] = {}
    if fidelity == o.SHORT:
        constraints = {
            key.removeprefix(m.CONSTRAINT_PREFIX): value
            for key, value in metrics.items()
            if key.startswith(m.CONSTRAINT_PREFIX)
        }
        metrics = {measured: metrics[short] for measured, short in m.SHORT_KEYS if short in metrics}
    return KnownPoint(
        point,
        run.info.run_id,
        run.info.run_name or "",
        metrics,
        _valid(run),
        int(run.info.start_time or 0),
        fidelity,
        constraints,
        run.data.tags.get(o.TAG_PRUNED_BECAUSE, ""),
    )


def find_known_points(space: SearchSpace, template: CaseSpec, *, experiment: str | None = None) -> list[KnownPoint]:
    """Points of ``space`` measured by earlier runs on this machine (the newest run of each point).

    Args:
        space: The new study's space.
        template: The case template (model, image size, dataset, device, fixed options).
        experiment: The experiment to read, or ``None`` for MLflow's current one.
    """
    wanted = fingerprint()
    found: dict[tuple[str, int, int | None], KnownPoint] = {}
    mismatched = 0
    for run in _runs(_experiment_ids(experiment), template):
        tags = run.data.tags
        fidelity = _fidelity(run)
        if fidelity is None:
            continue
        if any(tags.get(key) != value for key, value in wanted.items()):
            mismatched += 1
            continue
        point = _point_of(run, space, template)
        if point is None:
            continue
        key = (point.choice.key, point.batch_size, point.num_threads)
        known = _known(run, point, fidelity)
        if key not in found or known.rank() > found[key].rank():
            found[key] = known
    if mismatched:
        logger.info("warm start: %d earlier runs were measured on other hardware or software", mismatched)
    logger.info("warm start: %d points of the space are known from earlier runs", len(found))
    return sorted(found.values(), key=lambda item: item.start_time)


def add_known_points(
    study: optuna.Study,
    space: SearchSpace,
    known: list[KnownPoint],
    *,
    targets: tuple[o.Target, ...],
    limits: o.Limits,
    device: str,
) -> int:
    """Add each known point to ``study``: COMPLETE, or PRUNED for a short one (module docstring); returns how many
    were added."""
    added = 0
    for item in known:
        try:
            short = item.fidelity == o.SHORT
            trial = _short_trial(space, item, targets) if short else _full_trial(space, item, targets, limits, device)
        except (MeasurementError, KeyError) as error:
            logger.info("warm start: run %s not reused (%s)", item.run_id, error)
            continue
        if trial is None:
            continue
        study.add_trial(trial)
        added += 1
    if added:
        logger.info("warm start: %d trials reused from earlier runs", added)
    return added


def _attrs(item: KnownPoint) -> dict[str, Any]:
    return {
        o.ATTR_CASE: item.run_name,
        **item.point.attrs(),
        o.ATTR_OUTCOME: o.REUSED,
        o.ATTR_FIDELITY: item.fidelity,
        o.ATTR_REUSED_FROM: item.run_id,
    }


def _distributions(space: SearchSpace, item: KnownPoint) -> dict[str, Any]:
    distributions = space.distributions()
    return {name: distributions[name] for name in space.params_of(item.point)}


def _full_trial(
    space: SearchSpace, item: KnownPoint, targets: tuple[o.Target, ...], limits: o.Limits, device: str
) -> FrozenTrial | None:
    """A COMPLETE trial of a fully measured point, its constraints recomputed for this study's limits."""
    import optuna

    constraints, attrs = limits.constraints(item.metrics, device)
    values = [item.metrics[target.metric] for target in targets]
    if not all(math.isfinite(value) for value in values):
        return None
    constraints[o.INVALID_MEASUREMENT] = 0.0 if item.valid is not False else 1.0
    user_attrs: dict[str, Any] = {**_attrs(item), **attrs, o.ATTR_METRICS: item.metrics}
    if item.valid is not None:
        user_attrs[o.ATTR_VALID] = item.valid
    return optuna.trial.create_trial(
        params=space.params_of(item.point),
        distributions=_distributions(space, item),
        values=values,
        user_attrs=user_attrs,
        constraints=constraints,
    )


def _short_trial(space: SearchSpace, item: KnownPoint, targets: tuple[o.Target, ...]) -> FrozenTrial | None:
    """A PRUNED trial of a point an earlier study stopped after its short measurement (one objective only)."""
    import optuna

    if len(targets) != 1:
        return None  # a multi-objective study has no short step to place it at
    value = item.metrics[targets[0].metric]
    if not math.isfinite(value):
        return None
    user_attrs: dict[str, Any] = {**_attrs(item), o.ATTR_SHORT_METRICS: item.metrics}
    if item.pruned_because:
        user_attrs[o.ATTR_PRUNED_BECAUSE] = item.pruned_because
    return optuna.trial.create_trial(
        state=optuna.trial.TrialState.PRUNED,
        params=space.params_of(item.point),
        distributions=_distributions(space, item),
        intermediate_values={SHORT_STEP: value},
        user_attrs=user_attrs,
        constraints=item.constraints,
    )
