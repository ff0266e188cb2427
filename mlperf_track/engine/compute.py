"""Achieved compute and its fraction of the device's peak, where the peak is a true upper bound.

``compute/achieved_tflops = flops_per_sample * samples_per_s / 1e12``. ``compute/peak_fraction`` divides it by
a peak that no run can exceed: on NVIDIA GPUs the dense (not 2:4-sparse) datasheet figure by precision (fp32
means the CUDA-core figure because the engine pins TF32 off for fp32); on CPUs the bound derived from the
hardware in :mod:`mlperf_track.engine.cpu_peak` (cores in use x operations per cycle by ISA and precision x
maximum clock). Where no bound is known (an unknown GPU, a CPU whose maximum clock is hidden, fp8 on a CPU)
the fraction is left out with a note. A fraction above 1 cannot be reported: if the achieved rate ever
exceeds the bound, the inputs contradict the hardware (the FLOP count overstates the work the runtime did, or
the runtime computed in a lower precision than the case's), and the fraction is left out with a note saying
so rather than clamped. The tags ``compute.peak_source`` and ``compute.peak_basis`` say how the peak was
derived. (A measured matmul rate is not a peak: runtimes beat ``torch.matmul``, which gave fractions of 1.12.)
"""

from __future__ import annotations

import re

import torch

from mlperf_track import metrics as m
from mlperf_track.engine.cpu_peak import CpuDescription, CpuPeak, cpu_peak, this_cpu
from mlperf_track.engine.device import is_cuda

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


def _gpu_peak(precision: str) -> tuple[float | None, dict[str, str], str | None]:
    name = torch.cuda.get_device_name()
    peak = table_peak_tflops(name, precision)
    if peak is None:
        return None, {}, f"no dense datasheet peak for {name} at {precision} in the table"
    return peak, {"compute.peak_source": "table", "compute.peak_basis": f"{name} {precision} dense datasheet"}, None


def _peak(
    device: str, precision: str, num_threads: int | None, cpu: CpuDescription | None
) -> tuple[float | None, dict[str, str], str | None]:
    """The peak, its tags, or why there is none."""
    if is_cuda(device):
        return _gpu_peak(precision)
    derived = cpu_peak(cpu or this_cpu(), precision, num_threads)
    if not isinstance(derived, CpuPeak):
        return None, {}, derived
    return derived.tflops, {"compute.peak_source": "hardware", "compute.peak_basis": derived.basis}, None


def compute_metrics(
    flops_per_sample: float | None,
    samples_per_s: float | None,
    device: str,
    precision: str,
    *,
    num_threads: int | None = None,
    cpu: CpuDescription | None = None,
) -> tuple[dict[str, float], dict[str, str], dict[str, str]]:
    """Achieved TFLOP/s and the fraction of the peak (in (0, 1], or absent with a note).

    Args:
        flops_per_sample: Forward FLOPs of one sample (``model/flops_per_sample``), or ``None``.
        samples_per_s: Measured throughput, or ``None``.
        device: ``cpu`` or ``cuda``.
        precision: The case's precision.
        num_threads: The case's CPU thread count (``None``: the runtime's default, every usable CPU counted).
        cpu: The CPU to derive the peak for (default: this machine; tests inject one).

    Returns:
        ``(metrics, notes, tags)``; tags include ``compute.peak_source`` (``table`` or ``hardware``),
        ``compute.peak_basis`` and ``compute.peak_tflops`` when a peak is known.
    """
    if not flops_per_sample or not samples_per_s:
        missing = "model/flops_per_sample" if not flops_per_sample else "a throughput"
        reason = f"needs {missing}, which was not measured"
        return {}, {m.ACHIEVED_TFLOPS: reason, m.PEAK_FRACTION: reason}, {}
    achieved = flops_per_sample * samples_per_s / 1e12
    metrics = {m.ACHIEVED_TFLOPS: achieved}
    peak, tags, why_not = _peak(device, precision, num_threads, cpu)
    if peak is None or peak <= 0:
        return metrics, {m.PEAK_FRACTION: why_not or "the peak is not positive"}, tags
    tags["compute.peak_tflops"] = f"{peak:.4g}"
    if achieved > peak:
        contradiction = (
            f"achieved {achieved:.4g} TFLOP/s exceeds the upper bound {peak:.4g} ({tags['compute.peak_basis']}): "
            f"the FLOP count overstates the work the runtime did, or it computed below {precision}; "
            "no fraction is reported"
        )
        return metrics, {m.PEAK_FRACTION: contradiction}, tags
    metrics[m.PEAK_FRACTION] = achieved / peak
    return metrics, {}, tags
