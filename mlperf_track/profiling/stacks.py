"""Folded call stacks from torch.profiler events.

torch 2.14's ``profile.export_stacks`` writes an empty file unless the experimental verbose config is set,
and when it works its frames are Python source lines without the operator hierarchy. So the stacks are
built here from the events themselves: every event knows its CPU parent (``evt.cpu_parent``), and with
``with_stack=True`` the Python frames (``nn.Module: Conv2d_0``, ``module.py(1787): _call_impl``) are events
too. A stack is the chain of kept ancestors of an event, from the step marker down, and its weight is the
event's self time, so operators are the leaves and a frame's width is the time spent inside it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from mlperf_track.errors import ConfigError

#: How much of the Python call stack to keep between the step marker and the operators.
PYTHON_FRAME_MODES: Final = ("modules", "all", "none")
#: Object addresses in Python frame names (``<built-in method numpy of Tensor object at 0x7f...>``).
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
#: What a stack is weighed by.
TIME_KINDS: Final = ("cpu", "device")


def _keep(event: Any, python_frames: str) -> bool:
    """Whether ``event`` becomes a frame; the time of a dropped one goes to its nearest kept ancestor."""
    if not event.is_python_function:
        return True
    if python_frames == "all":
        return True
    return python_frames == "modules" and str(event.name).startswith("nn.Module:")


def frame_name(event: Any) -> str:
    """The event's name, without object addresses (they differ between runs and clutter the graph)."""
    name = str(event.name)
    return _ADDRESS.sub("", name) if event.is_python_function else name


def _self_time(event: Any, time: str) -> float:
    """Self time in microseconds (clamped at zero: the profiler's bookkeeping can go slightly negative)."""
    if time == "device":
        if event.is_python_function:
            return 0.0
        value = float(getattr(event, "self_device_time_total", 0.0) or 0.0)
    else:
        value = float(event.self_cpu_time_total)
    return max(value, 0.0)


def fold_events(
    events: Iterable[Any],
    *,
    marker: str,
    time: str = "cpu",
    python_frames: str = "modules",
) -> dict[tuple[str, ...], float]:
    """Fold profiler events into ``stack -> self time`` (microseconds, summed over every step).

    Args:
        events: ``torch.profiler.profile(...).events()``.
        marker: Name of the ``record_function`` that wraps each profiled step; only events under it count,
            and stacks start below it.
        time: ``cpu`` (self CPU time) or ``device`` (self CUDA/accelerator time of the operators).
        python_frames: ``modules`` keeps ``nn.Module`` frames, ``all`` every Python frame, ``none`` only
            operators and ``record_function`` ranges.

    Returns:
        Self time per stack; the empty stack holds time spent in the marker itself.
    """
    if time not in TIME_KINDS:
        raise ConfigError("time", time, TIME_KINDS)
    if python_frames not in PYTHON_FRAME_MODES:
        raise ConfigError("python_frames", python_frames, PYTHON_FRAME_MODES)
    # id(event) -> kept frames below the marker, or None when the event is not under a marker.
    memo: dict[int, tuple[str, ...] | None] = {}
    folded: dict[tuple[str, ...], float] = {}
    for event in events:
        if not _on_host(event):
            continue  # device-side events (GPU annotations, kernels) reach their operator via its kernels
        stack = _stack(event, marker, python_frames, memo)
        if stack is None:
            continue
        weight = _self_time(event, time)
        if weight > 0:
            folded[stack] = folded.get(stack, 0.0) + weight
    return folded


def _on_host(event: Any) -> bool:
    """Whether the event ran on the CPU (device events would count a range twice) and synchronously."""
    return getattr(event.device_type, "name", "CPU") == "CPU" and not getattr(event, "is_async", False)


def _is_marker(event: Any, marker: str) -> bool:
    return not event.is_python_function and event.name == marker and _on_host(event)


def _stack(
    event: Any, marker: str, python_frames: str, memo: dict[int, tuple[str, ...] | None]
) -> tuple[str, ...] | None:
    """The kept frames from below the marker down to ``event`` (iterative, memoised per event)."""
    chain: list[Any] = []
    node = event
    base: tuple[str, ...] | None = None
    while node is not None:
        if id(node) in memo:
            base = memo[id(node)]
            break
        if _is_marker(node, marker):
            base = ()
            memo[id(node)] = base
            break
        chain.append(node)
        node = node.cpu_parent
    else:
        base = None
    for ancestor in reversed(chain):
        if base is not None and _keep(ancestor, python_frames):
            base = (*base, frame_name(ancestor))
        memo[id(ancestor)] = base
    return memo.get(id(event), base)


def unattributed_share(stacks: dict[tuple[str, ...], float]) -> float:
    """Share of the time spent in the step itself, outside every kept frame (0 when there is no time).

    With ``python_frames="modules"`` this is Python outside any ``nn.Module`` and operator: for a runtime
    that does its work outside PyTorch (ONNX Runtime, OpenVINO, TensorRT) it is most of the step.
    """
    total = sum(stacks.values())
    return stacks.get((), 0.0) / total if total > 0 else 0.0


def write_folded(path: Path, stacks: dict[tuple[str, ...], float], root: str) -> Path:
    """Write ``flamegraph.pl``/speedscope folded stacks (``a;b;c <integer nanoseconds>``), heaviest first."""
    lines = []
    for stack, value in sorted(stacks.items(), key=lambda item: -item[1]):
        nanoseconds = round(value * 1000)
        if nanoseconds > 0:
            frames = (root, *stack)
            lines.append(";".join(frame.replace(";", ":") for frame in frames) + f" {nanoseconds}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
