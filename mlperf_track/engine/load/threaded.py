"""The real deployment: a queue served by worker threads, fed on schedule by the calling thread.

The calling thread issues open-loop queries at their absolute scheduled times (sleeping in between, so it
leaves the CPU to the model, and no drift accumulates); closed-loop follow-ups are issued by the worker that
completed the previous query. Workers share one :class:`threading.Condition`; a worker that waits for a partial
batch to fill waits on it with the batcher's deadline as timeout, so a new arrival wakes it to re-decide. Both
threads lower their timer slack while the run lasts (:mod:`~mlperf_track.engine.load.timerslack`). Worker
threads overlap only where the model call releases the GIL (PyTorch operators, socket I/O do).

Every loop is bounded: nothing is issued after ``max_duration_s``, and outstanding queries get at most
``drain_timeout_s`` after the last issue before they are counted as dropped.
"""

from __future__ import annotations

import logging
import threading
import time

from mlperf_track.engine.clock import Clock, FakeClock, PerfCounterClock, clock_name
from mlperf_track.engine.load.config import DeploymentConfig, LoadConfig
from mlperf_track.engine.load.ledger import InferenceFn, Ledger, LoadRun, failure_kind
from mlperf_track.engine.load.queries import Query, QueueItem, arrival_process
from mlperf_track.engine.load.timerslack import precise_timers

logger = logging.getLogger(__name__)

#: How often an idle worker re-checks whether the run is over (it is also woken when it is).
_IDLE_POLL_S = 0.05


class ThreadedDeployment:
    """One run of a scenario against ``deployment.workers`` threads calling ``infer``.

    Args:
        infer: Runs a batch of ``n`` samples.
        config: The scenario and its run length.
        deployment: Workers, batching and queue capacity.
        clock: A clock that follows real time (``perf_counter`` by default); use
            :func:`~mlperf_track.engine.load.simulate.simulate` for a fake one.
    """

    def __init__(
        self, infer: InferenceFn, config: LoadConfig, deployment: DeploymentConfig, clock: Clock | None = None
    ) -> None:
        if isinstance(clock, FakeClock):
            raise ValueError("a FakeClock never advances while threads sleep: use simulate() for virtual time")
        self.infer = infer
        self.config = config
        self.clock = clock or PerfCounterClock()
        self.ledger = Ledger(arrival_process(config), deployment)
        self.cv = threading.Condition()
        self.done_issuing = False
        self.stopped = False
        self._origin_ns = 0

    def now(self) -> int:
        """Nanoseconds since the run started."""
        return self.clock.now_ns() - self._origin_ns

    # -- workers -----------------------------------------------------------------------------------------

    def _next_batch(self) -> list[QueueItem] | None:
        """Block until a batch is due (``None``: the run is over). Called with the lock held."""
        ledger = self.ledger
        while not self.stopped:
            if ledger.queue:
                now = self.now()
                items, wake_ns = ledger.take_batch(now)
                if items:
                    return items
                self.cv.wait(timeout=max(0.0, ((wake_ns or now) - now) / 1e9))
            elif self.done_issuing and ledger.outstanding == 0:
                return None
            else:
                self.cv.wait(timeout=_IDLE_POLL_S)
        return None

    def _worker(self) -> None:
        with precise_timers():  # the batching deadline's timed wait ends on time
            self._serve()

    def _serve(self) -> None:
        while True:
            with self.cv:
                items = self._next_batch()
            if items is None:
                return
            failure = None
            try:
                self.infer(sum(item.samples for item in items))
            except Exception as error:  # counted per kind in the summary, never hidden
                failure = (failure_kind(error), f"{type(error).__name__}: {error}")
            end = self.now()
            with self.cv:
                if self.stopped:
                    return
                for follow_up in self.ledger.complete(items, end, failure):
                    self.ledger.enqueue(follow_up, self.now())
                    self.cv.notify()
                if self.ledger.outstanding == 0:
                    self.cv.notify_all()

    # -- issuing -----------------------------------------------------------------------------------------

    def _issue_open_loop(self, schedule: list[Query]) -> None:
        with precise_timers():  # each sleep ends ~20 us after its scheduled time, not ~70 us
            self._issue_on_schedule(schedule)

    def _issue_on_schedule(self, schedule: list[Query]) -> None:
        """Issue each query at its absolute scheduled time (sleeping to it, so no drift accumulates)."""
        max_ns = round(self.config.max_duration_s * 1e9)
        for query in schedule:
            remaining = query.arrival_ns - self.now()
            while remaining > 0:
                time.sleep(remaining / 1e9)
                remaining = query.arrival_ns - self.now()
            now = self.now()
            if now > max_ns:
                logger.warning("stopped issuing at the time cap max_duration_s=%g", self.config.max_duration_s)
                break
            with self.cv:
                self.ledger.enqueue(query, now)
                self.cv.notify()

    def run(self) -> LoadRun:
        """Issue the scenario's queries, wait for them (bounded), and return the records."""
        process = self.ledger.process
        workers = [
            threading.Thread(target=self._worker, name=f"load-worker-{index}", daemon=True)
            for index in range(self.ledger.deployment.workers)
        ]
        first = process.initial()
        self._origin_ns = self.clock.now_ns()
        for worker in workers:
            worker.start()
        try:
            if process.closed_loop:
                with self.cv:
                    for query in first:
                        self.ledger.enqueue(query, self.now())
                    self.cv.notify_all()
            else:
                self._issue_open_loop(first)
            if not process.closed_loop:
                with self.cv:
                    self.done_issuing = True
                    self.cv.notify_all()
            drained = self._wait_for_outstanding()
        except BaseException:
            self._stop()
            raise
        notes = {"clock": clock_name(self.clock)}
        if not drained:
            with self.cv:
                dropped = self.ledger.drop_unfinished("not served before the run's time cap")
            notes["dropped"] = f"{dropped} queries were still outstanding at the time cap"
        self._stop()
        for worker in workers:
            worker.join(timeout=1.0)
        return LoadRun(self.ledger.queries, "threads", self.ledger.batch_sizes, not drained, notes)

    def _wait_for_outstanding(self) -> bool:
        """Wait until every issued query finished; ``False`` when the time cap came first."""
        config = self.config
        if self.ledger.process.closed_loop:
            deadline_ns = round((config.max_duration_s + config.drain_timeout_s) * 1e9)
        else:
            deadline_ns = self.now() + round(config.drain_timeout_s * 1e9)
        with self.cv:
            while self.ledger.outstanding > 0:
                remaining = deadline_ns - self.now()
                if remaining <= 0:
                    return False
                self.cv.wait(timeout=min(remaining / 1e9, _IDLE_POLL_S))
            self.done_issuing = True
            self.cv.notify_all()
        return True

    def _stop(self) -> None:
        with self.cv:
            self.stopped = True
            self.cv.notify_all()


def run_threaded(
    infer: InferenceFn, config: LoadConfig, deployment: DeploymentConfig, clock: Clock | None = None
) -> LoadRun:
    """Run ``config``'s scenario against a real threaded deployment of ``infer`` (see :class:`ThreadedDeployment`)."""
    return ThreadedDeployment(infer, config, deployment, clock).run()
