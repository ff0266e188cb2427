"""Achieved compute and its fraction of the device's peak.

``compute/achieved_tflops = flops_per_sample * samples_per_s / 1e12``. The peak comes from a table of dense
(not 2:4-sparse) datasheet figures for known NVIDIA GPUs, by precision; fp32 means the CUDA-core figure
because the engine pins TF32 off for fp32. Elsewhere (CPUs, unknown GPUs, a precision missing from the
table) the peak is calibrated once per process with a square ``torch.matmul`` in the case's dtype, and the
tags ``compute.peak_source`` / ``compute.peak_basis`` say so: a calibrated peak is what this machine achieves
on a large matmul right now, not a datasheet number.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

import torch

from mlperf_track import metrics as m
from mlperf_track.engine.clock import PerfCounterClock
from mlperf_track.engine.device import is_cuda, synchronize
from mlperf_track.engine.precision import dtype_for, precision_settings

_H100_SXM = {"fp32": 67.0, "tf32": 494.7, "fp16": 989.4, "bf16": 989.4, "fp8": 1978.9, "int8": 1978.9}
_H100_NVL = {"fp32": 60.0, "tf32": 417.5, "fp16": 835.5, "bf16": 835.5, "fp8": 1670.5, "int8": 1670.5}
_A100 = {"fp32": 19.5, "tf32": 156.0, "fp16": 312.0, "bf16": 312.0, "int8": 624.0}

#: (pattern on torch.cuda.get_device_name(), dense peak TFLOP/s by precision), most specific first.
PEAK_TFLOPS: tuple[tuple[str, dict[str, float]], ...] = (
    (r"\bGH200\b", _H100_SXM),
    (r"\bH200 NVL\b", _H100_NVL),
    (r"\bH200\b", _H100_SXM),
    (r"\bH100 NVL\b", _H100_NVL),
    (r"\bH100 PCIe\b", {"fp32": 51.0, "tf32": 378.0, "fp16": 756.5, "bf16": 756.5, "fp8": 1513.0, "int8": 1513.0}),
    (r"\bH100\b", _H100_SXM),
    (r"\bA100\b", _A100),
    (r"\bL40S\b", {"fp32": 91.6, "tf32": 183.0, "fp16": 362.05, "bf16": 362.05, "fp8": 733.0, "int8": 733.0}),
    (r"\bL40\b", {"fp32": 90.5, "tf32": 90.5, "fp16": 181.0, "bf16": 181.0, "fp8": 362.0, "int8": 362.0}),
    (r"\bL4\b", {"fp32": 30.3, "tf32": 60.0, "fp16": 121.0, "bf16": 121.0, "fp8": 242.5, "int8": 242.5}),
    (r"\bA10\b", {"fp32": 31.2, "tf32": 62.5, "fp16": 125.0, "bf16": 125.0, "int8": 250.0}),
    (r"\bT4\b", {"fp32": 8.1, "fp16": 65.0, "int8": 130.0}),
    (r"\bV100S\b", {"fp32": 16.4, "fp16": 130.0}),
    (r"\bV100\b.*PCIE", {"fp32": 14.0, "fp16": 112.0}),
    (r"\bV100\b", {"fp32": 15.7, "fp16": 125.0}),
    (r"RTX 4090(?! D)", {"fp32": 82.6, "tf32": 82.6, "fp16": 165.2, "bf16": 165.2, "fp8": 330.3, "int8": 660.6}),
    (r"RTX 3090(?! Ti)", {"fp32": 35.6, "tf32": 35.6, "fp16": 71.0, "bf16": 71.0, "int8": 284.0}),
)


def table_peak_tflops(device_name: str, precision: str) -> float | None:
    """The dense datasheet peak for ``device_name`` at ``precision``, or ``None`` when not in the table."""
    for pattern, peaks in PEAK_TFLOPS:
        if re.search(pattern, device_name, flags=re.IGNORECASE):
            return peaks.get(precision)
    return None


def _matmul_size(device: str) -> int:
    return 4096 if is_cuda(device) else 512


@functools.cache
def _calibrate(device: str, precision: str, size: int, min_time_s: float, key: str) -> float | None:
    """Best TFLOP/s of ``size``-square matmuls over about ``min_time_s``; ``key`` separates cache entries."""
    dtype = dtype_for(precision)
    if dtype is None:
        return None
    clock = PerfCounterClock()
    with torch.no_grad(), precision_settings(precision, device):
        a = torch.randn(size, size, device=device).to(dtype)
        b = torch.randn(size, size, device=device).to(dtype)
        for _ in range(2):
            torch.matmul(a, b)
        synchronize(device)
        best_ns, start = None, clock.now_ns()
        while best_ns is None or clock.now_ns() - start < min_time_s * 1e9:
            t0 = clock.now_ns()
            torch.matmul(a, b)
            synchronize(device)
            elapsed = clock.now_ns() - t0
            best_ns = elapsed if best_ns is None else min(best_ns, elapsed)
    return 2.0 * size**3 / (max(best_ns, 1) / 1e9) / 1e12


def calibrate_peak_tflops(
    device: str, precision: str, size: int | None = None, min_time_s: float = 0.2
) -> float | None:
    """Measure (once per process, device, precision and thread count) the best matmul TFLOP/s.

    Returns:
        The calibrated peak, or ``None`` for precisions without a float dtype (int8, fp8).
    """
    key = torch.cuda.get_device_name() if is_cuda(device) else f"threads={torch.get_num_threads()}"
    return _calibrate(device, precision, size or _matmul_size(device), min_time_s, key)


def _peak(
    device: str, precision: str, calibrate: Callable[[str, str], float | None]
) -> tuple[float | None, dict[str, str], str | None]:
    """The peak, its tags, or why there is none."""
    if is_cuda(device):
        name = torch.cuda.get_device_name()
        peak = table_peak_tflops(name, precision)
        if peak is not None:
            return (
                peak,
                {"compute.peak_source": "table", "compute.peak_basis": f"{name} {precision} dense datasheet"},
                None,
            )
    else:
        name = "CPU"
    calibrated = calibrate(device, precision)
    if calibrated is None:
        return None, {}, f"no peak known for {precision} on {name}: calibration runs float matmuls only"
    size = _matmul_size(device)
    threads = "" if is_cuda(device) else f" on {torch.get_num_threads()} threads"
    basis = f"best {size}x{size} torch.matmul in {precision}{threads}, measured in this process"
    return calibrated, {"compute.peak_source": "calibration", "compute.peak_basis": basis}, None


def compute_metrics(
    flops_per_sample: float | None,
    samples_per_s: float | None,
    device: str,
    precision: str,
    *,
    calibrate: Callable[[str, str], float | None] = calibrate_peak_tflops,
) -> tuple[dict[str, float], dict[str, str], dict[str, str]]:
    """Achieved TFLOP/s and the fraction of peak.

    Args:
        flops_per_sample: Forward FLOPs of one sample (``model/flops_per_sample``), or ``None``.
        samples_per_s: Measured throughput, or ``None``.
        device: ``cpu`` or ``cuda``.
        precision: The case's precision.
        calibrate: Measures a peak when the table has none (injectable for tests).

    Returns:
        ``(metrics, notes, tags)``; tags include ``compute.peak_source`` (``table`` or ``calibration``),
        ``compute.peak_basis`` and ``compute.peak_tflops``.
    """
    if not flops_per_sample or not samples_per_s:
        missing = "model/flops_per_sample" if not flops_per_sample else "a throughput"
        reason = f"needs {missing}, which was not measured"
        return {}, {m.ACHIEVED_TFLOPS: reason, m.PEAK_FRACTION: reason}, {}
    achieved = flops_per_sample * samples_per_s / 1e12
    metrics = {m.ACHIEVED_TFLOPS: achieved}
    peak, tags, why_not = _peak(device, precision, calibrate)
    if peak is None or peak <= 0:
        return metrics, {m.PEAK_FRACTION: why_not or "the calibrated peak was not positive"}, tags
    metrics[m.PEAK_FRACTION] = achieved / peak
    tags["compute.peak_tflops"] = f"{peak:.4g}"
    return metrics, {}, tags
