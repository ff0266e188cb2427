"""The bookkeeping both executors share: the queue, every query's timestamps, and closed-loop follow-ups.

The :class:`Ledger` is not thread-safe; the threaded deployment calls it under its lock, the simulator from
its single event loop. What it records is what :mod:`mlperf_track.engine.load.summary` turns into metrics.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from mlperf_track.engine.load.batcher import decide
from mlperf_track.engine.load.config import DeploymentConfig
from mlperf_track.engine.load.queries import DROPPED, OK, PENDING, ArrivalProcess, Query, QueueItem, split_query

#: Runs one batch of ``n`` samples (a prepared model, an HTTP request, a synthetic spin).
InferenceFn = Callable[[int], object]

#: Failure kind of an exception that does not name its own (see :func:`failure_kind`).
GENERIC_FAILURE = "error"


def failure_kind(error: BaseException) -> str:
    """The kind of a failed call: the exception's ``kind`` attribute when it has one (HTTP), else ``error``."""
    kind = getattr(error, "kind", None)
    return kind if isinstance(kind, str) and kind else GENERIC_FAILURE


@dataclass
class LoadRun:
    """What an executor recorded.

    Attributes:
        queries: Every issued query, in issue order, with its timestamps and status.
        executor: ``threads`` or ``simulated``.
        batch_sizes: Samples in each model call, in dispatch order.
        deadline_hit: Whether the run's time cap ended it with queries outstanding.
        notes: Facts worth recording (the clock used, why queries were dropped).
    """

    queries: list[Query]
    executor: str
    batch_sizes: list[int] = field(default_factory=list)
    deadline_hit: bool = False
    notes: dict[str, str] = field(default_factory=dict)


class Ledger:
    """Queue and records of one run.

    Args:
        process: Where queries come from.
        deployment: Batch limit, queue delay and queue capacity.
    """

    def __init__(self, process: ArrivalProcess, deployment: DeploymentConfig) -> None:
        self.process = process
        self.deployment = deployment
        self.queries: list[Query] = []
        self.queue: deque[QueueItem] = deque()
        self.outstanding = 0
        self.batch_sizes: list[int] = []

    def enqueue(self, query: Query, now_ns: int) -> bool:
        """Put ``query`` in the queue at ``now_ns``; ``False`` (and the query dropped) when the queue is full."""
        query.issued_ns = now_ns
        self.queries.append(query)
        capacity = self.deployment.max_queue_size
        if capacity is not None and len(self.queue) >= capacity:
            query.status = DROPPED
            query.error = f"queue full ({capacity} requests)"
            return False
        self.queue.extend(split_query(query, self.deployment.max_batch_size, now_ns))
        self.outstanding += 1
        return True

    def take_batch(self, now_ns: int) -> tuple[list[QueueItem], int | None]:
        """The items a free worker runs now (marked started), or ``([], wake_ns)`` when it should wait."""
        decision = decide(self.queue, now_ns, self.deployment.max_batch_size, self.deployment.max_queue_delay_ns)
        if not decision.take:
            return [], decision.wake_ns
        items = [self.queue.popleft() for _ in range(decision.take)]
        samples = sum(item.samples for item in items)
        self.batch_sizes.append(samples)
        for item in items:
            query = item.query
            if query.start_ns < 0:
                query.start_ns = now_ns
            query.batch_samples = max(query.batch_samples, samples)
        return items, None

    def complete(self, items: list[QueueItem], end_ns: int, failure: tuple[str, str] | None = None) -> list[Query]:
        """Record a finished batch; return the follow-up queries closed-loop clients issue at ``end_ns``."""
        follow_ups = []
        for item in items:
            query = item.query
            query.parts_left -= 1
            if failure is not None and query.status == PENDING:
                query.status, query.error = failure
            if query.parts_left > 0:
                continue
            query.end_ns = end_ns
            if query.status == PENDING:
                query.status = OK
            self.outstanding -= 1
            if self.process.closed_loop:
                follow_up = self.process.next_after(query, end_ns)
                if follow_up is not None:
                    follow_ups.append(follow_up)
        return follow_ups

    def drop_unfinished(self, reason: str) -> int:
        """Mark every query still pending as dropped (the run ended); return how many."""
        dropped = 0
        for query in self.queries:
            if query.status == PENDING:
                query.status = DROPPED
                query.error = reason
                dropped += 1
        self.queue.clear()
        self.outstanding = 0
        return dropped
