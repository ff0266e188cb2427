"""Queries and the processes that issue them.

Every time is in nanoseconds from the start of the run. A query's *arrival* is when it was due: its scheduled
time in an open-loop scenario (so a late generator is charged to latency, as in LoadGen, and shows in the issue
lag), the completion of the client's previous query in a closed-loop one. ``issued_ns`` is when it actually
entered the queue.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace

import numpy as np

from mlperf_track.engine.load.config import OFFLINE, SERVER, LoadConfig

#: Status of a query that completed.
OK = "ok"
#: Status of a query that is issued (or due) and not yet finished.
PENDING = "pending"
#: Status of a query refused by a full queue or not served before the run's time cap.
DROPPED = "dropped"


@dataclass(slots=True)
class Query:
    """One query and its timestamps (``-1`` until set).

    Attributes:
        index: Issue order.
        client: The closed-loop client that issued it (0 in open-loop scenarios).
        samples: Samples it carries.
        arrival_ns: When it was due (see the module docstring).
        issued_ns: When it entered the queue.
        start_ns: When a worker started the (first) batch holding it.
        end_ns: When its (last) batch completed.
        status: ``ok``, ``pending``, ``dropped`` or the failure kind (``error``, ``timeout``, ``connection``,
            ``http``).
        batch_samples: Samples in the largest batch it ran in.
        parts_left: Parts still queued or running (a query larger than the batch limit is split).
        error: The first failure message, when it failed.
    """

    index: int
    client: int
    samples: int
    arrival_ns: int
    issued_ns: int = -1
    start_ns: int = -1
    end_ns: int = -1
    status: str = PENDING
    batch_samples: int = 0
    parts_left: int = 0
    error: str = ""


@dataclass(slots=True)
class QueueItem:
    """A query, or a part of one, waiting in the deployment's queue."""

    query: Query
    samples: int
    enqueued_ns: int


def split_query(query: Query, max_batch_size: int, now_ns: int) -> list[QueueItem]:
    """The queue items of ``query``: one, or parts of at most ``max_batch_size`` samples."""
    parts = []
    remaining = query.samples
    while remaining > 0:
        size = min(remaining, max_batch_size)
        parts.append(QueueItem(query, size, now_ns))
        remaining -= size
    query.parts_left = len(parts)
    return parts


class ArrivalProcess(ABC):
    """Decides which queries are issued, and when."""

    def __init__(self, config: LoadConfig) -> None:
        self.config = config
        self.issued = 0

    @property
    @abstractmethod
    def closed_loop(self) -> bool:
        """Whether new queries come from completions (:meth:`next_after`)."""

    @abstractmethod
    def initial(self) -> list[Query]:
        """The queries known at the start, sorted by arrival (open loop: the whole schedule)."""

    def next_after(self, done: Query, now_ns: int) -> Query | None:
        """The query ``done``'s client issues next at ``now_ns``, or ``None`` when the run has enough."""
        return None

    def _new(self, client: int, samples: int, arrival_ns: int) -> Query:
        query = Query(index=self.issued, client=client, samples=samples, arrival_ns=arrival_ns)
        self.issued += 1
        return query


class OpenLoop(ArrivalProcess):
    """Server (Poisson arrivals at ``target_qps``) and Offline (every sample at time 0): a fixed schedule."""

    @property
    def closed_loop(self) -> bool:
        return False

    def initial(self) -> list[Query]:
        config = self.config
        if config.scenario == OFFLINE:
            count = config.resolved_min_queries()
            if config.target_qps is not None:
                count = max(count, math.ceil(config.target_qps * config.min_duration_s))
            return [self._new(0, 1, 0) for _ in range(min(count, config.max_queries))]
        assert config.scenario == SERVER and config.target_qps is not None
        return [self._new(0, 1, arrival) for arrival in poisson_schedule(config)]


def poisson_schedule(config: LoadConfig) -> list[int]:
    """Seeded Poisson arrival times (ns), as LoadGen schedules Server queries.

    The schedule is long enough that its last arrival is at or after ``min_duration_s`` and it holds at least
    ``min_query_count`` queries; it never holds more than ``max_queries`` or runs past ``max_duration_s``.
    """
    assert config.target_qps is not None
    rate = config.target_qps
    wanted = min(max(config.resolved_min_queries(), math.ceil(rate * config.min_duration_s)), config.max_queries)
    rng = np.random.default_rng(config.seed)
    arrivals = np.cumsum(rng.exponential(1.0 / rate, size=wanted))
    while arrivals.size < config.max_queries and arrivals[-1] < config.min_duration_s:
        more = min(max(16, arrivals.size // 8), config.max_queries - arrivals.size)
        arrivals = np.concatenate([arrivals, arrivals[-1] + np.cumsum(rng.exponential(1.0 / rate, size=more))])
    arrivals = arrivals[arrivals <= config.max_duration_s]
    return [round(value * 1e9) for value in arrivals]


def lowest_schedulable_qps(config: LoadConfig) -> float | None:
    """The lowest Server rate whose seeded schedule meets LoadGen's run-length minimums within ``max_duration_s``.

    Below it, :func:`poisson_schedule` is cut at ``max_duration_s`` before it holds the minimum query count (459
    at p99 with early stopping) or reaches ``min_duration_s``, so a run there is INVALID whatever its latency: a
    ``max_qps`` search must not read such a rate as too fast. The seeded schedule at rate ``r`` is the same
    sequence of standard exponential gaps scaled by ``1 / r``, so the answer is exact for ``config.seed``.

    Returns:
        The rate (queries/s), or ``None`` when no rate can meet them (``max_queries`` under the minimum).

    Raises:
        ValueError: ``config`` is not a Server scenario (only Server follows a schedule).
    """
    if config.scenario != SERVER:
        raise ValueError(f"only the server scenario has a schedule, not {config.scenario}")
    wanted = config.resolved_min_queries()
    if wanted > config.max_queries:
        return None
    gaps = np.random.default_rng(config.seed).standard_exponential(size=wanted)
    rate = float(np.sum(gaps)) / config.max_duration_s * (1.0 + 1e-9)
    for _ in range(1000):  # min_duration_s may still be missed by the truncation: step up until it is met
        schedule = poisson_schedule(replace(config, target_qps=rate))
        if len(schedule) >= wanted and schedule[-1] >= round(config.min_duration_s * 1e9):
            return rate
        rate *= 1.01
    return None


class ClosedLoop(ArrivalProcess):
    """Single-stream, multi-stream and concurrency: each client issues its next query when one completes.

    Clients stop issuing once ``min_query_count`` queries were issued and one was issued at or after
    ``min_duration_s`` (LoadGen's rule for the final issue time), or at ``max_queries`` / ``max_duration_s``.
    """

    def __init__(self, config: LoadConfig) -> None:
        super().__init__(config)
        self._min_queries = config.resolved_min_queries()
        self._min_ns = round(config.min_duration_s * 1e9)
        self._max_ns = round(config.max_duration_s * 1e9)
        self._last_issue_ns = 0

    @property
    def closed_loop(self) -> bool:
        return True

    def initial(self) -> list[Query]:
        clients = min(self.config.clients, self.config.max_queries)
        return [self._new(client, self.config.samples_each, 0) for client in range(clients)]

    def next_after(self, done: Query, now_ns: int) -> Query | None:
        if self.issued >= self.config.max_queries or now_ns >= self._max_ns:
            return None
        if self.issued >= self._min_queries and self._last_issue_ns >= self._min_ns:
            return None
        self._last_issue_ns = max(self._last_issue_ns, now_ns)
        return self._new(done.client, self.config.samples_each, now_ns)


def arrival_process(config: LoadConfig) -> ArrivalProcess:
    """The arrival process of ``config``'s scenario."""
    return ClosedLoop(config) if config.closed_loop else OpenLoop(config)
