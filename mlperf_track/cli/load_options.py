"""Turn ``mlperf-track load``'s flags into a :class:`~mlperf_track.pipeline.load_sweep.LoadPlan`.

Every converter raises :class:`~mlperf_track.errors.ConfigError` naming the flag, the value and what is
allowed, before anything is loaded or started.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from mlperf_track.cli.common import parse_options, positive_int
from mlperf_track.cli.parsers import boolean
from mlperf_track.engine.load.background import BackgroundLoad
from mlperf_track.engine.load.config import SCENARIOS, SERVER, DeploymentConfig, LoadConfig
from mlperf_track.engine.load.resources import ResourceLimits
from mlperf_track.engine.load.search import SearchConfig
from mlperf_track.errors import ConfigError
from mlperf_track.pipeline.load_sweep import LoadPlan
from mlperf_track.pipeline.load_target import LoadTarget, ModelTarget
from mlperf_track.spec import DEVICES, PRECISIONS, check_choice


def _number(parameter: str, text: str | None, *, allow_zero: bool = False) -> float:
    allowed = "a number >= 0" if allow_zero else "a positive number"
    try:
        value = float(str(text))
    except ValueError:
        raise ConfigError(parameter, text, allowed) from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(parameter, text, allowed)
    return value


def _optional(text: str | None) -> bool:
    return text is not None and text.strip().lower() not in ("", "none", "auto")


def rates(text: str) -> tuple[float, ...]:
    """``--rate``: ``auto`` (search for max_qps: empty) or comma-separated positive queries/s."""
    if text.strip().lower() == "auto":
        return ()
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise ConfigError("--rate", text, "auto, or positive queries per second (comma-separated)")
    return tuple(_number("--rate", item) for item in items)


def cores(text: str | None) -> tuple[int, ...] | None:
    """``--cpu-cores 0,1``."""
    if not _optional(text):
        return None
    assert text is not None
    try:
        return tuple(int(item) for item in text.split(",") if item.strip())
    except ValueError:
        raise ConfigError("--cpu-cores", text, "comma-separated CPU core numbers") from None


def load_config(args: argparse.Namespace, first_rate: float | None) -> LoadConfig:
    """The scenario flags as a :class:`LoadConfig` (``first_rate`` stands in for a Server sweep's rates)."""
    scenario = check_choice("--scenario", args.scenario, SCENARIOS)
    bound = _number("--latency-bound-ms", args.latency_bound_ms) if _optional(args.latency_bound_ms) else None
    if scenario == SERVER and bound is None:
        raise ConfigError("--latency-bound-ms", None, "a positive number of milliseconds (the server scenario)")
    percentile = None
    if _optional(args.percentile):
        percentile = _number("--percentile", args.percentile)
        percentile = percentile / 100 if percentile > 1 else percentile
        if not 0 < percentile < 1:
            raise ConfigError("--percentile", args.percentile, "a percentile in (0, 100), e.g. 99 or 0.99")
    min_queries = positive_int("--min-queries")(args.min_queries) if _optional(args.min_queries) else None
    return LoadConfig(
        scenario=scenario,
        target_qps=first_rate if scenario == SERVER else None,
        latency_bound_ms=bound,
        samples_per_query=positive_int("--samples-per-query")(args.samples_per_query),
        concurrency=positive_int("--concurrency")(args.concurrency),
        min_duration_s=_number("--min-duration", args.min_duration, allow_zero=True),
        min_query_count=min_queries,
        max_queries=positive_int("--max-queries")(args.max_queries),
        max_duration_s=_number("--max-duration", args.max_duration),
        percentile=percentile,
        early_stopping=not args.no_early_stopping,
        seed=_seed(args.seed),
    )


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError("--seed", text, "an integer >= 0") from None
    if value < 0:
        raise ConfigError("--seed", text, "an integer >= 0")
    return value


def deployment(args: argparse.Namespace) -> DeploymentConfig:
    """``--workers``, ``--max-batch-size``, ``--max-queue-delay-ms``, ``--max-queue-size``."""
    queue_size = args.max_queue_size
    return DeploymentConfig(
        workers=positive_int("--load-workers")(args.load_workers),
        max_batch_size=positive_int("--max-batch-size")(args.max_batch_size),
        max_queue_delay_ms=_number("--max-queue-delay-ms", args.max_queue_delay_ms, allow_zero=True),
        max_queue_size=positive_int("--max-queue-size")(queue_size) if _optional(queue_size) else None,
    )


def resource_limits(args: argparse.Namespace) -> ResourceLimits:
    """``--cpu-cores``, ``--num-threads``, ``--memory-limit-mb``, ``--gpu-memory-fraction``."""
    fraction = None
    if _optional(args.gpu_memory_fraction):
        fraction = _number("--gpu-memory-fraction", args.gpu_memory_fraction)
        if fraction > 1:
            raise ConfigError("--gpu-memory-fraction", args.gpu_memory_fraction, "a fraction in (0, 1]")
    return ResourceLimits(
        cpu_cores=cores(args.cpu_cores),
        num_threads=positive_int("--num-threads")(args.num_threads) if _optional(args.num_threads) else None,
        memory_limit_mb=_number("--memory-limit-mb", args.memory_limit_mb) if _optional(args.memory_limit_mb) else None,
        gpu_memory_fraction=fraction,
    )


def model_target(args: argparse.Namespace) -> ModelTarget:
    """The in-process model of ``--model`` (the device is resolved now: ``cuda`` without a GPU fails here)."""
    from mlperf_track.engine.device import resolve_device

    return ModelTarget(
        model=args.model,
        runtime=args.runtime,
        precision=check_choice("--precision", args.precision, PRECISIONS),
        device=resolve_device(check_choice("--device", args.device, DEVICES)),
        image_size=positive_int("--image-size")(args.image_size),
        weights=args.weights if _optional(args.weights) else None,
        channels_last=bool(args.channels_last),
        options=parse_options(args.option),
        trust_pickle=boolean("--trust-pickle", args.trust_pickle),
    )


def build_plan(args: argparse.Namespace, target: LoadTarget | None) -> LoadPlan:
    """The whole plan; ``target`` is the HTTP target, or ``None`` for ``--model``."""
    sweep = rates(args.rate) if args.scenario == SERVER else ()
    config = load_config(args, sweep[0] if sweep else 1.0)
    search = None
    if config.scenario == SERVER and not sweep:
        search = SearchConfig(tolerance=_number("--tolerance", args.tolerance))  # the sweep calibrates its start
    return LoadPlan(
        target=target if target is not None else model_target(args),
        config=config,
        deployment=deployment(args),
        limits=resource_limits(args),
        rates=sweep,
        search=search,
        background=BackgroundLoad.parse(args.background_load),
    )


def serve_options(args: argparse.Namespace) -> tuple[int | None, float, int]:
    """``--port``, ``--health-timeout``, ``--serve-workers``."""
    port = positive_int("--port")(args.port) if _optional(args.port) else None
    return port, _number("--health-timeout", args.health_timeout), positive_int("--serve-workers")(args.serve_workers)


def load_payload(path: str) -> tuple[tuple[Any, ...], tuple[str, ...] | None]:
    """Rows (and columns) from ``--payload``: a list of rows, or an MLflow request body."""
    file = Path(path).expanduser()
    allowed = "a JSON file: a list of rows, or {'inputs': [...]}, {'instances': [...]}, {'dataframe_split': ...}"
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConfigError("--payload", path, allowed, hint=str(error)) from None
    if isinstance(data, dict) and isinstance(data.get("dataframe_split"), dict):
        split = data["dataframe_split"]
        return tuple(split.get("data") or ()), tuple(split.get("columns") or ())
    rows = data.get("inputs", data.get("instances")) if isinstance(data, dict) else data
    if not isinstance(rows, list) or not rows:
        raise ConfigError("--payload", path, allowed)
    return tuple(rows), None


def http_rows(args: argparse.Namespace, rows: tuple[Any, ...], columns: tuple[str, ...] | None) -> dict[str, Any]:
    """Keyword arguments of :class:`~mlperf_track.pipeline.load_target.HttpTarget` for the rows and flags."""
    body = "dataframe_split" if columns else "inputs"
    return {
        "rows": rows,
        "timeout_s": _number("--request-timeout", args.request_timeout),
        "body_format": body,
        "columns": columns or (),
    }
