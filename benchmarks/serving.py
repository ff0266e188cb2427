"""Latency under load: the load generator against queueing theory, its own headroom, and resnet18's max_qps.

Three sections, each a table (``--markdown FILE`` appends them as a section for ``benchmarks/RESULTS.md``):

1. **Truth against theory.** A synthetic model with a deterministic service time S (a spin on the monotonic
   clock, not a sleep), one worker, Poisson arrivals at rho = 0.5 and 0.8: the measured mean queueing delay
   against M/D/1's ``W = rho * S / (2 * (1 - rho))`` with the nominal S, and against M/G/1 (Pollaczek-Khinchine)
   with the service time the worker really spent per query (target: within 5%); the measured mean and p99
   against a discrete-event simulation of the same queue with the same seed (the same arrivals), and against a
   replay of the measured service times, which separates the generator's own error from the spin's jitter and
   from the sampling error of a finite run. A second table splits the service and the queueing into their parts
   (spin overshoot, dispatch gap, issue lag, idle wake-up).
2. **Generator headroom.** Queries/s the generator sustains against a no-op model: in-process (Server at rising
   rates until it falls behind, and Offline), and over HTTP against a no-op HTTP server in another process.
3. **resnet18 at 64 px on the CPU.** ``max_qps`` under a 50 ms p99 bound, without batching (torch's default
   threads, and one intra-op thread) and with dynamic batching.

Usage::

    python benchmarks/serving.py                                  # the full run (about 25 min; quiet machine)
    python benchmarks/serving.py --quick                          # smoke run at small sizes (about 3 min)
    python benchmarks/serving.py --markdown benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.server
import logging
import multiprocessing
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

try:
    import mlperf_track  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`: use the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlperf_track import metrics as m
from mlperf_track.engine.clock import FakeClock
from mlperf_track.engine.environment import environment_tags
from mlperf_track.engine.load.config import DeploymentConfig, LoadConfig
from mlperf_track.engine.load.http import HttpInference
from mlperf_track.engine.load.resources import ResourceLimits
from mlperf_track.engine.load.result import LoadResult
from mlperf_track.engine.load.run import run_load
from mlperf_track.engine.load.search import SearchConfig
from mlperf_track.engine.load.synthetic import SyntheticModel, md1_mean_queue_delay, no_op
from mlperf_track.pipeline.load_sweep import LoadPlan, run_load_plan
from mlperf_track.pipeline.load_target import ModelTarget

logger = logging.getLogger("benchmarks.serving")


@dataclass
class Table:
    """A titled table with a note under it."""

    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    note: str = ""


def _f(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


# -- 1. truth against theory ------------------------------------------------------------------------------


@dataclass
class ServiceTrace:
    """What the worker really spent per query in a one-worker Server run (times in ms).

    Attributes:
        compute: Per query, in dispatch order: from the worker taking it to its completion.
        gap: Mean time from a completion to the next start when the next query was already waiting (the
            worker's own dispatch overhead: it belongs to the service time the queue sees).
        lag: Per query: issue lag (issued - scheduled arrival).
        idle_wake: Per query that found the worker idle: its start - its issue (the worker's wake-up).
    """

    compute: np.ndarray
    gap: float
    lag: np.ndarray
    idle_wake: np.ndarray

    @property
    def service(self) -> np.ndarray:
        """The per-query service time the queue sees: compute plus the mean dispatch gap."""
        return self.compute + self.gap


def service_trace(result: LoadResult) -> ServiceTrace:
    """Split a one-worker run's timeline into service, dispatch gap, issue lag and idle wake-up."""
    rows = sorted((row for row in result.queries if row[7] == "ok"), key=lambda row: row[5])
    arrival, issued, start, end = (np.asarray([row[i] for row in rows], dtype=np.float64) for i in (3, 4, 5, 6))
    previous_end = np.concatenate([[-np.inf], end[:-1]])
    waiting = issued <= previous_end  # queued while the worker was busy: started right after its completion
    gaps = (start - previous_end)[waiting]
    return ServiceTrace(
        compute=end - start,
        gap=float(gaps.mean()) if gaps.size else 0.0,
        lag=issued - arrival,
        idle_wake=(start - issued)[~waiting],
    )


def mg1_mean_queue_delay_ms(rate_qps: float, service_ms: np.ndarray) -> float:
    """Pollaczek-Khinchine: M/G/1's mean wait ``W = lambda E[S^2] / (2 (1 - lambda E[S]))`` (M/D/1 when S is fixed)."""
    rate_per_ms = rate_qps / 1e3
    rho = rate_per_ms * float(service_ms.mean())
    return rate_per_ms * float(np.mean(service_ms**2)) / (2.0 * (1.0 - rho))


class _Replay:
    """A virtual-time model whose i-th call takes the i-th measured service time (the same queue, replayed)."""

    def __init__(self, service_ms: np.ndarray, clock: FakeClock) -> None:
        self.service_ns = [round(value * 1e6) for value in service_ms]
        self.clock = clock
        self.calls = 0

    def __call__(self, samples: int) -> None:
        self.clock.advance_ns(self.service_ns[min(self.calls, len(self.service_ns) - 1)])
        self.calls += 1


def _within(ratio: float) -> str:
    return "pass" if abs(ratio - 1) <= 0.05 else "FAIL"


def theory(service_ms: float, queries: int, seed: int) -> list[Table]:
    """Measured queueing against M/D/1 (nominal S), M/G/1 (the measured service) and same-seed simulations."""
    table = Table(
        f"Truth against theory: S = {service_ms:g} ms spin, one worker, {queries} Poisson arrivals, seed {seed}",
        ["rho", "M/D/1 W ms", "sim W ms", "measured W ms", "measured/M/D/1", "measured/sim", "M/G/1 W ms (measured S)",
         "measured/M/G/1", "replay W ms", "measured/replay", "sim p99 ms", "measured p99 ms", "p99 measured/sim",
         "W vs M/D/1", "W vs M/G/1"],
    )  # fmt: skip
    parts = Table(
        "Where the measured service and queueing come from (same runs)",
        ["rho", "offered q/s", "S ms", "compute mean ms", "spin overshoot p50/p99 us", "dispatch gap us",
         "issue lag mean/p99 ms", "idle wake-up mean/p99 ms", "idle arrivals"],
    )  # fmt: skip
    for rho in (0.5, 0.8):
        rate = rho / (service_ms / 1e3)
        config = LoadConfig("server", target_qps=rate, latency_bound_ms=1e6, min_duration_s=0.0,
                            min_query_count=queries, max_queries=queries, early_stopping=False, seed=seed)  # fmt: skip
        clock = FakeClock()
        simulated = run_load(SyntheticModel(service_ms, clock=clock), config, clock=clock, simulated=True,
                             warmup_calls=0)  # fmt: skip
        measured = run_load(SyntheticModel(service_ms), config)
        trace = service_trace(measured)
        offered = measured.metrics[m.LOAD_OFFERED_QPS]  # the schedule's own rate (the sim runs the same one)
        replay_clock = FakeClock()
        replayed = run_load(_Replay(trace.service, replay_clock), config, clock=replay_clock, simulated=True,
                            warmup_calls=0)  # fmt: skip
        w_theory = md1_mean_queue_delay(rate, service_ms / 1e3) * 1e3
        w_mg1 = mg1_mean_queue_delay_ms(offered, trace.service)
        w_sim, w_real = simulated.metrics[m.LOAD_QUEUE_MEAN], measured.metrics[m.LOAD_QUEUE_MEAN]
        w_replay = replayed.metrics[m.LOAD_QUEUE_MEAN]
        p99_sim, p99_real = simulated.metrics[m.LOAD_LATENCY_P99], measured.metrics[m.LOAD_LATENCY_P99]
        table.rows.append(
            [f"{rho:g}", _f(w_theory), _f(w_sim), _f(w_real), _f(w_real / w_theory), _f(w_real / w_sim), _f(w_mg1),
             _f(w_real / w_mg1), _f(w_replay), _f(w_real / w_replay), _f(p99_sim), _f(p99_real),
             _f(p99_real / p99_sim), _within(w_real / w_theory), _within(w_real / w_mg1)]
        )  # fmt: skip
        overshoot = (trace.compute - service_ms) * 1e3
        parts.rows.append(
            [f"{rho:g}", _f(offered, ".2f"), f"{service_ms:g}", _f(float(trace.compute.mean())),
             f"{_f(float(np.percentile(overshoot, 50)), '.1f')}/{_f(float(np.percentile(overshoot, 99)), '.1f')}",
             _f(trace.gap * 1e3, ".1f"), f"{_f(float(trace.lag.mean()))}/{_f(float(np.percentile(trace.lag, 99)))}",
             f"{_f(float(trace.idle_wake.mean()))}/{_f(float(np.percentile(trace.idle_wake, 99)))}"
             if trace.idle_wake.size else "-", str(trace.idle_wake.size)]
        )  # fmt: skip
    table.note = (
        "M/D/1 uses the nominal S at the target rate; M/G/1 (Pollaczek-Khinchine) uses the service the worker really "
        "spent per query (compute + dispatch gap, jitter included) at the schedule's own rate. sim = discrete-event "
        "run of the same queue and batching code on the same arrivals with the nominal S (virtual time); replay = the "
        "same with the measured service times in order: measured/replay is what the generator and the worker's "
        "wake-ups add (issue lag, idle wake-up), sim/M-D-1 the sampling error of a finite run."
    )
    parts.note = (
        "spin overshoot: compute - S per query; dispatch gap: completion to the next start when it was waiting; idle "
        "wake-up: issue to start for a query that found the worker idle (both charged to queueing)."
    )
    return [table, parts]


# -- 2. generator headroom -------------------------------------------------------------------------------


def in_process_headroom(rates: list[float], duration_s: float) -> Table:
    """Server against a no-op model at rising rates, and Offline with every query at once."""
    table = Table(
        "Generator headroom in-process (no-op model, 1 worker)",
        ["scenario", "offered q/s", "achieved q/s", "issue lag p99 ms", "latency p99 ms", "keeps up"],
    )
    for rate in rates:
        config = LoadConfig("server", target_qps=rate, latency_bound_ms=1e6, min_duration_s=duration_s,
                            early_stopping=False)  # fmt: skip
        result = run_load(no_op, config, warmup_calls=0)
        offered, achieved = result.metrics.get(m.LOAD_OFFERED_QPS), result.metrics.get(m.LOAD_ACHIEVED_QPS)
        lag = result.metrics.get(m.LOAD_ISSUE_LAG_P99)
        keeps_up = offered is not None and achieved is not None and achieved >= 0.95 * offered and (lag or 0) < 1.0
        p99 = result.metrics.get(m.LOAD_LATENCY_P99)
        row = [
            f"server@{rate:g}",
            _f(offered, ".0f"),
            _f(achieved, ".0f"),
            _f(lag),
            _f(p99),
            "yes" if keeps_up else "no",
        ]
        table.rows.append(row)
    offline = run_load(no_op, LoadConfig("offline", min_duration_s=0.0, min_query_count=int(rates[-1] * duration_s)),
                       warmup_calls=0)  # fmt: skip
    table.rows.append(["offline", "-", _f(offline.metrics.get(m.LOAD_ACHIEVED_QPS), ".0f"), "-", "-", "-"])
    table.note = "keeps up: achieved >= 95% of offered and issue lag p99 < 1 ms."
    return table


class _NoOpHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: without this each answer waits 40 ms

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b'{"predictions": []}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def _serve_no_op(port_out: Any) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NoOpHandler)
    port_out.send(server.server_address[1])
    server.serve_forever()


def http_headroom(concurrencies: list[int], duration_s: float) -> Table:
    """Closed-loop clients against a no-op HTTP server running in another process."""
    table = Table(
        "Generator headroom over HTTP (no-op stdlib server in its own process, keep-alive)",
        ["clients = workers", "achieved q/s", "latency p50 ms", "latency p99 ms", "errors"],
    )
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_serve_no_op, args=(sender,), daemon=True)
    process.start()
    try:
        url = f"http://127.0.0.1:{receiver.recv()}"
        for clients in concurrencies:
            config = LoadConfig("concurrency", concurrency=clients, min_duration_s=duration_s, early_stopping=False)
            result = run_load(HttpInference(url, [[0.0]]), config, DeploymentConfig(workers=clients))
            table.rows.append(
                [str(clients), _f(result.metrics.get(m.LOAD_ACHIEVED_QPS), ".0f"),
                 _f(result.metrics.get(m.LOAD_LATENCY_P50)), _f(result.metrics.get(m.LOAD_LATENCY_P99)),
                 _f(result.metrics.get(m.LOAD_ERRORS), ".0f")]
            )  # fmt: skip
    finally:
        process.terminate()
        process.join(timeout=5)
    table.note = "The server shares the machine's cores with the generator: its own cost bounds these numbers."
    return table


# -- 3. resnet18 max_qps ---------------------------------------------------------------------------------


def resnet_max_qps(
    image_size: int, bound_ms: float, *, batch: int, delay_ms: float, duration_s: float, tolerance: float
) -> Table:
    """``max_qps`` of resnet18 on the CPU under a p99 bound, without and with dynamic batching."""
    table = Table(
        f"resnet18 at {image_size} px on the CPU: max_qps under a {bound_ms:g} ms p99 bound (VALID by LoadGen rules)",
        ["deployment", "max_qps (scheduled)", "target rate", "bracket", "floor q/s", "p99 ms at max", "queue p99",
         "compute p99", "mean batch", "probes"],
    )  # fmt: skip
    target = ModelTarget("resnet18", image_size=image_size)
    config = LoadConfig("server", target_qps=1.0, latency_bound_ms=bound_ms, min_duration_s=duration_s,
                        max_duration_s=max(duration_s, 60.0))  # fmt: skip
    for label, deployment, limits in (
        ("no batching (1 worker)", DeploymentConfig(), ResourceLimits()),
        ("no batching, 1 intra-op thread", DeploymentConfig(), ResourceLimits(num_threads=1)),
        (f"dynamic batching (max {batch}, {delay_ms:g} ms delay)",
         DeploymentConfig(max_batch_size=batch, max_queue_delay_ms=delay_ms), ResourceLimits()),
    ):  # fmt: skip
        plan = LoadPlan(target, config, deployment, limits=limits, search=SearchConfig(tolerance=tolerance))
        search = run_load_plan(plan).search
        assert search is not None
        best = search.best.result if search.best is not None else None
        values = best.metrics if best is not None else {}
        table.rows.append(
            [label, _f(search.max_scheduled_qps, ".1f"), _f(search.max_qps, ".1f"),
             f"{_f(search.max_qps, '.1f')}..{_f(search.lowest_failing, '.1f')}", _f(search.floor_qps, ".2f"),
             _f(values.get(m.LOAD_LATENCY_P99)), _f(values.get(m.LOAD_QUEUE_P99)), _f(values.get(m.LOAD_COMPUTE_P99)),
             _f(values.get(m.LOAD_BATCH_SIZE_MEAN), ".2f"), f"{len(search.probes)} ({search.stop_reason})"]
        )  # fmt: skip
    table.note = (
        "Each probe is a Server run: VALID needs the p99 under the bound and LoadGen's early stopping (at 459 queries, "
        "none over the bound). floor: the lowest rate whose run issues those 459 queries within max_duration_s "
        "(60 s); the search never probes under it."
    )
    return table


# -- output ----------------------------------------------------------------------------------------------


def render(tables: list[Table]) -> None:
    """Print the tables."""
    from rich.console import Console
    from rich.table import Table as RichTable

    console = Console(width=None if sys.stdout.isatty() else 200)
    for table in tables:
        rich_table = RichTable(title=table.title)
        for header in table.headers:
            rich_table.add_column(header)
        for row in table.rows:
            rich_table.add_row(*row)
        console.print(rich_table)
        if table.note:
            console.print(table.note)


def markdown(tables: list[Table], command: str) -> str:
    """The section for ``benchmarks/RESULTS.md``."""
    tags = environment_tags()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"\n## Latency under load, {stamp}\n",
        f"- machine: CPU {tags.get('hw.cpu', '?')} ({tags.get('hw.cpu_cores', '?')} logical cores), "
        f"GPU {tags.get('hw.gpu', 'none')}",
        f"- software: torch {tags.get('sw.torch', '?')}, Python {tags.get('sw.python', '?')}",
        f"- command: `{command}`\n",
    ]
    for table in tables:
        lines += [f"### {table.title}\n", "| " + " | ".join(table.headers) + " |",
                  "|" + "---|" * len(table.headers)]  # fmt: skip
        lines += ["| " + " | ".join(row) + " |" for row in table.rows]
        lines += ["", table.note, ""] if table.note else [""]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the three sections, print, optionally append Markdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--service-ms", type=float, default=10.0, help="M/D/1 service time")
    parser.add_argument("--queries", type=int, default=None, help="M/D/1 arrivals per rho (default 20000; quick 600)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--bound-ms", type=float, default=50.0)
    parser.add_argument("--batch", type=int, default=8, help="dynamic batching: max batch size")
    parser.add_argument("--delay-ms", type=float, default=5.0, help="dynamic batching: max queue delay")
    parser.add_argument("--sections", default="theory,headroom,resnet", help="comma-separated sections to run")
    parser.add_argument("--markdown", type=Path, default=None, help="append the tables to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sections = {name.strip() for name in args.sections.split(",")}
    queries = args.queries or (600 if args.quick else 20_000)
    duration = 0.5 if args.quick else 5.0
    tables = []
    if "theory" in sections:
        tables.extend(theory(args.service_ms, queries, args.seed))
    if "headroom" in sections:
        rates = [1000.0, 5000.0] if args.quick else [1000.0, 2000.0, 5000.0, 10000.0, 20000.0, 50000.0]
        tables.append(in_process_headroom(rates, duration))
        tables.append(http_headroom([1, 4] if args.quick else [1, 2, 4, 8], duration))
    if "resnet" in sections:
        duration_s, tolerance = (1.0, 0.2) if args.quick else (10.0, 0.05)
        table = resnet_max_qps(args.image_size, args.bound_ms, batch=args.batch, delay_ms=args.delay_ms,
                               duration_s=duration_s, tolerance=tolerance)  # fmt: skip
        tables.append(table)
    render(tables)
    if args.markdown is not None:
        command = "python benchmarks/serving.py " + shlex.join(argv if argv is not None else sys.argv[1:])
        with args.markdown.open("a", encoding="utf-8") as handle:
            handle.write(markdown(tables, command.strip()))
        logger.warning("appended the tables to %s", args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
