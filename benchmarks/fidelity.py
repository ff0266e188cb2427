"""Fidelity of the measurement engine: does it report what independent timers report, at negligible cost?

On the same model, inputs and process it compares, per configuration:

* the engine's p50 latency vs a hand-written ``perf_counter`` loop and vs
  ``torch.utils.benchmark.Timer.adaptive_autorange`` (target ratio 0.97-1.03);
* throughput with every monitor on vs off (target overhead <= 1%), from interleaved on/off runs;
* the coefficient of variation of the engine's p50 over repeated runs (run-to-run stability).

CPU always (resnet18 at 64 px, batch 1 and 8, fp32); CUDA when present (resnet50 at 224 px, batch 1/32/256,
fp32 and bf16). Random weights: nothing is downloaded. Usage::

    python benchmarks/fidelity.py                      # full run (minutes; use a quiet machine)
    python benchmarks/fidelity.py --quick              # < 1 min smoke run
    python benchmarks/fidelity.py --markdown docs/fidelity.md
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

try:
    import mlperf_track  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`: use the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlperf_track import metrics as m
from mlperf_track.engine.device import synchronize
from mlperf_track.engine.environment import environment_tags
from mlperf_track.engine.measure import measure_callable
from mlperf_track.engine.precision import dtype_for, precision_settings
from mlperf_track.spec import TimingConfig

logger = logging.getLogger("fidelity")

RATIO_RANGE = (0.97, 1.03)
MAX_OVERHEAD = 0.01


@dataclass(frozen=True)
class Config:
    """One measured configuration."""

    device: str
    model: str
    image_size: int
    batch_size: int
    precision: str


@dataclass(frozen=True)
class Row:
    """The fidelity figures of one configuration."""

    config: Config
    engine_p50: float
    hand_p50: float
    timer_p50: float
    overhead: float
    p50_cv: float
    iterations: int
    stop_reason: str


def _configs(quick: bool, devices: list[str]) -> list[Config]:
    configs: list[Config] = []
    batches: tuple[int, ...]
    if "cpu" in devices:
        size, batches = (32, (1,)) if quick else (64, (1, 8))
        configs += [Config("cpu", "resnet18", size, b, "fp32") for b in batches]
    if "cuda" in devices:
        batches = (1, 32) if quick else (1, 32, 256)
        configs += [Config("cuda", "resnet50", 224, b, p) for p in ("fp32", "bf16") for b in batches]
    return configs


def _timing(device: str, quick: bool) -> TimingConfig:
    if quick:
        return TimingConfig(warmup_iters=3, warmup_s=0.05, min_iters=10, max_iters=300, max_time_s=0.5)
    min_time = 1.0 if device == "cuda" else 0.0  # GPU energy needs a window of about a second
    return TimingConfig(warmup_iters=10, warmup_s=0.5, min_iters=20, max_iters=5000, min_time_s=min_time)


def _make_call(config: Config) -> Callable[[], object]:
    import torchvision

    dtype = dtype_for(config.precision) or torch.float32
    model = getattr(torchvision.models, config.model)(weights=None).eval().to(config.device, dtype)
    inputs = torch.randn(config.batch_size, 3, config.image_size, config.image_size, generator=torch.Generator())
    inputs = inputs.to(config.device, dtype)
    return lambda: model(inputs)


def _hand_loop_p50(call: Callable[[], object], device: str, warmup: int, iterations: int) -> float:
    """The simplest honest timing loop: warm up, then perf_counter around call + synchronize."""
    for _ in range(warmup):
        call()
    synchronize(device)
    samples = []
    for _ in range(iterations):
        start = time.perf_counter_ns()
        call()
        synchronize(device)
        samples.append(time.perf_counter_ns() - start)
    return float(np.median(samples)) / 1e6


def _timer_p50(call: Callable[[], object], max_run_time: float) -> float:
    from torch.utils.benchmark import Timer

    # num_threads defaults to 1 in Timer; keep the process's setting so all three timers see the same work.
    timer = Timer(stmt="call()", globals={"call": call}, num_threads=torch.get_num_threads())
    return float(timer.adaptive_autorange(threshold=0.1, max_run_time=max_run_time).median) * 1e3


def measure_config(config: Config, *, quick: bool, repeats: int) -> Row:
    """All fidelity figures for one configuration, interleaving methods to spread drift evenly."""
    timing = _timing(config.device, quick)
    call = _make_call(config)
    with torch.inference_mode(), precision_settings(config.precision, config.device):

        def engine(monitors: bool) -> tuple[float, float, int, str]:
            result = measure_callable(
                call, device=config.device, batch_size=config.batch_size, timing=timing, monitors=monitors
            )
            return result.stats.p50, result.metrics[m.THROUGHPUT], result.stats.count, result.stop_reason

        engine(True)  # settle allocator and oneDNN caches before anything is compared
        first_p50, _, iterations, reason = engine(True)
        timer = _timer_p50(call, max_run_time=timing.max_time_s)
        on, off, p50s, hands = [], [], [first_p50], []
        for _ in range(max(repeats - 1, 2)):
            hands.append(_hand_loop_p50(call, config.device, timing.warmup_iters, iterations))
            p50, throughput_on, _, _ = engine(True)
            on.append(throughput_on)
            off.append(engine(False)[1])
            p50s.append(p50)
        p50s = p50s[:repeats]
    return Row(
        config=config,
        engine_p50=statistics.median(p50s),
        hand_p50=statistics.median(hands),
        timer_p50=timer,
        overhead=1.0 - statistics.median(on) / statistics.median(off),
        p50_cv=statistics.stdev(p50s) / statistics.mean(p50s) if len(p50s) > 1 else float("nan"),
        iterations=iterations,
        stop_reason=reason,
    )


HEADERS = (
    "device",
    "model",
    "px",
    "batch",
    "precision",
    "engine p50 ms",
    "hand p50 ms",
    "engine/hand",
    "Timer p50 ms",
    "engine/Timer",
    "monitor overhead",
    "p50 CV (repeats)",
    "iters (stop)",
    "verdict",
)


def _cells(row: Row) -> list[str]:
    c = row.config
    hand_ratio, timer_ratio = row.engine_p50 / row.hand_p50, row.engine_p50 / row.timer_p50
    low, high = RATIO_RANGE
    ok = low <= hand_ratio <= high and low <= timer_ratio <= high and row.overhead <= MAX_OVERHEAD
    return [
        c.device,
        c.model,
        str(c.image_size),
        str(c.batch_size),
        c.precision,
        f"{row.engine_p50:.3f}",
        f"{row.hand_p50:.3f}",
        f"{hand_ratio:.3f}",
        f"{row.timer_p50:.3f}",
        f"{timer_ratio:.3f}",
        f"{row.overhead:+.2%}",
        f"{row.p50_cv:.2%}",
        f"{row.iterations} ({row.stop_reason})",
        "ok" if ok else "out of target",
    ]


def render(rows: list[Row]) -> None:
    """Print the rich table."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="mlperf_track engine fidelity", caption=f"targets: ratios {RATIO_RANGE}, overhead <= 1%")
    for header in HEADERS:
        table.add_column(header, justify="left" if header in {"device", "model", "precision", "verdict"} else "right")
    for row in rows:
        table.add_row(*_cells(row))
    Console(width=None if sys.stdout.isatty() else 220).print(table)  # piped output: no truncation


def append_markdown(path: Path, rows: list[Row], argv: list[str]) -> None:
    """Append a Markdown table with the machine, the date and the command to ``path``."""
    tags = environment_tags()
    lines = [
        f"## Engine fidelity, {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        "",
        f"- machine: CPU {tags['hw.cpu']} ({tags['hw.cpu_cores']} logical cores), GPU {tags['hw.gpu']}",
        f"- software: torch {tags['sw.torch']}, CUDA {tags['sw.cuda']}, Python {tags['sw.python']}",
        f"- command: `{shlex.join(['python', *argv])}`",
        f"- torch threads: {torch.get_num_threads()}",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "|".join("---" for _ in HEADERS) + "|",
        *("| " + " | ".join(_cells(row)) + " |" for row in rows),
        "",
    ]
    with path.open("a", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny configurations and short runs (< 1 min)")
    parser.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: CPU, and CUDA if present"
    )
    parser.add_argument("--repeats", type=int, default=5, help="engine runs for the p50 CV (default 5)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's; 1 with --quick)"
    )
    parser.add_argument("--markdown", type=Path, default=None, help="append a Markdown table to this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the fidelity checks and print (and optionally append) the table."""
    argv = sys.argv[1:] if argv is None else argv
    args = _parse(argv)
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    # --quick runs on busy shared machines, where several OpenMP threads oversubscribe the cores and
    # latencies explode (seen: resnet18 32 px 300 ms with 2 threads vs 33 ms with 1 under load 5 on 2 cores).
    threads = args.threads or (1 if args.quick else None)
    if threads:
        torch.set_num_threads(threads)
    devices = {"auto": ["cpu", *(["cuda"] if torch.cuda.is_available() else [])], "cpu": ["cpu"], "cuda": ["cuda"]}
    repeats = 3 if args.quick and args.repeats == 5 else args.repeats
    rows = []
    for config in _configs(args.quick, devices[args.device]):
        logger.info("measuring %s", config)
        rows.append(measure_config(config, quick=args.quick, repeats=repeats))
        with contextlib.suppress(Exception):
            torch.cuda.empty_cache()
    render(rows)
    if args.markdown:
        append_markdown(args.markdown, rows, [str(Path(sys.argv[0])), *argv])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
