"""Resume an interrupted pipeline: find the run, take over its finished cases, measure the rest.

Same configuration: every parent records ``mlperf_track.config_fingerprint``, a hash of its resolved
configuration (the ``config.*`` params: model, weights, device, variants, runtimes, precisions, batch sizes,
input size, dataset, epochs, threads, options, timing, seed, accuracy settings, replicates, pinned cores). Where
files go (``--output-dir``, ``--keep-files``) is not part of it. ``resume=last`` takes the newest parent of the
same experiment with the same fingerprint that did not finish (KILLED, FAILED, or RUNNING with its process gone:
stale runs are closed first), was not resumed already, and ran on the same hardware and torch (``hw.cpu``,
``hw.cpu_cores``, ``hw.cpu_affinity``, ``hw.gpu``, ``sw.torch``, ``sw.cuda``): numbers from two machines are
never mixed in one answer. ``resume=RUN_ID`` names the run; a different configuration or machine, or a run still
alive, is refused with one line saying what differs.

Continue the old parent or start a new one? A new one. MLflow can reopen a run, but reopening rewrites its status
and end time, so the record that the first attempt was killed would be lost; inside ``mlflow run`` the parent
is ``mlflow run``'s new run anyway. So the old parent stays ``KILLED`` (or ``FAILED``) and gets
``mlperf_track.resumed_by``; the new parent gets ``mlperf_track.resumed_from``, ``mlperf_track.resumed_cases`` and
the metric ``cases/resumed``. Its finished child runs are *moved* under the new parent (their
``mlflow.parentRunId`` tag is the MLflow UI's nesting; ``mlperf_track.measured_under`` keeps where each was
measured), so the new parent holds every case exactly once, FINISHED, and its summary, best case and report cover
all of them, while the old parent keeps only what did not finish. A resume that is itself killed is resumed the
same way: the chain of ``resumed_from`` links is followed to collect every finished case.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mlperf_track import metrics as m
from mlperf_track.errors import ConfigError
from mlperf_track.pipeline.events import CaseKey, CaseOutcome, case_key
from mlperf_track.tracking import logging as tracking_logging
from mlperf_track.tracking.parent_report import config_params

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

    from mlperf_track.pipeline.config import PipelineConfig
    from mlperf_track.spec import CaseSpec

logger = logging.getLogger(__name__)

ROLE_TAG = "mlperf_track.role"
PARENT_TAG = "mlflow.parentRunId"
LAST = "last"
#: Tags that must match for results to be combined: the machine and the torch build.
MACHINE_TAGS = ("hw.cpu", "hw.cpu_cores", "hw.cpu_affinity", "hw.gpu", "sw.torch", "sw.cuda")
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
_CHAIN_LIMIT = 50


def parse_resume(flag: str, value: str) -> str:
    """``last`` or a run id (32 hex characters), for ``--resume``."""
    text = str(value).strip().lower()
    if text == LAST or _RUN_ID.match(text):
        return text
    raise ConfigError(flag, value, "last, none or a run id (32 hex characters, as the MLflow UI shows it)")


def fingerprint_params(config: PipelineConfig) -> dict[str, str]:
    """What must be equal for two runs to be one configuration: the ``config.*`` params (device resolved)."""
    from mlperf_track.engine.device import resolve_device

    return config_params(config, resolve_device(config.device))


def config_fingerprint(config: PipelineConfig) -> str:
    """A short hash of :func:`fingerprint_params`."""
    text = json.dumps(fingerprint_params(config), sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


@dataclass
class ResumePoint:
    """The run a pipeline resumes and what it already measured.

    Attributes:
        run_id: The parent run resumed.
        chain: It and every parent it resumed in turn (newest first).
        finished: The finished cases: child run id and outcome (its ``result.json``) by case key.
    """

    run_id: str
    chain: list[str]
    finished: dict[CaseKey, tuple[str, CaseOutcome]] = field(default_factory=dict)

    @property
    def outcomes(self) -> dict[CaseKey, CaseOutcome]:
        """The finished outcomes by case key (what :func:`~mlperf_track.pipeline.run_pipeline` takes over)."""
        return {key: outcome for key, (_, outcome) in self.finished.items()}


def _machine_differences(run: Run, machine: dict[str, str]) -> list[str]:
    tags = run.data.tags
    return [
        f"{key} {tags[key]!r} there, {machine[key]!r} here"
        for key in MACHINE_TAGS
        if key in tags and key in machine and tags[key] != machine[key]
    ]


def _config_differences(run: Run, wanted: dict[str, str]) -> list[str]:
    params = {key: value for key, value in run.data.params.items() if key.startswith("config.")}
    keys = sorted(set(params) | set(wanted))
    return [
        f"{key.removeprefix('config.')} {params.get(key, '-')} there, {wanted.get(key, '-')} here"
        for key in keys
        if params.get(key) != wanted.get(key)
    ]


def _search(client: MlflowClient, experiment_id: str, filter_string: str) -> list[Run]:
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string, max_results=1000, order_by=["attributes.start_time DESC"], page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def find_resume_point(
    client: MlflowClient,
    experiment_id: str,
    config: PipelineConfig,
    wanted: str,
    *,
    current_run_id: str | None = None,
) -> ResumePoint | None:
    """The run ``wanted`` (``last`` or a run id) names, with its finished cases; ``None``: nothing to resume.

    Raises:
        ConfigError: A named run that does not exist, is not a pipeline, differs in configuration or machine, is
            still running, or was resumed already.
    """
    from mlperf_track.tracking.context import hardware_software_tags
    from mlperf_track.tracking.stale import why_stale

    fingerprint = config_fingerprint(config)
    machine = hardware_software_tags()
    if wanted == LAST:
        found = None
        for run in _search(client, experiment_id, f"tags.\"{m.CONFIG_FINGERPRINT_TAG}\" = '{fingerprint}'"):
            tags = run.data.tags
            if run.info.run_id == current_run_id or run.info.status == "FINISHED" or m.RESUMED_BY_TAG in tags:
                continue
            if run.info.status == "RUNNING" and why_stale(run) is None:
                continue  # another process is working on it
            if _machine_differences(run, machine):
                continue
            found = run
            break
        if found is None:
            logger.info("resume=last: no unfinished run of this configuration here; starting a new one")
            return None
        run = found
    else:
        run = _named_run(client, wanted, config, machine)
    chain = _chain(client, run)
    point = ResumePoint(run.info.run_id, chain)
    point.finished = finished_children(client, run.info.experiment_id, chain)
    logger.info(
        "resuming run %s (%s): %d finished case(s) are taken over",
        run.info.run_id,
        run.info.status,
        len(point.finished),
    )
    return point


def _named_run(client: MlflowClient, run_id: str, config: PipelineConfig, machine: dict[str, str]) -> Run:
    from mlflow.exceptions import MlflowException

    from mlperf_track.tracking.stale import why_stale

    flag = "--resume"
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise ConfigError(flag, run_id, "the id of a pipeline parent run in this tracking store") from None
    tags = run.data.tags
    if tags.get(ROLE_TAG) != "pipeline" or PARENT_TAG in tags:
        raise ConfigError(flag, run_id, "the parent run of a pipeline (this run is not one)")
    differences = _config_differences(run, fingerprint_params(config))
    if differences:
        raise ConfigError(flag, run_id, "a run of the same configuration", hint="; ".join(differences[:4]))
    machine_differences = _machine_differences(run, machine)
    if machine_differences:
        raise ConfigError(flag, run_id, "a run on the same machine", hint="; ".join(machine_differences))
    if run.info.status == "RUNNING" and why_stale(run) is None:
        owner = f"process {tags.get(m.PID_TAG, '?')} on host {tags.get(m.HOST_TAG, '?')}"
        raise ConfigError(flag, run_id, "a run that is not running", hint=f"{owner} is still working on it")
    if m.RESUMED_BY_TAG in tags:
        later = tags[m.RESUMED_BY_TAG]
        raise ConfigError(flag, run_id, "a run not resumed yet", hint=f"run {later} resumed it: resume {later}")
    return run


def _chain(client: MlflowClient, run: Run) -> list[str]:
    """``run`` and the parents it resumed, newest first (following ``mlperf_track.resumed_from``)."""
    chain = [run.info.run_id]
    previous = run.data.tags.get(m.RESUMED_FROM_TAG)
    while previous and previous not in chain and len(chain) < _CHAIN_LIMIT:
        chain.append(previous)
        try:
            previous = client.get_run(previous).data.tags.get(m.RESUMED_FROM_TAG)
        except Exception:  # a deleted run ends the chain
            break
    return chain


def finished_children(
    client: MlflowClient, experiment_id: str, parents: list[str]
) -> dict[CaseKey, tuple[str, CaseOutcome]]:
    """The FINISHED child runs of ``parents`` that have a ``result.json``, by case key (the newest wins)."""
    finished: dict[CaseKey, tuple[str, CaseOutcome]] = {}
    for parent in parents:
        for run_id, outcome in child_outcomes(client, experiment_id, parent, statuses=("FINISHED",)):
            finished.setdefault(case_key(outcome.case), (run_id, outcome))  # newest first: a later one wins
    return finished


def child_outcomes(
    client: MlflowClient,
    experiment_id: str,
    parent: str,
    *,
    statuses: tuple[str, ...] = ("FINISHED", "FAILED", "KILLED"),
) -> list[tuple[str, CaseOutcome]]:
    """The child runs of ``parent`` as outcomes, newest first: a finished run's ``result.json``, a failed or
    killed run's recorded error (finished runs without a readable ``result.json`` are left out)."""
    from mlperf_track.engine.result import BenchmarkResult
    from mlperf_track.tracking.outbox import RecordedError

    found: list[tuple[str, CaseOutcome]] = []
    with tempfile.TemporaryDirectory(prefix="mlperf_track-children-") as tmp:
        for run in _search(client, experiment_id, f"tags.{PARENT_TAG} = '{parent}'"):
            run_id, status, tags = run.info.run_id, run.info.status, run.data.tags
            if status not in statuses:
                continue
            if status == "FINISHED":
                folder = Path(tmp) / run_id
                folder.mkdir()
                try:
                    path = client.download_artifacts(run_id, tracking_logging.RESULT_FILE, str(folder))
                    result = BenchmarkResult.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
                except Exception as error:
                    logger.warning("run %s has no readable result.json (%s)", run_id, error)
                    continue
                found.append((run_id, CaseOutcome(case=result.case, result=result)))
                continue
            try:
                case = case_from_params(run.data.params)
            except (KeyError, ValueError):  # a run without the case's params says too little to be counted
                continue
            recorded = {"type": tags.get("error.type", status), "message": tags.get("error.message", status.lower())}
            found.append((run_id, CaseOutcome(case=case, error=RecordedError.of(recorded))))
    return found


def case_from_params(params: dict[str, str]) -> CaseSpec:
    """The case a child run's params describe (the inverse of :meth:`CaseSpec.params`).

    Raises:
        KeyError: A param is missing. ValueError: A param has a value no case has.
    """
    from mlperf_track.spec import CaseSpec

    threads = params.get("num_threads", "default")
    return CaseSpec(
        model=params["model"],
        variant=params["variant"],
        runtime=params["runtime"],
        precision=params["precision"],
        batch_size=int(params["batch_size"]),
        device=params.get("device", "cpu"),
        image_size=int(params["image_size"]),
        dataset=params.get("dataset", "synthetic"),
        num_threads=None if threads == "default" else int(threads),
        channels_last=params.get("channels_last") == "true",
        options=tuple(
            (key.removeprefix("option."), value) for key, value in params.items() if key.startswith("option.")
        ),
    )


def adopt(client: MlflowClient, point: ResumePoint, new_parent_id: str) -> dict[CaseKey, str]:
    """Move the finished child runs under ``new_parent_id`` and record the resume on both parents.

    The old parent is claimed first (``mlperf_track.resumed_by``, read back): when another process claimed it at
    the same moment, this one refuses rather than measuring the same cases twice.

    Returns:
        The moved child runs by case key.

    Raises:
        ConfigError: Another process resumed the same run at the same time.
    """
    from mlflow.entities import Metric, RunTag

    client.set_tag(point.run_id, m.RESUMED_BY_TAG, new_parent_id)
    claimed = client.get_run(point.run_id).data.tags.get(m.RESUMED_BY_TAG)
    if claimed != new_parent_id:
        raise ConfigError("--resume", point.run_id, "a run no other process is resuming", hint=f"run {claimed} is")
    moved: dict[CaseKey, str] = {}
    for key, (run_id, _) in point.finished.items():
        tags = client.get_run(run_id).data.tags
        first = tags.get(m.CHILD_RESUMED_FROM_TAG) or tags.get(PARENT_TAG, "")
        client.log_batch(run_id, tags=[RunTag(m.CHILD_RESUMED_FROM_TAG, first), RunTag(PARENT_TAG, new_parent_id)])
        moved[key] = run_id
    names = ",".join(sorted(outcome.case.name for _, outcome in point.finished.values())) or "none"
    client.log_batch(
        new_parent_id,
        metrics=[Metric(m.CASES_RESUMED, float(len(moved)), int(time.time() * 1000), 0)],
        tags=[
            RunTag(m.RESUMED_FROM_TAG, point.run_id),
            RunTag(m.RESUMED_CASES_TAG, tracking_logging.clip(names)),
        ],
    )
    return moved
