"""Prove the GPU half on one NVIDIA GPU in one short run: every path measured by the package, and by hand beside it.

On a machine with one NVIDIA GPU and torch (no MLflow, no Optuna, nothing downloaded; onnxruntime-gpu,
tensorrt and nvidia-ml-py are used when importable), from the repository root::

    PYTHONPATH=$PWD python benchmarks/gpu_check.py --json gpu_check.json    # about 6-8 minutes on an H100

ResNet-50 at 224 px (random init with a fixed seed, the same weights for every path and its hand loop), batch
1/32/256, through eager fp32/tf32/fp16/bf16 (the half precisions channels-last), ``torch.compile`` (default at
batch 256, reduce-overhead at batch 1), the fp16/bf16/pruned variants, ONNX Runtime's CUDA provider and
TensorRT. Each path runs through the package's own code (BenchmarkSession: variants, runtimes, the engine with
its NVML power, energy and memory monitors) and then through a hand-written loop on the same model and inputs:

* eager and the variants: an independent copy of the same weights, placed by hand (``.to(cuda, dtype)``,
  channels-last), timed with CUDA events;
* compile: the compiled model the package prepared, timed with CUDA events (compiling twice costs minutes);
* ONNX Runtime: a second session on the same ONNX file with the provider's default stream and IO binding;
* TensorRT: a second execution context of the same engine file, ``execute_async_v3`` on its own stream.

The table shows the engine's p50, the hand loop's p50, their ratio, throughput, memory, power and J/sample.
The exit status is 1 when a ratio leaves 1 +- 3% or a path crashes (a path whose package is not installed is
skipped, not failed). ``--dry-run`` runs the same plan on the CPU at tiny sizes (tinycnn, 16 px, batch 1/2/4;
CUDA-only settings replaced and said so); ratios are then printed but not judged (a shared CPU is too noisy),
crashes still fail. CI runs the dry run (tests/benchmarks/test_gpu_check.py), so this script never rots.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from mlperf_track import metrics as m  # noqa: E402
from mlperf_track.engine.environment import host_tags  # noqa: E402
from mlperf_track.engine.precision import dtype_for, precision_settings  # noqa: E402
from mlperf_track.models.base import LoadedModel, ModelSource  # noqa: E402
from mlperf_track.models.registry import register_model_source  # noqa: E402
from mlperf_track.pipeline.config import PipelineConfig  # noqa: E402
from mlperf_track.pipeline.session import cpu_threads  # noqa: E402
from mlperf_track.runtimes import get_runtime  # noqa: E402
from mlperf_track.spec import CaseSpec, TimingConfig  # noqa: E402
from mlperf_track.variants.registry import get_variant  # noqa: E402

logger = logging.getLogger("gpu_check")

TOLERANCE = 0.03
GPU_BATCHES = (1, 32, 256)
DRY_BATCHES = {1: 1, 32: 2, 256: 4}
SEED = 0
MODEL_PREFIX = "gpu_check:"


@dataclass(frozen=True)
class Check:
    """One path of the plan: what runs, at which (GPU) batch sizes."""

    label: str
    group: str
    variant: str
    runtime: str
    precision: str
    batch_sizes: tuple[int, ...] = GPU_BATCHES
    channels_last: bool = False
    compile_mode: str | None = None


PLAN = (
    Check("eager fp32", "eager", "baseline", "eager", "fp32"),
    Check("eager tf32", "eager", "baseline", "eager", "tf32"),
    Check("eager fp16 cl", "eager", "baseline", "eager", "fp16", channels_last=True),
    Check("eager bf16 cl", "eager", "baseline", "eager", "bf16", channels_last=True),
    Check("compile default fp16 cl", "compile", "baseline", "compile", "fp16", (256,), True, "default"),
    Check("compile reduce-overhead bf16 cl", "compile", "baseline", "compile", "bf16", (1,), True, "reduce-overhead"),
    Check("variant quantized_fp16 cl", "variants", "quantized_fp16", "eager", "fp16", channels_last=True),
    Check("variant quantized_bf16 cl", "variants", "quantized_bf16", "eager", "bf16", channels_last=True),
    Check("variant pruned_structured fp16 cl", "variants", "pruned_structured", "eager", "fp16", channels_last=True),
    Check("onnxruntime cuda fp16", "onnxruntime", "baseline", "onnxruntime", "fp16"),
    Check("tensorrt fp16", "tensorrt", "baseline", "tensorrt", "fp16"),
)


class _SeededSource(ModelSource):
    """``gpu_check:<torchvision name>`` or ``gpu_check:tinycnn``: random init with a fixed seed, nothing downloaded."""

    name = "gpu_check"

    def matches(self, ref: str) -> bool:
        return ref.startswith(MODEL_PREFIX)

    def load(self, ref: str, *, weights: str | None = None) -> LoadedModel:
        start = time.perf_counter()
        arch = ref.removeprefix(MODEL_PREFIX)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(SEED)
            if arch == "tinycnn":
                from mlperf_track.models.tiny import TinyCNN

                module: torch.nn.Module = TinyCNN()
            else:
                import torchvision

                module = torchvision.models.get_model(arch, weights=None)
        return LoadedModel(module.eval(), ref, self.name, time.perf_counter() - start, weights=f"random(seed={SEED})")


@dataclass
class Row:
    """One line of the table."""

    label: str
    batch_size: int
    status: str = "ok"
    engine_ms: float | None = None
    hand_ms: float | None = None
    throughput: float | None = None
    memory_mb: float | None = None
    power_w: float | None = None
    joules: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return self.engine_ms / self.hand_ms if self.engine_ms and self.hand_ms else None


def _timing(dry_run: bool) -> TimingConfig:
    if dry_run:
        return TimingConfig(warmup_iters=2, warmup_s=0.0, min_iters=5, max_iters=200, max_time_s=0.1, target_rel_ci=0.5)
    return TimingConfig(  # min_time_s: NVML's energy counter needs a window of about a second
        warmup_iters=10,
        warmup_s=0.5,
        min_iters=50,
        max_iters=10_000,
        min_time_s=1.0,
        max_time_s=3.0,
        target_rel_ci=0.01,
    )


def _adapt(check: Check, device: str) -> tuple[Check, str | None, str]:
    """The check as it runs on ``device`` (CPU dry run: tiny batches, CUDA-only settings replaced), or why not."""
    notes: list[str] = []
    runtime = get_runtime(check.runtime)
    reason = runtime.unavailable_reason()
    if reason is not None:
        return check, reason, ""
    if check.variant != "baseline":
        reason = get_variant(check.variant).unavailable_reason(device)
        if reason is not None:
            return check, f"{check.variant}: {reason}", ""
    if device == "cpu":
        check = replace(check, batch_sizes=tuple(DRY_BATCHES[size] for size in check.batch_sizes))
        if check.compile_mode == "reduce-overhead":
            check, notes = replace(check, compile_mode="default"), [*notes, "CUDA graphs -> default mode on the CPU"]
    supported = runtime.capabilities().precisions(device)
    if check.precision not in supported:
        if device == "cuda":
            return check, f"{check.runtime} runs {sorted(supported)} on this GPU, not {check.precision}", ""
        notes.append(f"{check.precision} -> fp32 on the CPU")
        check = replace(check, precision="fp32")
    return check, None, "; ".join(notes)


@dataclass(frozen=True)
class Setting:
    """Where and at what size the plan runs."""

    device: str
    model: str
    image_size: int
    work: Path

    @property
    def dry_run(self) -> bool:
        return self.device == "cpu"


def _session(check: Check, setting: Setting) -> Any:
    from mlperf_track.pipeline.session import BenchmarkSession  # the package's composition of every layer

    options = (("compile_mode", check.compile_mode),) if check.compile_mode else ()
    config = PipelineConfig(
        model=setting.model,
        device=setting.device,
        variants=() if check.variant == "baseline" else (check.variant,),
        runtimes=(check.runtime,),
        precisions=(check.precision,),
        batch_sizes=check.batch_sizes,
        image_size=setting.image_size,
        dataset="synthetic",
        epochs=0,
        num_threads=1 if setting.dry_run else None,  # a shared CPU: no thread oversubscription
        channels_last=check.channels_last,
        options=options,
        timing=_timing(setting.dry_run),
        seed=SEED,
        measure_accuracy=False,
        cache_dir=setting.work / "cache",
        output_dir=setting.work / "output",
    )
    return BenchmarkSession(config)


def _events_loop(call: Callable[[], object], iterations: int, stream: Any = None) -> float:
    """Median milliseconds of ``call`` between CUDA events on ``stream`` (default: the current stream)."""
    stream = stream or torch.cuda.current_stream()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(iterations):
        start.record(stream)
        call()
        end.record(stream)
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def _host_loop(call: Callable[[], object], iterations: int) -> float:
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _warm(call: Callable[[], object], device: str, seconds: float) -> None:
    end, count = time.perf_counter() + seconds, 0
    while count < 10 or time.perf_counter() < end:
        call()
        count += 1
    if device == "cuda":
        torch.cuda.synchronize()


def _eager_call(session: Any, case: CaseSpec, inputs: torch.Tensor) -> Callable[[], object]:
    """The same weights, placed by hand: an independent check of the eager runtime."""
    module = copy.deepcopy(session.variant(case.variant).module)
    module = module.to(device=case.device, dtype=dtype_for(case.precision) or torch.float32)
    if case.channels_last:
        module = module.to(memory_format=torch.channels_last)

    def call() -> object:
        with torch.inference_mode():
            return module(inputs)

    return call


def _ort_call(session: Any, prepared: Any, inputs: torch.Tensor) -> Callable[[], object]:
    """A second onnxruntime session on the same file, CUDA provider defaults, IO binding of the same input."""
    import onnxruntime as ort

    path = session.config.cache_dir / "runtimes" / "onnx" / prepared.tags["runtime.onnx_file"]
    options = {"device_id": str(torch.cuda.current_device()), "use_tf32": "0"}
    hand = ort.InferenceSession(str(path), providers=[("CUDAExecutionProvider", options), "CPUExecutionProvider"])
    output = torch.empty_like(prepared(inputs))
    torch.cuda.synchronize()
    binding = hand.io_binding()
    numpy_dtype = {torch.float16: "float16", torch.float32: "float32"}
    binding.bind_input(
        hand.get_inputs()[0].name, "cuda", 0, numpy_dtype[inputs.dtype], tuple(inputs.shape), inputs.data_ptr()
    )
    binding.bind_output(
        hand.get_outputs()[0].name, "cuda", 0, numpy_dtype[output.dtype], tuple(output.shape), output.data_ptr()
    )
    return lambda: hand.run_with_iobinding(binding)


def _trt_call(session: Any, prepared: Any, inputs: torch.Tensor) -> tuple[Callable[[], object], Any]:
    """A second execution context of the same engine file, on its own stream (returned for the events)."""
    import tensorrt as trt

    from mlperf_track.runtimes._trt_build import make_logger
    from mlperf_track.runtimes._trt_model import torch_dtype

    path = session.config.cache_dir / "runtimes" / "tensorrt" / f"{prepared.tags['tensorrt.engine_key']}.engine"
    runtime = trt.Runtime(make_logger(trt))
    engine = runtime.deserialize_cuda_engine(path.read_bytes())
    context = engine.create_execution_context()
    names = [engine.get_tensor_name(index) for index in range(engine.num_io_tensors)]
    source = next(name for name in names if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT)
    context.set_input_shape(source, tuple(inputs.shape))
    context.set_tensor_address(source, inputs.data_ptr())
    keep = [runtime, engine, context]
    for name in names:
        if name != source:
            dtype = torch_dtype(trt, engine.get_tensor_dtype(name))
            buffer = torch.empty(tuple(context.get_tensor_shape(name)), dtype=dtype, device="cuda")
            context.set_tensor_address(name, buffer.data_ptr())
            keep.append(buffer)
    stream = torch.cuda.Stream()
    return (lambda: (keep, context.execute_async_v3(stream.cuda_stream))), stream


def _hand_p50(session: Any, case: CaseSpec, engine_ms: float) -> float:
    """The hand-written loop's median for ``case`` (see the module docstring for what each path runs)."""
    prepared = session.prepared_model(case)
    inputs = prepared.make_input(case.batch_size, seed=SEED)
    stream = None
    if case.device == "cpu":
        call = _eager_call(session, case, inputs) if case.runtime == "eager" else (lambda: prepared(inputs))
    elif case.runtime == "eager":
        call = _eager_call(session, case, inputs)
    elif case.runtime == "onnxruntime":
        call = _ort_call(session, prepared, inputs)
    elif case.runtime == "tensorrt":
        call, stream = _trt_call(session, prepared, inputs)
    else:
        call = lambda: prepared(inputs)  # noqa: E731 - compile: the package's compiled model
    iterations = 10 if case.device == "cpu" else min(200, max(30, round(1000 / max(engine_ms, 1e-3))))
    with precision_settings(case.precision, case.device), cpu_threads(case.num_threads):
        _warm(call, case.device, 0.0 if case.device == "cpu" else 0.3)
        if case.device == "cpu":
            return _host_loop(call, iterations)
        return _events_loop(call, iterations, stream)


def _row(check: Check, case: CaseSpec, outcome: Any, session: Any, note: str) -> Row:
    row = Row(check.label, case.batch_size, note=note)
    if outcome.error is not None:
        row.status = f"CRASH: {type(outcome.error).__name__}: {str(outcome.error).splitlines()[0][:160]}"
        return row
    metrics = outcome.result.metrics
    row.engine_ms, row.throughput = metrics[m.LATENCY_P50], metrics[m.THROUGHPUT]
    row.memory_mb = metrics.get(m.GPU_DEVICE_DELTA_PEAK, metrics.get(m.GPU_PEAK_RESERVED))
    row.power_w, row.joules = metrics.get(m.GPU_POWER_MEAN), metrics.get(m.GPU_ENERGY_PER_SAMPLE)
    if row.power_w is None and m.GPU_POWER_MEAN in outcome.result.notes:
        row.note = "; ".join(filter(None, [note, f"power: {outcome.result.notes[m.GPU_POWER_MEAN][:80]}"]))
    try:
        row.hand_ms = _hand_p50(session, case, row.engine_ms)
    except Exception as error:  # the hand loop's own failure is a crash of this path too
        row.status = f"CRASH (hand loop): {type(error).__name__}: {str(error).splitlines()[0][:160]}"
    return row


def run_check(check: Check, setting: Setting) -> list[Row]:
    """Every batch size of one path: the engine's measurement and the hand loop's."""
    started = time.perf_counter()
    adapted, skip, note = _adapt(check, setting.device)
    if skip is not None:
        return [Row(check.label, size, status=f"skipped: {skip}") for size in adapted.batch_sizes]
    try:
        session = _session(adapted, setting)
    except Exception as error:
        status = f"CRASH: {type(error).__name__}: {error}"
        return [Row(check.label, size, status=status) for size in adapted.batch_sizes]
    rows = []
    with session:
        cases = [case for case in session.plan() if case.variant == adapted.variant]
        for case in cases:
            rows.append(_row(check, case, session.run_case(case), session, note))
    logger.info("%s: %.1f s, %s", check.label, time.perf_counter() - started, [row.status for row in rows])
    return rows


def _cell(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: list[Row], dry_run: bool) -> None:
    """The one table (and the notes below it)."""
    header = f"{'path':<34}{'bs':>4}{'engine p50 ms':>15} {'hand p50 ms':>12} {'ratio':>8}{'img/s':>10}"
    print(header + f"{'mem MiB':>9}{'W':>7}{'J/img':>9}  status")
    for row in rows:
        print(
            f"{row.label:<34}{row.batch_size:>4}{_cell(row.engine_ms, '.3f'):>15} {_cell(row.hand_ms, '.3f'):>12} "
            f"{_cell(row.ratio, '.3f'):>8}{_cell(row.throughput, ',.0f'):>10}{_cell(row.memory_mb, ',.0f'):>9}"
            f"{_cell(row.power_w, '.0f'):>7}{_cell(row.joules, '.4f'):>9}  {row.status}"
        )
    for row in rows:
        if row.note:
            print(f"  note {row.label} bs{row.batch_size}: {row.note}")
    print(
        "memory: the device's used memory above the baseline taken before the case (else torch's reserved peak); "
        "power and J/img: NVML, the whole GPU over the timed window"
        + ("; dry run: ratios not judged" if dry_run else f"; ratio must be within 1 +- {TOLERANCE:.0%}")
    )


def failures(rows: list[Row], dry_run: bool) -> list[str]:
    """Why the check fails: crashes, and (on a GPU) ratios outside the tolerance."""
    found = [f"{row.label} bs{row.batch_size}: {row.status}" for row in rows if row.status.startswith("CRASH")]
    if not dry_run:
        found += [
            f"{row.label} bs{row.batch_size}: ratio {row.ratio:.3f}"
            for row in rows
            if row.ratio is not None and abs(row.ratio - 1) > TOLERANCE
        ]
    return found


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="the same plan on the CPU at tiny sizes")
    groups = sorted({check.group for check in PLAN})
    parser.add_argument("--paths", default=",".join(groups), help=f"comma-separated groups of {groups}")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    parser.add_argument("--verbose", action="store_true", help="log each path as it finishes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    wanted = {name.strip() for name in args.paths.split(",") if name.strip()}
    if not args.dry_run and not torch.cuda.is_available():
        print("no CUDA GPU is visible to torch: run on a machine with an NVIDIA GPU, or use --dry-run")
        return 2
    model, image_size = (f"{MODEL_PREFIX}tinycnn", 16) if args.dry_run else (f"{MODEL_PREFIX}resnet50", 224)
    register_model_source(_SeededSource())
    facts = host_tags()
    print(
        f"gpu_check {datetime.datetime.now().isoformat(timespec='seconds')} on {facts.get('hw.gpu', '?')} "
        f"(driver {facts.get('hw.gpu_driver', '-')}), torch {torch.__version__}, CUDA {torch.version.cuda}, "
        f"{model.removeprefix(MODEL_PREFIX)} at {image_size} px{' (dry run on the CPU)' if args.dry_run else ''}"
    )
    print("plan: " + "; ".join(f"{c.label} bs{'/'.join(map(str, c.batch_sizes))}" for c in PLAN if c.group in wanted))
    start, rows = time.perf_counter(), []
    with tempfile.TemporaryDirectory(prefix="mlperf_track-gpu-check-") as tmp:
        setting = Setting("cpu" if args.dry_run else "cuda", model, image_size, Path(tmp))
        for check in PLAN:
            if check.group in wanted:
                rows += run_check(check, setting)
    print_table(rows, args.dry_run)
    print(f"finished in {time.perf_counter() - start:.0f} s; mlflow imported: {'mlflow' in sys.modules}")
    if args.json is not None:
        args.json.write_text(json.dumps([{**row.__dict__, "ratio": row.ratio} for row in rows], indent=2))
    found = failures(rows, args.dry_run)
    for failure in found:
        print(f"FAIL {failure}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
