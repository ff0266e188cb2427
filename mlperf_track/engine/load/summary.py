"""Turn a run's records into a :class:`LoadResult`: latency split into queueing and compute, rates, verdict.

Per completed query: ``latency = end - arrival``, ``queue = start - arrival``, ``compute = end - start``.
Percentiles are LoadGen's nearest rank. Rates: ``offered`` is the issue rate over the issue window
(LoadGen's scheduled QPS for Server), ``achieved`` the completed queries over the window from the first
arrival to the last completion.
"""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np

from mlperf_track import metrics as m
from mlperf_track.engine.load.config import OFFLINE, SERVER, DeploymentConfig, LoadConfig
from mlperf_track.engine.load.ledger import LoadRun
from mlperf_track.engine.load.queries import DROPPED, OK, Query
from mlperf_track.engine.load.result import LoadResult
from mlperf_track.engine.load.validity import judge, nearest_rank

logger = logging.getLogger(__name__)

#: Failure kinds with their own metric; every failure also counts in ``load/errors``.
_KIND_METRICS = {"timeout": m.LOAD_TIMEOUTS, "connection": m.LOAD_CONNECTION_ERRORS, "http": m.LOAD_HTTP_ERRORS}
#: Issue lag above this share of the latency bound (or 1 ms without one) says the generator fell behind.
_LAG_WARNING_SHARE = 0.05


def _ms(values: list[int]) -> np.ndarray:
    return np.sort(np.asarray(values, dtype=np.float64) / 1e6)


def _split_metrics(done: list[Query]) -> dict[str, float]:
    latency = _ms([q.end_ns - q.arrival_ns for q in done])
    queue = _ms([q.start_ns - q.arrival_ns for q in done])
    compute = _ms([q.end_ns - q.start_ns for q in done])
    return {
        m.LOAD_LATENCY_P50: nearest_rank(latency, 0.50),
        m.LOAD_LATENCY_P90: nearest_rank(latency, 0.90),
        m.LOAD_LATENCY_P99: nearest_rank(latency, 0.99),
        m.LOAD_LATENCY_MEAN: float(latency.mean()),
        m.LOAD_LATENCY_MAX: float(latency[-1]),
        m.LOAD_QUEUE_P50: nearest_rank(queue, 0.50),
        m.LOAD_QUEUE_P99: nearest_rank(queue, 0.99),
        m.LOAD_QUEUE_MEAN: float(queue.mean()),
        m.LOAD_COMPUTE_P50: nearest_rank(compute, 0.50),
        m.LOAD_COMPUTE_P99: nearest_rank(compute, 0.99),
        m.LOAD_COMPUTE_MEAN: float(compute.mean()),
    }


def _rate_metrics(
    config: LoadConfig, run: LoadRun, done: list[Query], notes: dict[str, str]
) -> tuple[dict[str, float], float]:
    queries = run.queries
    first = min(q.arrival_ns for q in queries)
    window_s = (max(q.end_ns for q in done) - first) / 1e9 if done else 0.0
    metrics: dict[str, float] = {m.LOAD_DURATION: window_s}
    if window_s > 0:
        metrics[m.LOAD_ACHIEVED_QPS] = len(done) / window_s
        metrics[m.LOAD_SAMPLES_PER_S] = sum(q.samples for q in done) / window_s
    else:
        notes[m.LOAD_ACHIEVED_QPS] = "no query completed after a measurable time"
    if config.scenario == OFFLINE:
        notes[m.LOAD_OFFERED_QPS] = "offline issues every sample at once; there is no offered rate"
        return metrics, window_s
    arrivals = sorted(q.arrival_ns for q in queries)
    if config.scenario == SERVER and len(arrivals) > 1 and arrivals[-1] > arrivals[0]:
        metrics[m.LOAD_OFFERED_QPS] = (len(arrivals) - 1) / ((arrivals[-1] - arrivals[0]) / 1e9)
    elif config.scenario != SERVER and window_s > 0:
        metrics[m.LOAD_OFFERED_QPS] = len(queries) / window_s
    else:
        notes[m.LOAD_OFFERED_QPS] = "fewer than two arrivals: no rate"
    lags = _ms([q.issued_ns - q.arrival_ns for q in queries if q.issued_ns >= 0])
    if lags.size:
        metrics[m.LOAD_ISSUE_LAG_P99] = nearest_rank(lags, 0.99)
    return metrics, window_s


def _count_metrics(run: LoadRun) -> tuple[dict[str, float], int]:
    statuses = Counter(q.status for q in run.queries)
    failures = {kind: count for kind, count in statuses.items() if kind not in (OK, DROPPED)}
    metrics = {
        m.LOAD_ISSUED: float(len(run.queries)),
        m.LOAD_COMPLETED: float(statuses.get(OK, 0)),
        m.LOAD_DROPPED: float(statuses.get(DROPPED, 0)),
        m.LOAD_ERRORS: float(sum(failures.values())),
    }
    for kind, key in _KIND_METRICS.items():
        metrics[key] = float(failures.get(kind, 0))
    if run.batch_sizes:
        metrics[m.LOAD_BATCH_SIZE_MEAN] = float(np.mean(run.batch_sizes))
    return metrics, sum(failures.values()) + statuses.get(DROPPED, 0)


def _warnings(config: LoadConfig, metrics: dict[str, float]) -> list[str]:
    found = []
    lag = metrics.get(m.LOAD_ISSUE_LAG_P99)
    limit = _LAG_WARNING_SHARE * config.latency_bound_ms if config.latency_bound_ms else 1.0
    if config.scenario == SERVER and lag is not None and lag > limit:
        found.append(
            f"the generator issued queries late (p99 lag {lag:.3g} ms > {limit:.3g} ms): it may be the bottleneck "
            "it measures; the lag is charged to latency, as in LoadGen"
        )
    offered, achieved = metrics.get(m.LOAD_OFFERED_QPS), metrics.get(m.LOAD_ACHIEVED_QPS)
    if config.scenario == SERVER and offered and achieved and achieved < 0.9 * offered:
        found.append(f"the deployment did not keep up: {achieved:.4g} of {offered:.4g} queries/s completed")
    return found


def _first_errors(queries: list[Query], limit: int = 3) -> dict[str, str]:
    seen: dict[str, str] = {}
    for query in queries:
        if query.status not in (OK, DROPPED) and query.status not in seen and len(seen) < limit:
            seen[query.status] = query.error
    return {f"load.first_error.{kind}": message[:500] for kind, message in seen.items()}


def summarize(run: LoadRun, config: LoadConfig, deployment: DeploymentConfig) -> LoadResult:
    """The metrics, verdict and per-query table of ``run``."""
    done = [q for q in run.queries if q.status == OK]
    notes = dict(run.notes)
    counts, failed = _count_metrics(run)
    metrics: dict[str, float] = dict(counts)
    if run.queries:
        rates, window_s = _rate_metrics(config, run, done, notes)
        metrics.update(rates)
    else:
        window_s = 0.0
        notes[m.LOAD_ACHIEVED_QPS] = "no query was issued"
    if done:
        metrics.update(_split_metrics(done))
    else:
        notes[m.LOAD_LATENCY_P99] = "no query completed"
    latencies = np.asarray([(q.end_ns - q.arrival_ns) / 1e6 for q in done], dtype=np.float64)
    if config.scenario in (SERVER, OFFLINE):
        last_issue_ns = max((q.arrival_ns for q in run.queries), default=0)
    else:
        last_issue_ns = max((q.issued_ns for q in run.queries), default=0)
    verdict = judge(
        config,
        latencies_ms=latencies,
        issued=len(run.queries),
        last_issue_s=last_issue_ns / 1e9,
        duration_s=window_s,
        failed=failed,
    )
    if verdict.early_stopping_ms is not None:
        metrics[m.LOAD_EARLY_STOPPING_LATENCY] = verdict.early_stopping_ms
    if verdict.over_bound is not None:
        metrics[m.LOAD_OVER_BOUND] = float(verdict.over_bound)
    warnings = _warnings(config, metrics)
    for warning in warnings:
        logger.warning("%s", warning)
    rows = tuple(
        (
            q.index,
            q.client,
            q.samples,
            q.arrival_ns / 1e6,
            q.issued_ns / 1e6 if q.issued_ns >= 0 else -1.0,
            q.start_ns / 1e6 if q.start_ns >= 0 else -1.0,
            q.end_ns / 1e6 if q.end_ns >= 0 else -1.0,
            q.status,
            q.batch_samples,
        )
        for q in run.queries
    )
    tags = {
        "load.scenario": config.scenario,
        "load.executor": run.executor,
        "load.clock": run.notes.get("clock", ""),
        "load.verdict": "VALID" if verdict.valid else "INVALID",
        "load.percentile": f"{config.target_percentile:g}",
        "load.early_stopping": "on" if config.early_stopping else "off",
        **_first_errors(run.queries),
    }
    notes.pop("clock", None)
    return LoadResult(
        config=config,
        deployment=deployment,
        metrics=metrics,
        queries=rows,
        tags=tags,
        notes=notes,
        warnings=tuple(warnings),
        invalid_reasons=verdict.reasons,
    )
