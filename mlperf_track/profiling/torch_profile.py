"""Profile a prepared model with torch.profiler: trace, flame graph, top operators and Python overhead."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlperf_track.errors import ConfigError, MeasurementError
from mlperf_track.profiling.flamegraph import write_flamegraph
from mlperf_track.profiling.python_profile import profile_python
from mlperf_track.profiling.stacks import fold_events, unattributed_share, write_folded
from mlperf_track.profiling.top_ops import top_ops_markdown
from mlperf_track.runtimes.base import PreparedModel

logger = logging.getLogger(__name__)

#: Share of a step outside every PyTorch module and operator above which the flame graph shows Python frames.
OPAQUE_SHARE = 0.5
#: Note written when most of the runtime's work is invisible to PyTorch's operator dispatcher.
OPAQUE_NOTE = (
    "Most of each step ran outside PyTorch modules and operators: this runtime executes outside PyTorch "
    "(ONNX Runtime, OpenVINO, TensorRT), so the flame graph shows the Python call stack instead; "
    "use the runtime's own profiler for per-layer times."
)


def profile_prepared(
    prepared: PreparedModel,
    inputs: Any,
    *,
    device: str,
    output_dir: Path,
    steps: int = 5,
    label: str = "case",
    python_profile: bool = True,
) -> dict[str, Path]:
    """Profile ``prepared(inputs)`` and write the files that explain where its time goes.

    One warm-up step runs under the profiler's schedule before ``steps`` recorded steps, each wrapped in a
    ``record_function(label)`` range (and synchronised on CUDA). Activities are CPU, plus CUDA when ``device``
    is ``cuda``; shapes, memory, FLOPs and Python stacks are recorded.

    Args:
        prepared: The model as the runtime prepared it.
        inputs: One batch from ``prepared.make_input``.
        device: ``cpu`` or ``cuda``.
        output_dir: Directory for the files (created when missing).
        steps: Recorded steps.
        label: Name of the case; the root frame of the flame graph and the title of every file.
        python_profile: Also write cProfile statistics and a pyinstrument page (Python-side overhead).

    Returns:
        Files by artifact name: ``trace.json`` (Chrome/Perfetto trace), ``flamegraph.svg`` (weighed by CUDA
        time on GPU, else CPU time), ``flamegraph_cpu.svg`` (GPU only), ``stacks.txt`` (folded stacks in
        nanoseconds), ``top_ops.md``, and with ``python_profile`` ``python.prof``, ``python_stats.txt`` and
        ``python_profile.html`` (when pyinstrument is installed).

    Raises:
        ConfigError: ``steps`` is not positive or ``device`` is unknown.
        MeasurementError: The model failed while being profiled.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
        raise ConfigError("steps", steps, "a positive integer")
    if device not in ("cpu", "cuda"):
        raise ConfigError("device", device, ("cpu", "cuda"))
    output_dir.mkdir(parents=True, exist_ok=True)
    step = _step_function(prepared, inputs, device)
    try:
        prof = _record(step, device, steps, label)
    except Exception as error:
        raise MeasurementError(f"profiling {label} failed: {type(error).__name__}: {error}") from error
    files = {"trace.json": output_dir / "trace.json"}
    prof.export_chrome_trace(str(files["trace.json"]))
    files.update(_write_stack_files(prof, device, steps, label, output_dir))
    if python_profile:
        files.update(profile_python(step, steps=steps, output_dir=output_dir, title=label))
    logger.info("profiled %s: %s", label, ", ".join(sorted(files)))
    return files


def _step_function(prepared: PreparedModel, inputs: Any, device: str) -> Callable[[], None]:
    import torch

    def step() -> None:
        prepared(inputs)
        if device == "cuda":
            torch.cuda.synchronize()

    return step


def _record(step: Callable[[], None], device: str, steps: int, label: str) -> Any:
    """Run one warm-up and ``steps`` recorded steps under torch.profiler; return the finished profiler."""
    from torch.profiler import ProfilerActivity, profile, record_function, schedule

    activities = [ProfilerActivity.CPU]
    if device == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(
        activities=activities,
        schedule=schedule(wait=0, warmup=1, active=steps, repeat=1),
        record_shapes=True,
        profile_memory=True,
        with_stack=True,
        with_flops=True,
    ) as prof:
        for _ in range(steps + 1):
            with record_function(label):
                step()
            prof.step()
    return prof


def _write_stack_files(prof: Any, device: str, steps: int, label: str, output_dir: Path) -> dict[str, Path]:
    """Flame graph(s), folded stacks and the top-operator table."""
    events = prof.events()
    cpu_stacks = fold_events(events, marker=label, time="cpu")
    notes: list[str] = []
    if unattributed_share(cpu_stacks) > OPAQUE_SHARE:
        notes.append(OPAQUE_NOTE)
        cpu_stacks = fold_events(events, marker=label, time="cpu", python_frames="all")
    per_step = 1.0 / (1000.0 * steps)  # microseconds summed over the steps -> milliseconds per step

    def flamegraph(name: str, stacks: dict[tuple[str, ...], float], what: str, measure: str) -> Path:
        return write_flamegraph(
            output_dir / name,
            stacks,
            title=f"{label}: {what} time by operator",
            root_name=label,
            unit="ms/step",
            scale=per_step,
            subtitle=f"{measure}, averaged over {steps} step(s); hover for times, click a frame to zoom",
        )

    files: dict[str, Path] = {}
    cpu_measure = "self CPU time"
    if device == "cuda":
        device_stacks = fold_events(events, marker=label, time="device")
        files["flamegraph.svg"] = flamegraph("flamegraph.svg", device_stacks, "CUDA", "self CUDA time of the kernels")
        files["flamegraph_cpu.svg"] = flamegraph("flamegraph_cpu.svg", cpu_stacks, "CPU", cpu_measure)
    else:
        files["flamegraph.svg"] = flamegraph("flamegraph.svg", cpu_stacks, "CPU", cpu_measure)
    files["stacks.txt"] = write_folded(output_dir / "stacks.txt", cpu_stacks, root=label)
    markdown = top_ops_markdown(
        prof.key_averages(),
        prof.key_averages(group_by_input_shape=True),
        marker=label,
        steps=steps,
        device_time=device == "cuda",
        title=f"Top operators: {label}",
        notes=notes,
    )
    files["top_ops.md"] = output_dir / "top_ops.md"
    files["top_ops.md"].write_text(markdown, encoding="utf-8")
    return files
