"""``mlperf-track load``: latency under load (MLPerf scenarios) in-process or over HTTP, logged to MLflow.

Examples::

    mlperf-track load --model resnet18 --image-size 64 --scenario server --latency-bound-ms 50
    mlperf-track load --model resnet18 --scenario server --rate 20,40,80 --latency-bound-ms 50 --max-batch-size 8
    mlperf-track load --serve models:/clf/1 --scenario concurrency --concurrency 4 --workers 4
    mlperf-track load --url http://127.0.0.1:5000 --payload rows.json --scenario single_stream
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from mlperf_track import metrics as m
from mlperf_track.cli.options import add_options
from mlperf_track.errors import ConfigError
from mlperf_track.pipeline.load_sweep import LoadListener, LoadPlan, LoadPoint, LoadSweepOutcome

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add the ``load`` subcommand."""
    parser = subparsers.add_parser(
        "load", help="latency under load: MLPerf scenarios, dynamic batching, max_qps", description=__doc__
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--model", help="a model to load and serve in this process (torchvision name, file, URI)")
    target.add_argument("--url", help="an HTTP scoring endpoint on this machine (MLflow /invocations)")
    target.add_argument("--serve", metavar="MODEL_URI", help="start `mlflow models serve` for this model and load it")
    model = parser.add_argument_group("in-process model")
    model.add_argument("--runtime", default="eager")
    model.add_argument("--precision", default="fp32")
    model.add_argument("--image-size", default="224")
    model.add_argument("--weights", default=None)
    model.add_argument("--channels-last", action="store_true")
    model.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="runtime option")
    http = parser.add_argument_group("HTTP")
    http.add_argument("--payload", default=None, help="JSON file: a list of rows, or an MLflow request body")
    http.add_argument("--request-timeout", default="30", help="seconds per request")
    http.add_argument("--port", default=None, help="port for --serve (default: a free one)")
    http.add_argument("--health-timeout", default="120", help="seconds to wait for --serve's server to answer")
    http.add_argument("--serve-workers", default="1", help="worker processes of --serve's server")
    shared = parser.add_argument_group("scenario, deployment, device and trust (shared with run and tune)")
    add_options(shared, "load")
    scenario = parser.add_argument_group("scenario")
    scenario.add_argument("--percentile", default=None, help="judged percentile (default: p90 single_stream, else p99)")
    scenario.add_argument("--samples-per-query", default="8", help="multi_stream samples per query")
    scenario.add_argument("--min-queries", default="auto", help="auto: the fewest early stopping can pass with")
    scenario.add_argument("--max-duration", default="600", help="never issue after this many seconds")
    scenario.add_argument("--max-queries", default="1000000")
    scenario.add_argument(
        "--no-early-stopping", action="store_true", help="judge the plain percentile (LoadGen use_early_stopping=false)"
    )
    scenario.add_argument("--tolerance", default="0.05", help="max_qps search: stop when the bracket is this tight")
    deploy = parser.add_argument_group("deployment")
    deploy.add_argument("--workers", dest="load_workers", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    deploy.add_argument("--max-queue-size", default=None, help="queued requests before new ones are dropped")
    limits = parser.add_argument_group("resources")
    limits.add_argument("--cpu-cores", default=None, help="comma-separated core numbers")
    limits.add_argument("--num-threads", default=None, help="PyTorch intra-op threads")
    limits.add_argument("--memory-limit-mb", default=None, help="enforced in a child process (cgroup v2 or rlimit)")
    limits.add_argument("--gpu-memory-fraction", default=None, help="fraction of the GPU's memory")
    limits.add_argument("--background-load", default=None, help="contention, e.g. cpu:2,memory:512")
    output = parser.add_argument_group("output")
    output.add_argument("--no-track", action="store_true", help="print only; log nothing to MLflow")
    output.add_argument("--experiment", default=None, help="MLflow experiment name")
    output.add_argument("--output", default=None, help="write every point's result as JSON to this file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the sweep; exit 0 when every point produced a result, 1 when some failed."""
    from mlperf_track.cli.common import writable_file
    from mlperf_track.cli.load_options import build_plan, http_rows, load_payload, serve_options
    from mlperf_track.pipeline.load_target import HttpTarget

    output = writable_file("--output", Path(args.output)) if args.output else None
    if args.serve:
        from mlperf_track.tracking.serve import ModelServer, input_rows

        require_serve_trust(args.serve, trusted(args))
        port, health_timeout, workers = serve_options(args)
        server = ModelServer(args.serve, port=port, workers=workers, health_timeout_s=health_timeout)
        rows, columns = load_payload(args.payload) if args.payload else input_rows(args.serve)
        plan = build_plan(args, HttpTarget(server.url, **http_rows(args, rows, columns)))  # all checked: now start
        with server:
            return _execute(args, plan, output, {"load.served_model": args.serve, "load.server": "mlflow models serve"})
    if args.url:
        if not args.payload:
            raise ConfigError("--payload", None, "a JSON file of sample rows (required with --url)")
        rows, columns = load_payload(args.payload)
        plan = build_plan(args, HttpTarget(args.url, **http_rows(args, rows, columns)))
        return _execute(args, plan, output, {})
    return _execute(args, build_plan(args, None), output, {})


def trusted(args: argparse.Namespace) -> bool:
    """``--trust-pickle`` as a boolean (one-line error for anything but true/false)."""
    from mlperf_track.cli import parsers as p

    return p.boolean("--trust-pickle", args.trust_pickle)


def require_serve_trust(model_uri: str, trust: bool) -> None:
    """Refuse ``--serve`` without ``--trust-pickle``: the server loads the model with its flavour's loader.

    ``mlflow models serve`` loads scikit-learn, pyfunc (``python_model``) and pickle-format PyTorch models by
    unpickling them, which runs code from the model's files; it runs as this user, so the choice is the user's.
    Telling the safe flavours apart would need the model downloaded and every flavour's loader known, so the
    flag is required for every served model (one line, exit 2).

    Raises:
        UnsafeFileError: ``trust`` is false.
    """
    from mlperf_track.errors import UnsafeFileError
    from mlperf_track.models.safety import TRUST_FLAG

    if not trust:
        raise UnsafeFileError(
            f"refusing to serve {model_uri}: `mlflow models serve` loads it with its flavour's loader, which "
            f"unpickles scikit-learn and pyfunc models and so can run code from the model's files; if you trust "
            f"whoever made it, allow it with {TRUST_FLAG}"
        )
    logger.warning("serving %s with a loader that can run code from its files (%s given)", model_uri, TRUST_FLAG)


def _execute(args: argparse.Namespace, plan: LoadPlan, output: Path | None, tags: dict[str, str]) -> int:
    from mlperf_track.pipeline.load_sweep import run_load_plan

    printer = LoadPrinter(output)
    if args.no_track:
        outcome = run_load_plan(plan, printer)
    else:
        from mlperf_track.tracking.load_run import run_tracked_load_plan

        outcome = run_tracked_load_plan(plan, experiment=args.experiment, extra_tags=tags, extra_listener=printer)
    printer.summary(outcome)
    if output is not None:
        logger.info("wrote %d load points to %s", len(outcome.results), output)
    return 1 if any(point.error is not None for point in outcome.points) else 0


class LoadPrinter(LoadListener):
    """Prints each point as it finishes (and rewrites ``--output``, so an interrupt loses nothing measured),
    then a table and ``max_qps``."""

    def __init__(self, output: Path | None) -> None:
        from rich.console import Console

        self.console = Console() if sys.stdout.isatty() else Console(width=200)
        self.output = output
        self.results: list[dict[str, Any]] = []

    def point_finished(self, point: LoadPoint) -> None:
        if point.result is not None and self.output is not None:
            self.results.append(point.result.to_dict())
            self.output.write_text(json.dumps({"results": self.results}, indent=2), encoding="utf-8")
        if point.result is None:
            self.console.print(f"[red]{point.label}: FAILED[/red] {type(point.error).__name__}: {point.error}")
            return
        result = point.result
        values = result.metrics
        reasons = f" ({'; '.join(result.invalid_reasons)})" if result.invalid_reasons else ""
        line = f"{point.label}: {result.verdict}{reasons}; achieved {_fmt(values.get(m.LOAD_ACHIEVED_QPS), '.4g')} q/s"
        percentile = result.config.target_percentile
        split = result.tail_split(percentile)
        if split is not None:
            line += (
                f"; p{percentile * 100:g} {split[0]:.3f} ms, its tail: queueing {split[1]:.3f} + compute "
                f"{split[2]:.3f} ms; queue p99 {_fmt(values.get(m.LOAD_QUEUE_P99))}, "
                f"compute p99 {_fmt(values.get(m.LOAD_COMPUTE_P99))} ms"
            )
        self.console.print(line, highlight=False)

    def summary(self, outcome: LoadSweepOutcome) -> None:
        from rich.table import Table

        table = Table(title=f"{outcome.plan.target.name}: {outcome.plan.config.scenario}")
        for header in ("point", "verdict", "offered q/s", "achieved q/s", "p99 ms", "queue p99", "compute p99"):
            table.add_column(header, justify="left" if header in ("point", "verdict") else "right")
        for point in outcome.points:
            if point.result is None:
                table.add_row(point.label, "FAILED", *["-"] * 5)
                continue
            values = point.result.metrics
            keys = (m.LOAD_OFFERED_QPS, m.LOAD_ACHIEVED_QPS, m.LOAD_LATENCY_P99, m.LOAD_QUEUE_P99, m.LOAD_COMPUTE_P99)
            table.add_row(point.label, point.result.verdict, *[_fmt(values.get(key)) for key in keys])
        self.console.print(table)
        for name, search in (("max_qps", outcome.search), ("max_qps under background load", outcome.loaded_search)):
            if search is not None:
                found = "none (no rate passed)"
                if search.max_qps is not None:
                    scheduled = search.max_scheduled_qps
                    found = f"{scheduled or search.max_qps:.4g} queries/s scheduled (target rate {search.max_qps:.4g})"
                self.console.print(f"{name}: {found} ({search.stop_reason}, {len(search.probes)} probes)")


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)
