"""A discrete-event run of the same deployment in virtual time: deterministic, and as fast as the calls.

The simulator drives the same arrival process, queue and batching rule (:class:`Ledger`) as the threaded
deployment, but keeps its own virtual time. Each batch's service time is measured by reading the injected
:class:`~mlperf_track.engine.clock.Clock` around the model call, so with a
:class:`~mlperf_track.engine.clock.FakeClock` that the callable advances, scheduling, batching and validity
are tested exactly, without threads or sleeps; and with a deterministic service time it is the reference
queue that the benchmark holds the real deployment against (same seed, same arrivals).
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from typing import cast

from mlperf_track.engine.clock import Clock, clock_name
from mlperf_track.engine.load.config import DeploymentConfig, LoadConfig
from mlperf_track.engine.load.ledger import InferenceFn, Ledger, LoadRun, failure_kind
from mlperf_track.engine.load.queries import Query, QueueItem, arrival_process

_ARRIVAL, _COMPLETE, _WAKE = 0, 1, 2


@dataclass(order=True)
class _Event:
    time_ns: int
    order: int
    kind: int = field(compare=False)
    payload: object = field(compare=False, default=None)


class _Simulation:
    def __init__(self, infer: InferenceFn, config: LoadConfig, deployment: DeploymentConfig, clock: Clock) -> None:
        self.infer = infer
        self.clock = clock
        self.ledger = Ledger(arrival_process(config), deployment)
        self.idle = deployment.workers
        self.events: list[_Event] = []
        self.counter = itertools.count()
        self.wakes: set[int] = set()
        self.deadline_ns = round((config.max_duration_s + config.drain_timeout_s) * 1e9)
        self.drain_ns = round(config.drain_timeout_s * 1e9)

    def push(self, time_ns: int, kind: int, payload: object = None) -> None:
        heapq.heappush(self.events, _Event(time_ns, next(self.counter), kind, payload))

    def service(self, samples: int) -> tuple[int, tuple[str, str] | None]:
        """Call the model once; its duration is what the clock says it took."""
        before = self.clock.now_ns()
        failure = None
        try:
            self.infer(samples)
        except Exception as error:  # counted per kind, never hidden: see LoadRun / the summary
            failure = (failure_kind(error), f"{type(error).__name__}: {error}")
        return max(0, self.clock.now_ns() - before), failure

    def dispatch(self, now_ns: int) -> None:
        while self.idle and self.ledger.queue:
            items, wake_ns = self.ledger.take_batch(now_ns)
            if not items:
                if wake_ns is not None and wake_ns not in self.wakes:
                    self.wakes.add(wake_ns)
                    self.push(wake_ns, _WAKE)
                return
            self.idle -= 1
            duration, failure = self.service(sum(item.samples for item in items))
            self.push(now_ns + duration, _COMPLETE, (items, failure))

    def handle(self, event: _Event) -> None:
        """Apply one event to the queue (dispatching waits until every event of the instant is applied)."""
        now = event.time_ns
        if event.kind == _ARRIVAL:
            assert isinstance(event.payload, Query)
            self.ledger.enqueue(event.payload, now)
        elif event.kind == _COMPLETE:
            batch, failure = cast(tuple[list[QueueItem], tuple[str, str] | None], event.payload)
            self.idle += 1
            for follow_up in self.ledger.complete(batch, now, failure):
                self.push(follow_up.arrival_ns, _ARRIVAL, follow_up)
        else:
            self.wakes.discard(now)

    def run(self) -> LoadRun:
        first = self.ledger.process.initial()
        for query in first:
            self.push(query.arrival_ns, _ARRIVAL, query)
        if first and not self.ledger.process.closed_loop:  # as the threads do: the drain counts from the last issue
            self.deadline_ns = min(self.deadline_ns, max(q.arrival_ns for q in first) + self.drain_ns)
        deadline_hit = False
        while self.events:
            now = self.events[0].time_ns
            if now > self.deadline_ns:
                deadline_hit = self.ledger.outstanding > 0
                break
            while self.events and self.events[0].time_ns == now:  # everything at this instant, then dispatch
                self.handle(heapq.heappop(self.events))
            self.dispatch(now)
        notes = {"clock": clock_name(self.clock)}
        if deadline_hit:
            dropped = self.ledger.drop_unfinished("not served before the run's time cap")
            notes["dropped"] = f"{dropped} queries were still outstanding at the time cap"
        return LoadRun(self.ledger.queries, "simulated", self.ledger.batch_sizes, deadline_hit, notes)


def simulate(infer: InferenceFn, config: LoadConfig, deployment: DeploymentConfig, clock: Clock) -> LoadRun:
    """Run ``config``'s scenario against ``deployment`` in virtual time.

    Args:
        infer: Runs a batch of ``n`` samples; its duration is read from ``clock`` around the call (a fake
            model advances a :class:`~mlperf_track.engine.clock.FakeClock`).
        config: The scenario and its run length.
        deployment: Workers, batching and queue capacity.
        clock: The clock the service times are read from.

    Returns:
        The recorded queries (summarise them with :func:`~mlperf_track.engine.load.summary.summarize`).
    """
    return _Simulation(infer, config, deployment, clock).run()
