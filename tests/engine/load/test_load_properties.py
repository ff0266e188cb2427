"""Invariants of the load engine, for scenarios and deployments that hypothesis draws.

In virtual time (the simulator, a FakeClock the synthetic model advances) the invariants hold exactly; one
threaded property checks the same invariants, and the batcher's delay with a tolerance, on the real clock.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlperf_track import metrics as m
from mlperf_track.engine.clock import FakeClock
from mlperf_track.engine.load.batcher import decide
from mlperf_track.engine.load.config import OFFLINE, SCENARIOS, SERVER, DeploymentConfig, LoadConfig
from mlperf_track.engine.load.ledger import LoadRun
from mlperf_track.engine.load.queries import DROPPED, OK, PENDING, Query, QueueItem, poisson_schedule
from mlperf_track.engine.load.simulate import simulate
from mlperf_track.engine.load.summary import summarize
from mlperf_track.engine.load.synthetic import SyntheticModel
from mlperf_track.engine.load.threaded import run_threaded

#: Slack for float rounding of ns -> ms in the per-query table.
EPS_MS = 1e-6


@st.composite
def load_configs(draw: st.DrawFn, scenarios: tuple[str, ...] = SCENARIOS, max_queries: int = 300) -> LoadConfig:
    """Small runs of any scenario (early stopping off, so the run length is what was drawn)."""
    scenario = draw(st.sampled_from(scenarios))
    return LoadConfig(
        scenario,
        target_qps=draw(st.floats(5.0, 3000.0)) if scenario == SERVER else None,
        latency_bound_ms=1000.0 if scenario == SERVER else None,
        samples_per_query=draw(st.integers(1, 12)),
        concurrency=draw(st.integers(1, 4)),
        min_duration_s=draw(st.sampled_from([0.0, 0.05, 0.2])),
        min_query_count=draw(st.integers(1, max_queries)),
        max_queries=max_queries,
        early_stopping=False,
        seed=draw(st.integers(0, 2**16)),
    )


@st.composite
def deployments(draw: st.DrawFn, max_workers: int = 3) -> DeploymentConfig:
    """Workers, dynamic batching and a queue bound, any combination."""
    return DeploymentConfig(
        workers=draw(st.integers(1, max_workers)),
        max_batch_size=draw(st.integers(1, 8)),
        max_queue_delay_ms=draw(st.sampled_from([0.0, 0.5, 2.0, 5.0])),
        max_queue_size=draw(st.none() | st.integers(1, 20)),
    )


def _check_invariants(run: LoadRun, config: LoadConfig, deployment: DeploymentConfig, exact: bool) -> None:
    queries = run.queries
    # No query lost or duplicated: issue order is 0..n-1, each query once, each with a final status.
    assert [q.index for q in queries] == list(range(len(queries)))
    assert len({id(q) for q in queries}) == len(queries)
    assert all(q.status != PENDING for q in queries)
    if config.scenario == SERVER:
        assert [q.arrival_ns for q in queries] == poisson_schedule(config)  # exactly the schedule, in order
    served = [q for q in queries if q.start_ns >= 0]
    assert all(q.status != DROPPED or q.start_ns < 0 or run.deadline_hit for q in queries)
    # Every sample of every served query ran exactly once, in batches never above the limit.
    assert all(0 < size <= deployment.max_batch_size for size in run.batch_sizes)
    if not run.deadline_hit:
        assert sum(run.batch_sizes) == sum(q.samples for q in served)
    assert all(q.batch_samples <= deployment.max_batch_size for q in queries)
    # Time runs forward for every query: completion >= start >= issued >= arrival.
    for q in served:
        assert q.issued_ns >= q.arrival_ns
        assert q.start_ns >= q.issued_ns
        assert q.end_ns >= q.start_ns
    if exact and not config.closed_loop:
        assert all(q.issued_ns == q.arrival_ns for q in queries)  # virtual time issues on schedule
    # The summary: queue + compute == latency (per query and in the means), counts add up.
    result = summarize(run, config, deployment)
    statuses = Counter(q.status for q in queries)
    assert result.metrics[m.LOAD_ISSUED] == len(queries)
    assert result.metrics[m.LOAD_COMPLETED] == statuses[OK]
    assert result.metrics[m.LOAD_COMPLETED] + result.metrics[m.LOAD_DROPPED] + result.metrics[m.LOAD_ERRORS] == len(
        queries
    )
    rows = [row for row in result.queries if row[7] == OK]
    for row in rows:
        arrival, start, end = row[3], row[5], row[6]
        assert abs((start - arrival) + (end - start) - (end - arrival)) <= EPS_MS
    if rows:
        queue, compute, latency = (result.metrics[key] for key in (m.LOAD_QUEUE_MEAN, m.LOAD_COMPUTE_MEAN,
                                                                  m.LOAD_LATENCY_MEAN))  # fmt: skip
        assert abs(queue + compute - latency) <= 1e-6 * max(1.0, latency)
        assert result.metrics[m.LOAD_QUEUE_P99] <= result.metrics[m.LOAD_LATENCY_P99] + EPS_MS
        assert result.metrics[m.LOAD_COMPUTE_P99] <= result.metrics[m.LOAD_LATENCY_MAX] + EPS_MS
    # Open loop: the deployment never completes faster than queries were offered (n/(n-1): the rate's window
    # starts at the first arrival and the completions' at the same instant, ending at or after the last one).
    offered, achieved = result.metrics.get(m.LOAD_OFFERED_QPS), result.metrics.get(m.LOAD_ACHIEVED_QPS)
    if config.scenario == SERVER and offered is not None and achieved is not None:
        assert achieved <= offered * len(queries) / (len(queries) - 1) * (1 + 1e-9)


def _batcher_wait_ok(run: LoadRun, deployment: DeploymentConfig, tolerance_ns: int) -> None:
    """With one idle-most-of-the-time worker and an instant model, no query waits past the batcher's delay."""
    for q in run.queries:
        if q.start_ns >= 0:
            assert q.start_ns - q.issued_ns <= deployment.max_queue_delay_ns + tolerance_ns, q


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    config=load_configs(),
    deployment=deployments(),
    base_ms=st.floats(0.0, 5.0),
    per_sample_ms=st.floats(0.0, 1.0),
    fail_every=st.sampled_from([0, 0, 3, 7]),
)
def test_simulated_runs_keep_every_invariant(
    config: LoadConfig, deployment: DeploymentConfig, base_ms: float, per_sample_ms: float, fail_every: int
) -> None:
    clock = FakeClock()
    model = SyntheticModel(base_ms, per_sample_ms, clock=clock, fail_every=fail_every)
    run = simulate(model, config, deployment, clock)
    _check_invariants(run, config, deployment, exact=True)
    assert run.batch_sizes == model.batch_sizes  # what the ledger recorded is what the model was called with


@settings(max_examples=40, deadline=None)
@given(
    config=load_configs(scenarios=(SERVER, OFFLINE)),
    batch=st.integers(1, 8),
    delay_ms=st.sampled_from([0.0, 0.5, 2.0, 5.0]),
    workers=st.integers(1, 3),
)
def test_simulated_batcher_never_waits_past_the_delay_while_a_worker_is_free(
    config: LoadConfig, batch: int, delay_ms: float, workers: int
) -> None:
    deployment = DeploymentConfig(workers=workers, max_batch_size=batch, max_queue_delay_ms=delay_ms)
    clock = FakeClock()
    run = simulate(SyntheticModel(0.0, clock=clock), config, deployment, clock)  # instant: a worker is always free
    _check_invariants(run, config, deployment, exact=True)
    _batcher_wait_ok(run, deployment, tolerance_ns=0)


@st.composite
def queues(draw: st.DrawFn) -> tuple[list[QueueItem], int]:
    """A queue (oldest first, items at most the batch limit) and the batch limit."""
    limit = draw(st.integers(1, 16))
    times = sorted(draw(st.lists(st.integers(0, 10**7), max_size=30)))
    items = [QueueItem(Query(i, 0, 1, t), draw(st.integers(1, limit)), t) for i, t in enumerate(times)]
    return items, limit


@given(queue_and_limit=queues(), now=st.integers(0, 2 * 10**7), delay=st.integers(0, 10**7))
def test_the_batcher_takes_the_largest_fitting_prefix_and_never_waits_past_the_deadline(
    queue_and_limit: tuple[list[QueueItem], int], now: int, delay: int
) -> None:
    queue, limit = queue_and_limit
    decision = decide(queue, now, limit, delay)
    prefix = np.cumsum([item.samples for item in queue]) if queue else np.array([], dtype=int)
    fitting = int(np.count_nonzero(prefix <= limit))
    if decision.take:
        assert decision.take == fitting  # oldest first, whole items, never above the limit
        assert prefix[decision.take - 1] <= limit
    if not queue:
        assert decision.take == 0 and decision.wake_ns is None
    elif now >= queue[0].enqueued_ns + delay or delay == 0:
        assert decision.take > 0  # the deadline has come: never wait longer
    elif decision.take == 0:
        assert decision.wake_ns == queue[0].enqueued_ns + delay > now  # wake exactly at the deadline
        assert fitting == len(queue) and prefix[-1] < limit  # waiting only for a batch that is not full yet


#: Real threads on a shared machine: a woken thread may be scheduled this late.
THREAD_TOLERANCE_NS = 50_000_000


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    config=load_configs(max_queries=60),
    deployment=deployments(max_workers=2),
    base_ms=st.floats(0.0, 1.0),
)
def test_threaded_runs_keep_every_invariant(config: LoadConfig, deployment: DeploymentConfig, base_ms: float) -> None:
    model = SyntheticModel(base_ms)
    run = run_threaded(model, config, deployment)
    _check_invariants(run, config, deployment, exact=False)
    assert sorted(run.batch_sizes) == sorted(model.batch_sizes)


@settings(max_examples=5, deadline=None)
@given(batch=st.integers(2, 8), delay_ms=st.sampled_from([1.0, 5.0]), seed=st.integers(0, 1000))
def test_threaded_batcher_waits_at_most_the_delay(batch: int, delay_ms: float, seed: int) -> None:
    config = LoadConfig("server", target_qps=100.0, latency_bound_ms=1000.0, min_duration_s=0.0,
                        min_query_count=40, max_queries=40, early_stopping=False, seed=seed)  # fmt: skip
    deployment = DeploymentConfig(max_batch_size=batch, max_queue_delay_ms=delay_ms)
    run = run_threaded(SyntheticModel(0.0), config, deployment)
    _check_invariants(run, config, deployment, exact=False)
    _batcher_wait_ok(run, deployment, tolerance_ns=THREAD_TOLERANCE_NS)
    waits = np.asarray([q.start_ns - q.issued_ns for q in run.queries]) / 1e6
    assert np.median(waits) <= delay_ms + 5.0  # typical wait: the delay plus a wake-up, not a timer's multiple
