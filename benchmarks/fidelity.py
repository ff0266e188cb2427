"""Fidelity of the measurement engine: does it report what independent timers report, at negligible cost?

Per configuration, on the same model object, weights, inputs and process, in interleaved replicates (every
replicate runs every method, in a rotating order, so drift of the machine spreads evenly):

* PyTorch eager: the engine's p50 vs a hand-written ``perf_counter`` loop and vs
  ``torch.utils.benchmark.Timer.adaptive_autorange`` (target ratio 0.97-1.03), and throughput with every
  monitor on vs off (target overhead <= 1%);
* ONNX Runtime and OpenVINO: the engine timing the project's runtime vs a hand loop over the runtime's own
  Python API on the same ONNX file with the same settings (threads, graph optimisation, precision hint), and
  OpenVINO's ``benchmark_app`` (its median latency, synchronous API, latency hint, ``-data_shape``) when it is
  installed.

Beside every ratio the table gives the between-replicate spread (CV of each method's p50) and the noise band
of the ratio (95% half-width from that spread); where the band is wider than +-3% the verdict says so: the
machine's noise is then larger than what is being tested, and the row can neither confirm nor refute it.

Models are ones no test names (mobilenet_v3_small, efficientnet_b0, regnet_x_400mf), seeded random weights:
nothing is downloaded. CUDA (when present): resnet50 at 224 px, batch 1/32/256, fp32 and bf16. Usage::

    python benchmarks/fidelity.py                      # full run (~5 min; use a quiet machine)
    python benchmarks/fidelity.py --quick              # < 1.5 min smoke run
    python benchmarks/fidelity.py --markdown benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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
from mlperf_track.pipeline.defaults import auto_defaults
from mlperf_track.spec import TimingConfig

logger = logging.getLogger("fidelity")

RATIO_RANGE = (0.97, 1.03)
BAND = 0.03
MAX_OVERHEAD = 0.01


@dataclass(frozen=True)
class Config:
    """One measured configuration."""

    device: str
    model: str
    image_size: int
    batch_size: int
    precision: str = "fp32"
    runtime: str = "eager"


@dataclass
class Row:
    """The replicates of every method of one configuration (p50 in ms per replicate)."""

    config: Config
    p50s: dict[str, list[float]] = field(default_factory=dict)
    throughput_on: list[float] = field(default_factory=list)
    throughput_off: list[float] = field(default_factory=list)
    valid: list[bool] = field(default_factory=list)

    def add(self, method: str, value: float) -> None:
        self.p50s.setdefault(method, []).append(value)

    def median(self, method: str) -> float:
        return statistics.median(self.p50s[method])

    def cv(self, method: str) -> float:
        values = self.p50s[method]
        return statistics.stdev(values) / statistics.mean(values) if len(values) > 1 else math.nan

    def band(self, method: str, reference: str) -> float:
        """95% half-width of the ratio of the two methods' medians, from their between-replicate spread."""
        n = min(len(self.p50s[method]), len(self.p50s[reference]))
        if n < 2:
            return math.nan
        return 1.96 * math.hypot(self.cv(method), self.cv(reference)) / math.sqrt(n)


# -- configurations ---------------------------------------------------------------------------------------


def _configs(quick: bool, devices: list[str], runtimes: list[str]) -> list[Config]:
    configs: list[Config] = []
    if "cpu" in devices:
        if quick:
            configs.append(Config("cpu", "mobilenet_v3_small", 32, 1))
        else:
            for model in ("mobilenet_v3_small", "efficientnet_b0", "regnet_x_400mf"):
                configs += [Config("cpu", model, 64, batch) for batch in (1, 8)]
        size = 32 if quick else 64
        configs += [Config("cpu", "mobilenet_v3_small", size, 1, runtime=runtime) for runtime in runtimes]
    if "cuda" in devices:
        batches = (1, 32) if quick else (1, 32, 256)
        configs += [Config("cuda", "resnet50", 224, b, p) for p in ("fp32", "bf16") for b in batches]
    return configs


def _timing(device: str, quick: bool) -> TimingConfig:
    if quick:
        return TimingConfig(
            warmup_iters=3,
            warmup_s=0.05,
            min_iters=10,
            max_iters=100_000,
            min_time_s=0.3,
            max_time_s=0.6,
            target_rel_ci=0.05,
        )
    timing: TimingConfig = auto_defaults(device)["timing"]  # what users get
    return timing


def _module(config: Config) -> torch.nn.Module:
    import torchvision

    torch.manual_seed(0)  # identical weights for every method (a random model's speed depends on them)
    dtype = dtype_for(config.precision) or torch.float32
    return getattr(torchvision.models, config.model)(weights=None).eval().to(config.device, dtype)


def _inputs(config: Config) -> torch.Tensor:
    dtype = dtype_for(config.precision) or torch.float32
    batch = torch.randn(config.batch_size, 3, config.image_size, config.image_size, generator=torch.Generator())
    return batch.to(config.device, dtype)


# -- reference timers --------------------------------------------------------------------------------------


def hand_loop_p50(call: Callable[[], object], device: str, seconds: float, warmup: int = 5) -> float:
    """The simplest honest timing loop: warm up, then perf_counter around call + synchronize for ``seconds``."""
    for _ in range(warmup):
        call()
    synchronize(device)
    samples: list[int] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(samples) < 10:
        start = time.perf_counter_ns()
        call()
        synchronize(device)
        samples.append(time.perf_counter_ns() - start)
    return float(np.median(samples)) / 1e6


def timer_p50(call: Callable[[], object], max_run_time: float) -> float:
    """``torch.utils.benchmark.Timer.adaptive_autorange`` median, in ms."""
    from torch.utils.benchmark import Timer

    # num_threads defaults to 1 in Timer; keep the process's setting so all timers see the same work.
    timer = Timer(stmt="call()", globals={"call": call}, num_threads=torch.get_num_threads())
    return float(timer.adaptive_autorange(threshold=0.1, max_run_time=max_run_time).median) * 1e3


def _engine(call: Callable[[], object], config: Config, timing: TimingConfig, row: Row, monitors: bool) -> None:
    measured = measure_callable(
        call, device=config.device, batch_size=config.batch_size, timing=timing, monitors=monitors
    )
    if monitors:
        row.add("engine", measured.stats.p50)
        row.throughput_on.append(measured.metrics[m.THROUGHPUT])
        row.valid.append(measured.valid)
    else:
        row.throughput_off.append(measured.metrics[m.THROUGHPUT])


def _interleave(methods: list[Callable[[], None]], replicates: int) -> None:
    """Run every method once per replicate, rotating the order so no method is always first."""
    for replicate in range(replicates):
        shift = replicate % len(methods)
        for method in methods[shift:] + methods[:shift]:
            method()


def measure_eager(config: Config, *, timing: TimingConfig, replicates: int) -> Row:
    """Engine vs hand loop vs torch.utils.benchmark on one PyTorch model, plus the monitors' overhead."""
    model, inputs, row = _module(config), _inputs(config), Row(config)
    window = max(timing.min_time_s, 0.3)
    with torch.inference_mode(), precision_settings(config.precision, config.device):

        def call() -> object:
            return model(inputs)

        _engine(call, config, timing, Row(config), True)  # settle allocator and oneDNN caches first
        _interleave(
            [
                lambda: _engine(call, config, timing, row, True),
                lambda: _engine(call, config, timing, row, False),
                lambda: row.add("hand", hand_loop_p50(call, config.device, window)),
                lambda: row.add("reference", timer_p50(call, max_run_time=window * 2)),
            ],
            replicates,
        )
    return row


# -- runtimes on one ONNX file -------------------------------------------------------------------------------


def _export(config: Config, folder: Path) -> Path:
    """The ONNX file every method of the row loads, exported the way the project's runtimes export."""
    from mlperf_track.models.artifact import ModelArtifact
    from mlperf_track.runtimes.onnx_export import typed_onnx

    shape = (3, config.image_size, config.image_size)
    return typed_onnx(ModelArtifact(name=config.model, input_shape=shape, module=_module(config)), "fp32", folder)


def _prepared(config: Config, path: Path, threads: int) -> object:
    from mlperf_track.models.artifact import ModelArtifact
    from mlperf_track.runtimes.base import PrepareRequest
    from mlperf_track.runtimes.registry import get_runtime

    shape = (3, config.image_size, config.image_size)
    artifact = ModelArtifact(name=config.model, input_shape=shape, onnx_path=path)
    request = PrepareRequest(
        device="cpu",
        precision="fp32",
        batch_sizes=(config.batch_size,),
        input_shape=shape,
        num_threads=threads,
        cache_dir=path.parent / "cache",
    )
    return get_runtime(config.runtime).prepare(artifact, request)


def _hand_runtime(config: Config, path: Path, threads: int) -> Callable[[np.ndarray], object]:
    """The runtime's own Python API on the same file with the same settings."""
    if config.runtime == "onnxruntime":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda batch: session.run(None, {name: batch})
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    model.reshape({model.inputs[0]: ov.PartialShape([-1, 3, config.image_size, config.image_size])})
    compiled = core.compile_model(
        model,
        "CPU",
        {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads},
    )
    request = compiled.create_infer_request()
    return lambda batch: request.infer({0: batch}, share_inputs=True, share_outputs=True)


def benchmark_app_p50(config: Config, path: Path, threads: int, seconds: float) -> float | None:
    """OpenVINO's benchmark_app median latency (ms) on the same file, or ``None`` when it is not installed."""
    executable = shutil.which("benchmark_app") or str(Path(sys.executable).with_name("benchmark_app"))
    if not Path(executable).exists():
        return None
    shape = f"[{config.batch_size},3,{config.image_size},{config.image_size}]"
    # benchmark_app refuses -nthreads with a -hint; the same properties as the runtime go in a config file.
    properties = {
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": str(threads),
        "INFERENCE_PRECISION_HINT": "f32",
    }
    config_file = path.with_name("benchmark_app.json")
    config_file.write_text(json.dumps({"CPU": properties}), encoding="utf-8")
    command = [
        executable,
        "-m",
        str(path),
        "-d",
        "CPU",
        "-api",
        "sync",
        "-load_config",
        str(config_file),
        "-data_shape",
        shape,
        "-t",
        str(max(1, round(seconds))),
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=False).stdout
    return median_latency_ms(output)


#: benchmark_app prints a latency in the unit that suits it: ``Median: 3.82 ms``, but ``Median: 387.82 us`` below
#: a millisecond (reading only ``ms`` made every sub-millisecond row n/a).
_MEDIAN = re.compile(r"Median:\s*([0-9.]+)\s*(ms|us|µs|s)\b")
_TO_MS = {"ms": 1.0, "us": 1e-3, "µs": 1e-3, "s": 1e3}


def median_latency_ms(output: str) -> float | None:
    """The median latency in ms from benchmark_app's output (``None``, with a warning, when it printed none)."""
    match = _MEDIAN.search(output)
    if match is None:
        logger.warning("benchmark_app gave no median latency: %s", output[-500:])
        return None
    return float(match.group(1)) * _TO_MS[match.group(2)]


def measure_runtime(config: Config, *, timing: TimingConfig, replicates: int, threads: int) -> Row:
    """Engine on the project's runtime vs a hand loop over the runtime's API (and benchmark_app) on one file."""
    row = Row(config)
    window = max(timing.min_time_s, 0.3)
    with tempfile.TemporaryDirectory(prefix="fidelity-") as folder:
        path = _export(config, Path(folder))
        prepared = _prepared(config, path, threads)
        batch = prepared.make_input(config.batch_size)  # type: ignore[attr-defined]
        hand = _hand_runtime(config, path, threads)

        def engine_call() -> object:
            return prepared(batch)  # type: ignore[operator]

        _engine(engine_call, config, timing, Row(config), True)
        methods = [
            lambda: _engine(engine_call, config, timing, row, True),
            lambda: row.add("hand", hand_loop_p50(lambda: hand(batch), "cpu", window)),
        ]
        if config.runtime == "openvino":
            methods.append(lambda: _add_if(row, "reference", benchmark_app_p50(config, path, threads, window * 3)))
        _interleave(methods, replicates)
        prepared.close()  # type: ignore[attr-defined]
    return row


def _add_if(row: Row, method: str, value: float | None) -> None:
    if value is not None:
        row.add(method, value)


# -- the table -------------------------------------------------------------------------------------------------

HEADERS = (
    "device",
    "model",
    "px",
    "batch",
    "precision",
    "runtime",
    "engine p50 ms",
    "hand p50 ms",
    "engine/hand",
    "+-noise",
    "ref p50 ms (ref)",
    "engine/ref",
    "+-noise ",
    "between-run CV (engine, hand, ref)",
    "monitor overhead",
    "valid runs",
    "verdict",
)


def _ratio_cells(row: Row, reference: str) -> tuple[str, str, str, str]:
    if reference not in row.p50s:
        return "n/a", "n/a", "n/a", "n/a"
    ratio = row.median("engine") / row.median(reference)
    return f"{row.median(reference):.3f}", f"{ratio:.3f}", f"{row.band('engine', reference):.1%}", ""


def verdict(row: Row) -> str:
    """``ok``, ``out of target`` or ``noise > +-3%`` (the band is wider than what is tested)."""
    references = [name for name in ("hand", "reference") if name in row.p50s]
    bands = [row.band("engine", name) for name in references]
    if any(math.isnan(band) or band > BAND for band in bands):
        return "noise > +-3%: cannot confirm"
    low, high = RATIO_RANGE
    ratios_ok = all(low <= row.median("engine") / row.median(name) <= high for name in references)
    overhead_ok = _overhead(row) is None or _overhead(row) <= MAX_OVERHEAD  # type: ignore[operator]
    return "ok" if ratios_ok and overhead_ok else "out of target"


def _overhead(row: Row) -> float | None:
    if not row.throughput_off:
        return None
    return 1.0 - statistics.median(row.throughput_on) / statistics.median(row.throughput_off)


def _cells(row: Row) -> list[str]:
    c = row.config
    hand_ref, hand_ratio, hand_band, _ = _ratio_cells(row, "hand")
    ref, ref_ratio, ref_band, _ = _ratio_cells(row, "reference")
    # ONNX Runtime ships no benchmarking tool of its own: its row has only the hand loop over its Python API.
    reference_name = {"eager": "Timer", "openvino": "benchmark_app"}.get(c.runtime, "no reference tool")
    cvs = ", ".join(f"{row.cv(name):.1%}" if name in row.p50s else "n/a" for name in ("engine", "hand", "reference"))
    overhead = _overhead(row)
    return [
        c.device,
        c.model,
        str(c.image_size),
        str(c.batch_size),
        c.precision,
        c.runtime,
        f"{row.median('engine'):.3f}",
        hand_ref,
        hand_ratio,
        hand_band,
        f"{ref} ({reference_name})",
        ref_ratio,
        ref_band,
        cvs,
        "n/a" if overhead is None else f"{overhead:+.2%}",
        f"{sum(row.valid)}/{len(row.valid)}",
        verdict(row),
    ]


def render(rows: list[Row]) -> list[str]:
    """The table as Markdown lines."""
    return [
        "| " + " | ".join(HEADERS) + " |",
        "|" + "|".join("---" for _ in HEADERS) + "|",
        *("| " + " | ".join(_cells(row)) + " |" for row in rows),
    ]


def _header(argv: list[str], replicates: int) -> list[str]:
    tags = environment_tags()
    return [
        f"## Engine fidelity, {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        "",
        f"- machine: CPU {tags['hw.cpu']} ({tags['hw.cpu_cores']} logical cores), GPU {tags['hw.gpu']}",
        f"- software: torch {tags['sw.torch']}, CUDA {tags['sw.cuda']}, Python {tags['sw.python']}",
        f"- command: `{shlex.join(['python', 'benchmarks/fidelity.py', *argv])}`",
        f"- torch threads: {torch.get_num_threads()}; {replicates} interleaved replicates per row; "
        f"load average before: {_load():.2f}",
        "- +-noise: 95% half-width of the ratio from the between-replicate spread; a row whose band exceeds"
        " +-3% cannot confirm or refute the 0.97-1.03 target on this machine",
        "",
    ]


def _load() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return math.nan


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny configurations and short runs")
    parser.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: CPU, and CUDA if present"
    )
    parser.add_argument("--replicates", type=int, default=5, help="interleaved replicates per row (default 5)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch and runtime threads (default: torch's; 1 with --quick)"
    )
    parser.add_argument(
        "--runtimes", default="onnxruntime,openvino", help="ONNX runtimes to check, comma-separated ('' for none)"
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
    threads = args.threads or (1 if args.quick else torch.get_num_threads())
    torch.set_num_threads(threads)
    devices = {"auto": ["cpu", *(["cuda"] if torch.cuda.is_available() else [])], "cpu": ["cpu"], "cuda": ["cuda"]}
    replicates = 3 if args.quick and args.replicates == 5 else args.replicates
    runtimes = [name for name in args.runtimes.split(",") if name and _importable(name)]
    lines = _header(argv, replicates)
    rows = []
    for config in _configs(args.quick, devices[args.device], runtimes):
        logger.info("measuring %s", config)
        timing = _timing(config.device, args.quick)
        if config.runtime == "eager":
            rows.append(measure_eager(config, timing=timing, replicates=replicates))
        else:
            rows.append(measure_runtime(config, timing=timing, replicates=replicates, threads=threads))
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    text = "\n".join([*lines, *render(rows), ""])
    print(text)
    if args.markdown:
        with args.markdown.open("a", encoding="utf-8") as handle:
            handle.write(text + "\n")
    return 0


def _importable(runtime: str) -> bool:
    import importlib.util

    module = {"onnxruntime": "onnxruntime", "openvino": "openvino"}.get(runtime, runtime)
    if importlib.util.find_spec(module) is None:
        logger.warning("%s is not installed: its rows are skipped", runtime)
        return False
    return True


if __name__ == "__main__":
    raise SystemExit(main())
