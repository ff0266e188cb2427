"""Results that could not be logged wait in a local outbox until the tracking server is back.

Every case's files are on disk before anything is logged (``result.json``, ``samples.csv``, profiler output). When
logging a case fails because the tracking store cannot be reached (refused or timed-out connections, HTTP 5xx
after MLflow's retries, a SQLite database locked by other writers), the case goes to
``<output-dir>/outbox/<parent run id>/<nnnn>-<case>/``: an ``entry.json`` (the case, its child run id when the run
was created, its status and error, whether the child run is already complete) and hard links (else copies) of its
files. The pipeline keeps measuring; the MLflow listener retries with exponential backoff (:class:`Backoff`),
logs the waiting cases in order once the server answers, and waits a bounded time at the end. What is still
waiting then stays on disk with a ``parent.json`` (how the parent run should end, and the configuration its
report needs); ``mlperf-track sync DIR`` logs it later (:mod:`mlperf_track.tracking.sync`).

Credentials never go into these files: the tracking URI is stored without its user and password.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlperf_track.pipeline.config import PipelineConfig
from mlperf_track.spec import CaseSpec, TimingConfig

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlperf_track.engine.result import BenchmarkResult
    from mlperf_track.pipeline.events import CaseOutcome

logger = logging.getLogger(__name__)

OUTBOX_DIR = "outbox"
ENTRY_FILE = "entry.json"
PARENT_FILE = "parent.json"
FILES_DIR = "files"
#: Words in an error (or its causes) that say the tracking store is away, not that the request was wrong.
_UNREACHABLE_WORDS = (
    "max retries exceeded",
    "connection refused",
    "connection reset",
    "connection aborted",
    "failed to establish a new connection",
    "read timed out",
    "timed out",
    "too many 500 error responses",
    "too many 502 error responses",
    "too many 503 error responses",
    "too many 504 error responses",
    "database is locked",
    "remote end closed connection",
)


def is_unreachable(error: BaseException) -> bool:
    """Whether ``error`` (or an error it was raised from) means the tracking store could not be reached.

    Connection errors and timeouts (``requests``, ``urllib3``, the builtin ``ConnectionError``/``TimeoutError``),
    and MLflow's wrappers of them, which only keep the text: ``API request to ... failed with exception
    HTTPConnectionPool(...): Max retries exceeded ... Connection refused``.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (ConnectionError, TimeoutError)):
            return True
        names = {klass.__name__ for klass in type(current).__mro__}
        if names & {"ConnectionError", "Timeout", "RetryError", "MaxRetryError", "NewConnectionError", "ProtocolError"}:
            return True
        text = str(current).lower()
        if any(word in text for word in _UNREACHABLE_WORDS):
            return True
        current = current.__cause__ or current.__context__
    return False


def public_uri(uri: str) -> str:
    """``uri`` without a user name and password (what the outbox may write to disk)."""
    parts = urllib.parse.urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


class Backoff:
    """When to try the tracking store again: after 2, 4, 8, ... seconds, at most ``cap_s`` apart.

    Args:
        first_s: The first wait.
        cap_s: The longest wait.
        clock: Returns seconds (injectable for tests).
    """

    def __init__(self, first_s: float = 2.0, cap_s: float = 60.0, clock: Any = time.monotonic) -> None:
        self.first_s = first_s
        self.cap_s = cap_s
        self.clock = clock
        self.failures = 0
        self._next = 0.0

    def failed(self) -> float:
        """Record a failed attempt; returns the seconds until the next one."""
        wait = min(self.cap_s, self.first_s * 2**self.failures)
        self.failures += 1
        self._next = self.clock() + wait
        return wait

    def succeeded(self) -> None:
        """The store answered: the next failure starts from the first wait again."""
        self.failures = 0
        self._next = 0.0

    def due(self) -> bool:
        """Whether it is time to try again."""
        return self.clock() >= self._next

    def wait_s(self) -> float:
        """Seconds until the next attempt is due."""
        return max(0.0, self._next - self.clock())


@dataclass
class Entry:
    """One waiting case: its folder and what ``entry.json`` says."""

    folder: Path
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def case(self) -> CaseSpec:
        return CaseSpec.from_dict(self.data["case"])

    @property
    def files(self) -> dict[str, Path]:
        """Its files by artifact name."""
        return {name: self.folder / FILES_DIR / relative for name, relative in self.data.get("files", {}).items()}

    def result(self) -> BenchmarkResult | None:
        """The measured result (``None`` for a case that failed)."""
        from mlperf_track.engine.result import BenchmarkResult

        path = self.files.get("result.json")
        if self.data.get("status") != "FINISHED" or path is None:
            return None
        return BenchmarkResult.from_dict(json.loads(path.read_text(encoding="utf-8")))

    def save(self) -> None:
        """Write ``entry.json`` atomically (a crash leaves the old or the new one, never half of one)."""
        temporary = self.folder / f".{ENTRY_FILE}.tmp"
        temporary.write_text(json.dumps(self.data, indent=1), encoding="utf-8")
        os.replace(temporary, self.folder / ENTRY_FILE)


class Outbox:
    """The outbox of one parent run: ``<root>/<parent_run_id>/``.

    Args:
        root: ``<output-dir>/outbox``.
        parent_run_id: The parent run.
        tracking_uri: Where the runs live.
        experiment_id: The parent's experiment.
    """

    def __init__(self, root: Path, parent_run_id: str, tracking_uri: str, experiment_id: str) -> None:
        self.root = Path(root)
        self.parent_run_id = parent_run_id
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.folder = self.root / parent_run_id
        self.backoff = Backoff()
        #: Cases that went through the outbox (logged late, or still waiting).
        self.spooled = 0

    def entries(self) -> list[Entry]:
        """The waiting cases, oldest first."""
        return read_entries(self.folder)

    @property
    def pending(self) -> bool:
        """Whether any case is waiting."""
        return any(self.folder.glob(f"*/{ENTRY_FILE}"))

    @property
    def waiting(self) -> bool:
        """Whether anything waits for ``mlperf-track sync``: a case, or how the parent run should end."""
        return self.pending or (self.folder / PARENT_FILE).is_file()

    def put(self, outcome: CaseOutcome, run_id: str | None, limits: dict[str, Any]) -> Entry:
        """Keep ``outcome`` (and a link or copy of its files) until it can be logged."""
        numbers = [int(path.name[:4]) for path in self.folder.glob("*/") if path.name[:4].isdigit()]
        folder = self.folder / f"{max(numbers, default=-1) + 1:04d}-{outcome.case.name}"
        (folder / FILES_DIR).mkdir(parents=True, exist_ok=True)
        files = dict(outcome.artifacts)
        if outcome.result is not None and "result.json" not in files:
            files["result.json"] = outcome.result.write_json(folder / FILES_DIR / "result.json")
        stored = {
            name: _keep(Path(path), folder / FILES_DIR, name) for name, path in files.items() if Path(path).is_file()
        }
        error = outcome.error
        recorded = None if error is None else {"type": type(error).__name__, "message": str(error) or repr(error)}
        entry = Entry(
            folder,
            {
                "parent_run_id": self.parent_run_id,
                "experiment_id": self.experiment_id,
                "tracking_uri": public_uri(self.tracking_uri),
                "case": outcome.case.to_dict(),
                "run_id": run_id,
                "status": "FINISHED" if outcome.result is not None else "FAILED",
                "error": recorded,
                "child_logged": False,
                "files": stored,
                "limits": limits,
                "created": time.time(),
            },
        )
        entry.save()
        self.spooled += 1
        logger.warning("the tracking store is unreachable: %s waits in %s", outcome.case.name, folder)
        return entry

    def save_parent(
        self, status: str, config: PipelineConfig | None, device: str | None, notes: dict[str, str]
    ) -> Path:
        """Write ``parent.json``: how the parent should end, and what its report needs."""
        self.folder.mkdir(parents=True, exist_ok=True)
        data = {
            "parent_run_id": self.parent_run_id,
            "experiment_id": self.experiment_id,
            "tracking_uri": public_uri(self.tracking_uri),
            "status": status,
            "config": None if config is None else config_to_json(config),
            "device": device,
            "notes": notes,
        }
        path = self.folder / PARENT_FILE
        path.write_text(json.dumps(data, indent=1), encoding="utf-8")
        return path


def _keep(path: Path, folder: Path, name: str) -> str:
    """Hard-link (else copy) ``path`` into ``folder``; returns its name there."""
    target = folder / name.replace("/", "_")
    if target.exists():
        return target.name
    try:
        os.link(path, target)
    except OSError:
        shutil.copy2(path, target)
    return target.name


def read_entries(folder: Path) -> list[Entry]:
    """The entries under one parent's outbox folder, oldest first (unreadable ones are skipped with a warning)."""
    entries = []
    for path in sorted(Path(folder).glob(f"*/{ENTRY_FILE}")):
        try:
            entries.append(Entry(path.parent, json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError) as error:
            logger.warning("skipping the unreadable outbox entry %s: %s", path, error)
    return entries


def iter_parent_folders(directory: Path) -> Iterator[Path]:
    """Every parent folder under ``directory``: an outbox root, an output folder holding ``outbox/``, or one
    parent's folder itself."""
    directory = Path(directory)
    if (directory / OUTBOX_DIR).is_dir():
        directory = directory / OUTBOX_DIR
    if (directory / PARENT_FILE).is_file() or any(directory.glob(f"*/{ENTRY_FILE}")):
        yield directory
        return
    if directory.is_dir():
        for child in sorted(directory.iterdir()):
            if child.is_dir() and ((child / PARENT_FILE).is_file() or any(child.glob(f"*/{ENTRY_FILE}"))):
                yield child


def log_entry(entry: Entry, client: MlflowClient) -> str:
    """Log one waiting case into its child run (created now when it was not), and end it; returns the run id.

    Safe to repeat after a crash: ``entry.json`` records the child run as soon as it exists, params and tags are
    logged with the same values, and artifacts overwrite themselves.
    """
    from mlperf_track.tracking import logging as tracking_logging

    data = entry.data
    case = entry.case
    run_id = data.get("run_id")
    if not run_id:
        run = client.create_run(
            data["experiment_id"], run_name=case.name, tags={"mlflow.parentRunId": data["parent_run_id"]}
        )
        run_id = data["run_id"] = run.info.run_id
        entry.save()
    files = entry.files
    result = entry.result()
    if result is not None:
        tracking_logging.log_case_result(result, files, run_id=run_id, client=client)
    else:
        error = RecordedError.of(data.get("error"))
        tracking_logging.log_failed_case(case, error, files, run_id=run_id, client=client)
    client.set_terminated(run_id, data["status"])
    data["child_logged"] = True
    entry.save()
    return str(run_id)


class RecordedError(Exception):
    """An error known only by its recorded type name and message (from a run's tags or an outbox entry)."""

    @classmethod
    def of(cls, recorded: dict[str, str] | None) -> Exception:
        """An exception whose class is named after ``recorded["type"]``, with its message."""
        recorded = recorded or {}
        name = str(recorded.get("type") or "RecordedError")
        klass = type(name if name.isidentifier() else "RecordedError", (cls,), {})
        return klass(str(recorded.get("message") or "no message recorded"))


def config_to_json(config: PipelineConfig) -> dict[str, Any]:
    """The configuration as JSON-able values (paths as text)."""
    data = dataclasses.asdict(config)
    for key, value in data.items():
        if isinstance(value, Path):
            data[key] = str(value)
    return data


def config_from_json(data: dict[str, Any]) -> PipelineConfig:
    """The configuration :func:`config_to_json` wrote."""
    values = dict(data)
    values["timing"] = TimingConfig(**values.get("timing", {}))
    for key in ("variants", "runtimes", "precisions", "batch_sizes"):
        values[key] = tuple(values.get(key) or ())
    for key, value in values.items():  # every other sequence field (pin_cores, text lengths) is a tuple too
        if isinstance(value, list):
            values[key] = tuple(value)
    values["options"] = tuple(tuple(pair) for pair in values.get("options") or ())
    for key in ("cache_dir", "output_dir"):
        if values.get(key) is not None:
            values[key] = Path(values[key])
    known = {item.name for item in dataclasses.fields(PipelineConfig)}
    return PipelineConfig(**{key: value for key, value in values.items() if key in known})
