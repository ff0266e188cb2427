"""What a load run asks for: the scenario (:class:`LoadConfig`) and the deployment it meets (:class:`DeploymentConfig`).

Scenarios follow MLPerf LoadGen and Triton's perf_analyzer:

=================  ===============================================================  ==============
scenario           queries                                                          judged on
=================  ===============================================================  ==============
``single_stream``  one client, one sample per query, the next issued on completion  p90 latency
``multi_stream``   one client, ``samples_per_query`` samples per query, closed loop  p99 latency
``server``         Poisson arrivals at ``target_qps`` (seeded), open loop            p99 <= bound
``offline``        every sample at once; the deployment batches them                samples/s
``concurrency``    ``concurrency`` closed-loop clients (perf_analyzer)               p99 latency
=================  ===============================================================  ==============

Run length follows LoadGen: a run issues queries until both ``min_duration_s`` and ``min_query_count`` are
met (Server and Offline pre-generate that many), never more than ``max_queries`` or ``max_duration_s``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Final

from mlperf_track.errors import ConfigError
from mlperf_track.spec import check_choice, check_positive_float, check_positive_int

SINGLE_STREAM: Final = "single_stream"
MULTI_STREAM: Final = "multi_stream"
SERVER: Final = "server"
OFFLINE: Final = "offline"
CONCURRENCY: Final = "concurrency"
#: Every scenario, in the order the CLI lists them.
SCENARIOS: Final = (SINGLE_STREAM, MULTI_STREAM, SERVER, OFFLINE, CONCURRENCY)
#: Scenarios whose next query waits for the previous one (per client).
CLOSED_LOOP: Final = frozenset({SINGLE_STREAM, MULTI_STREAM, CONCURRENCY})
#: The latency percentile each scenario is judged on (LoadGen: SingleStream p90, the others p99).
DEFAULT_PERCENTILE: Final = {SINGLE_STREAM: 0.90, MULTI_STREAM: 0.99, SERVER: 0.99, OFFLINE: 0.99, CONCURRENCY: 0.99}
#: LoadGen's early-stopping confidence.
EARLY_STOPPING_CONFIDENCE: Final = 0.99


def _check_fraction(parameter: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ConfigError(parameter, value, "a fraction in (0, 1)")
    return float(value)


def _check_optional_positive(parameter: str, value: object) -> float | None:
    return None if value is None else check_positive_float(parameter, value)


@dataclass(frozen=True)
class LoadConfig:
    """One load point: a scenario at a rate or concurrency, with LoadGen's validity rules.

    Attributes:
        scenario: One of :data:`SCENARIOS`.
        target_qps: Server: the Poisson arrival rate (queries/s, required). Offline: the expected samples/s,
            which sizes the run (``target_qps * min_duration_s`` samples) when given.
        latency_bound_ms: The bound the percentile must stay under (required for ``server``; optional for
            the closed-loop scenarios, where it makes the early-stopping estimate a pass/fail test).
        samples_per_query: Samples in one multi_stream query (LoadGen's default is 8).
        concurrency: Closed-loop clients of the ``concurrency`` scenario.
        min_duration_s: The run lasts at least this long (LoadGen: 600 s; short here for interactive use).
        min_query_count: At least this many queries (offline: samples, 1024 by default). Latency scenarios
            never issue fewer than early stopping needs to pass without a slow query (459 at p99 open loop,
            64 at p90 and 662 at p99 closed loop, with 99% confidence), whatever this says.
        max_queries: Never more queries than this (a bound on every request loop).
        max_duration_s: Never issue queries after this many seconds.
        drain_timeout_s: After the last query is issued, wait at most this long for the outstanding ones
            (those still pending are counted as dropped).
        percentile: The latency percentile the scenario is judged on; ``None``: :data:`DEFAULT_PERCENTILE`.
        confidence: Confidence of the early-stopping bound (LoadGen: 0.99).
        early_stopping: Apply LoadGen's early-stopping rule and its query floor (LoadGen's
            ``use_early_stopping``); off, validity rests on the minimums and the plain percentile alone.
        seed: Seed of the Poisson arrivals.
    """

    scenario: str = SINGLE_STREAM
    target_qps: float | None = None
    latency_bound_ms: float | None = None
    samples_per_query: int = 8
    concurrency: int = 1
    min_duration_s: float = 10.0
    min_query_count: int | None = None
    max_queries: int = 1_000_000
    max_duration_s: float = 600.0
    drain_timeout_s: float = 60.0
    percentile: float | None = None
    confidence: float = EARLY_STOPPING_CONFIDENCE
    early_stopping: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice("scenario", self.scenario, SCENARIOS)
        _check_optional_positive("target_qps", self.target_qps)
        _check_optional_positive("latency_bound_ms", self.latency_bound_ms)
        if self.scenario == SERVER and self.target_qps is None:
            raise ConfigError("target_qps", None, "a positive number of queries per second (the server scenario)")
        if self.scenario == SERVER and self.latency_bound_ms is None:
            raise ConfigError("latency_bound_ms", None, "a positive number of milliseconds (the server scenario)")
        check_positive_int("samples_per_query", self.samples_per_query)
        check_positive_int("concurrency", self.concurrency)
        if isinstance(self.min_duration_s, bool) or not isinstance(self.min_duration_s, (int, float)):
            raise ConfigError("min_duration_s", self.min_duration_s, "a number >= 0")
        if self.min_duration_s < 0 or not math.isfinite(self.min_duration_s):
            raise ConfigError("min_duration_s", self.min_duration_s, "a number >= 0")
        if self.min_query_count is not None:
            check_positive_int("min_query_count", self.min_query_count)
        check_positive_int("max_queries", self.max_queries)
        check_positive_float("max_duration_s", self.max_duration_s)
        check_positive_float("drain_timeout_s", self.drain_timeout_s)
        if self.max_duration_s < self.min_duration_s:
            raise ConfigError(
                "max_duration_s", self.max_duration_s, f"a number >= min_duration_s ({self.min_duration_s})"
            )
        if self.percentile is not None:
            _check_fraction("percentile", self.percentile)
        _check_fraction("confidence", self.confidence)
        if not isinstance(self.early_stopping, bool):
            raise ConfigError("early_stopping", self.early_stopping, "true or false")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError("seed", self.seed, "an integer >= 0")

    @property
    def target_percentile(self) -> float:
        """The percentile this scenario is judged on."""
        return self.percentile if self.percentile is not None else DEFAULT_PERCENTILE[self.scenario]

    @property
    def label(self) -> str:
        """A short name for the point (``server@20qps``, ``concurrency-c4``, ``multi_stream-n8``)."""
        if self.scenario == SERVER and self.target_qps is not None:
            return f"server@{self.target_qps:.4g}qps"
        if self.scenario == CONCURRENCY:
            return f"concurrency-c{self.concurrency}"
        if self.scenario == MULTI_STREAM:
            return f"multi_stream-n{self.samples_per_query}"
        return self.scenario

    @property
    def closed_loop(self) -> bool:
        """Whether each client issues its next query only when the previous one completes."""
        return self.scenario in CLOSED_LOOP

    @property
    def clients(self) -> int:
        """Closed-loop clients (1 for single_stream and multi_stream)."""
        return self.concurrency if self.scenario == CONCURRENCY else 1

    @property
    def samples_each(self) -> int:
        """Samples per query."""
        return self.samples_per_query if self.scenario == MULTI_STREAM else 1

    def resolved_min_queries(self) -> int:
        """The queries a run issues at least: ``min_query_count``, and never fewer than early stopping needs.

        Offline: ``min_query_count`` samples (1024 by default). The latency scenarios: the larger of
        ``min_query_count`` and the fewest queries with which a run without slow queries can pass early stopping
        (a shorter run could never be VALID, so a ``max_qps`` search would learn nothing from it).
        """
        if self.scenario == OFFLINE:
            return self.min_query_count or 1024
        if not self.early_stopping:
            return self.min_query_count or 1
        from mlperf_track.engine.load.validity import min_queries_for_early_stopping

        slow_allowed = 0 if self.scenario == SERVER else 1
        floor = min_queries_for_early_stopping(self.target_percentile, self.confidence, slow_allowed)
        return max(self.min_query_count or 0, floor)

    def params(self) -> dict[str, str]:
        """The settings as MLflow params (``load.`` prefix), all strings; unset values are left out."""
        return {f"load.{key}": str(value) for key, value in asdict(self).items() if value is not None}


@dataclass(frozen=True)
class DeploymentConfig:
    """The server-side model of a deployment: a FIFO queue, workers and Triton-style dynamic batching.

    A worker takes the oldest queued requests, up to ``max_batch_size`` samples. It runs them at once when the
    batch is full, when ``max_queue_delay_ms`` has passed since the oldest of them was queued, or at once when
    the delay is 0 (then it batches whatever is waiting). ``max_batch_size=1`` is no batching.

    Attributes:
        workers: Model instances serving the queue in parallel (threads; a model call must release the GIL,
            as PyTorch operators and HTTP requests do, for workers to overlap).
        max_batch_size: The most samples one model call takes.
        max_queue_delay_ms: How long a worker may hold a partial batch waiting for more requests.
        max_queue_size: Requests the queue holds before it refuses new ones (counted as dropped); ``None``:
            unbounded.
    """

    workers: int = 1
    max_batch_size: int = 1
    max_queue_delay_ms: float = 0.0
    max_queue_size: int | None = None

    def __post_init__(self) -> None:
        check_positive_int("workers", self.workers)
        check_positive_int("max_batch_size", self.max_batch_size)
        delay = self.max_queue_delay_ms
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay < 0 or not math.isfinite(delay):
            raise ConfigError("max_queue_delay_ms", delay, "a number of milliseconds >= 0")
        if self.max_queue_size is not None:
            check_positive_int("max_queue_size", self.max_queue_size)

    @property
    def batching(self) -> bool:
        """Whether requests can be batched together."""
        return self.max_batch_size > 1

    @property
    def max_queue_delay_ns(self) -> int:
        """:attr:`max_queue_delay_ms` in nanoseconds."""
        return round(self.max_queue_delay_ms * 1e6)

    def params(self) -> dict[str, str]:
        """The deployment as MLflow params (``deploy.`` prefix)."""
        return {f"deploy.{key}": "unbounded" if value is None else str(value) for key, value in asdict(self).items()}
