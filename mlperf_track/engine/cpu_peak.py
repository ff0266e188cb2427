"""An upper bound on a CPU's arithmetic rate, from what the hardware can do, never from a measurement.

``peak = cores in use x operations per cycle per core x maximum clock``, where

* cores in use: the case's thread count, at most the CPUs this process may run on (``sched_getaffinity``);
  every logical CPU is counted as a full core, which only loosens the bound on SMT machines;
* operations per cycle: by instruction set (``/proc/cpuinfo`` flags) and precision, counting a fused
  multiply-add as 2 operations, with 2 FMA pipes per core, the most any x86 core issues per cycle (Intel
  server cores with two AVX-512 FMA units, AMD Zen 2-5); per 512-bit vector that is 64 fp32 FLOPs, 128 bf16
  (``avx512_bf16`` dot products), 128 fp16 (``avx512_fp16``) and 256 int8 operations (two 8-bit MACs per
  16-bit lane, with or without VNNI); AMX tiles: 1024 bf16/fp16 FLOPs and 2048 int8 operations per cycle
  (Intel's figures for Sapphire Rapids). On aarch64: 4 x 128-bit NEON FMA pipes (or 2 x the SVE vector
  length, if larger), with ``bf16`` (BFMMLA, 4x fp32) and ``i8mm`` (SMMLA, 8x fp32) matrix instructions;
* maximum clock: ``cpuinfo_max_freq`` from cpufreq, trusted only from drivers whose maximum includes boost
  (``intel_pstate``, ``amd-pstate``, CPPC, device-tree tables); ``acpi-cpufreq`` with boost enabled reports
  the base clock, which is not an upper bound.

Every factor is an over-estimate where the hardware is not known exactly, so the bound stays a bound. When a
factor is unknown (no cpufreq, as in most virtual machines; an unknown ISA; fp8) there is no bound, and the
caller leaves ``compute/peak_fraction`` out with the returned reason.
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass
from pathlib import Path

#: cpufreq drivers whose ``cpuinfo_max_freq`` is the highest (boost) clock.
BOOST_AWARE_DRIVERS = frozenset(
    {"intel_pstate", "intel_cpufreq", "amd-pstate", "amd-pstate-epp", "amd_pstate", "cppc_cpufreq", "cpufreq-dt"}
)
#: FMA pipes per core assumed (the most any x86 core has).
X86_FMA_PIPES = 2
_SYS_CPU = Path("/sys/devices/system/cpu")


@dataclass(frozen=True)
class CpuDescription:
    """What the peak is derived from (injectable in tests: fakes stand for hardware that is absent).

    Attributes:
        arch: ``platform.machine()`` (``x86_64``, ``aarch64``, ...).
        flags: ISA feature flags (``/proc/cpuinfo`` ``flags`` on x86, ``Features`` on Arm).
        max_ghz: The highest clock any core may run at, or ``None`` when not known to be an upper bound.
        clock_source: Where ``max_ghz`` came from, or why it is unknown.
        cpus: Logical CPUs this process may run on.
        sve_bits: SVE vector length in bits (Arm), 0 when absent.
    """

    arch: str
    flags: frozenset[str]
    max_ghz: float | None
    clock_source: str
    cpus: int
    sve_bits: int = 0


@dataclass(frozen=True)
class CpuPeak:
    """A peak and how it was derived."""

    tflops: float
    basis: str


def _x86_ops_per_cycle(flags: frozenset[str], precision: str) -> tuple[float, str] | None:
    bits = 512 if "avx512f" in flags else 256 if "avx" in flags else 128 if "sse2" in flags else 0
    if not bits:
        return None
    fp32 = X86_FMA_PIPES * (bits // 32) * 2
    isa = {512: "avx512f", 256: "avx2/avx", 128: "sse2"}[bits]
    if precision == "int8":
        if "amx_int8" in flags:
            return 2048.0, "amx_int8 tiles (2048 ops/cycle)"
        return 4.0 * fp32, f"{isa} 8-bit MACs ({X86_FMA_PIPES} pipes x {bits // 8} lanes x 2 ops)"
    if precision == "bf16":
        if "amx_bf16" in flags:
            return 1024.0, "amx_bf16 tiles (1024 FLOPs/cycle)"
        if "avx512_bf16" in flags:
            return 2.0 * fp32, f"bf16 dot products ({X86_FMA_PIPES} pipes x {bits // 16} lanes x 2 FLOPs)"
    if precision == "fp16":
        if "amx_fp16" in flags:
            return 1024.0, "amx_fp16 tiles (1024 FLOPs/cycle)"
        if "avx512_fp16" in flags:
            return 2.0 * fp32, f"avx512_fp16 ({X86_FMA_PIPES} pipes x 32 lanes x 2 FLOPs)"
    # fp32, tf32 and half precisions without native units compute in fp32 vectors.
    return float(fp32), f"{isa} FMA ({X86_FMA_PIPES} pipes x {bits // 32} fp32 lanes x 2 FLOPs)"


def _arm_ops_per_cycle(flags: frozenset[str], sve_bits: int, precision: str) -> tuple[float, str] | None:
    if "asimd" not in flags and "sve" not in flags:
        return None
    fma_bits = max(4 * 128, 2 * sve_bits)
    fp32 = fma_bits // 32 * 2
    basis = f"{fma_bits} FMA bits/cycle ({'2 x SVE ' + str(sve_bits) if 2 * sve_bits > 512 else '4 x 128 NEON'})"
    if precision == "int8":
        factor = 8 if "i8mm" in flags else 4  # SMMLA; SDOT (or widening multiplies) otherwise
        return float(factor * fp32), f"{basis}, int8 x{factor}"
    if precision == "bf16" and "bf16" in flags:
        return float(4 * fp32), f"{basis}, BFMMLA x4"
    if precision == "fp16" and "fphp" in flags:
        return float(2 * fp32), f"{basis}, fp16 x2"
    return float(fp32), f"{basis}, fp32"


def ops_per_cycle(cpu: CpuDescription, precision: str) -> tuple[float, str] | None:
    """Operations per cycle per core at ``precision`` (an upper bound) and its basis, or ``None`` if unknown."""
    if precision == "fp8":
        return None
    if cpu.arch in ("x86_64", "AMD64", "amd64", "i686"):
        return _x86_ops_per_cycle(cpu.flags, precision)
    if cpu.arch in ("aarch64", "arm64"):
        return _arm_ops_per_cycle(cpu.flags, cpu.sve_bits, precision)
    return None


def cpu_peak(cpu: CpuDescription, precision: str, num_threads: int | None) -> CpuPeak | str:
    """The peak TFLOP/s (TOP/s for int8) for ``num_threads`` threads, or why there is none.

    Args:
        cpu: The hardware.
        precision: The case's precision.
        num_threads: The case's thread count; ``None`` (the runtime's default) counts every usable CPU.
    """
    per_cycle = ops_per_cycle(cpu, precision)
    if per_cycle is None:
        return f"no CPU peak model for {precision} on {cpu.arch}"
    if cpu.max_ghz is None:
        return f"the CPU's maximum clock is unknown ({cpu.clock_source}), so no upper bound on its peak is known"
    cores = min(num_threads, cpu.cpus) if num_threads else cpu.cpus
    ops, isa = per_cycle
    tflops = cores * ops * cpu.max_ghz * 1e9 / 1e12
    return CpuPeak(tflops, f"upper bound: {cores} cores x {ops:g} ops/cycle ({isa}) x {cpu.max_ghz:.3g} GHz")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return None


def _max_clock_ghz(cpus: list[int]) -> tuple[float | None, str]:
    """The highest ``cpuinfo_max_freq`` of ``cpus`` when its driver reports boost clocks, else why not."""
    clocks, drivers = [], set()
    for cpu in cpus:
        folder = _SYS_CPU / f"cpu{cpu}" / "cpufreq"
        value, driver = _read(folder / "cpuinfo_max_freq"), _read(folder / "scaling_driver")
        if value is None or not value.isdigit():
            return None, f"no cpufreq maximum for cpu{cpu}, as in most virtual machines"
        clocks.append(int(value) / 1e6)  # kHz -> GHz
        drivers.add(driver or "unknown")
    boost = _read(_SYS_CPU / "cpufreq" / "boost")
    trusted = all(d in BOOST_AWARE_DRIVERS or (d == "acpi-cpufreq" and boost in (None, "0")) for d in drivers)
    if not trusted:
        return None, f"cpufreq driver {', '.join(sorted(drivers))} may report a maximum below the boost clock"
    return max(clocks), f"cpufreq cpuinfo_max_freq ({', '.join(sorted(drivers))})"


def _flags() -> frozenset[str]:
    text = _read(Path("/proc/cpuinfo")) or ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


@functools.cache
def _this_cpu() -> CpuDescription:
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    max_ghz, source = _max_clock_ghz(cpus)
    sve = _read(Path("/proc/sys/abi/sve_default_vector_length"))
    return CpuDescription(
        arch=platform.machine(),
        flags=_flags(),
        max_ghz=max_ghz,
        clock_source=source,
        cpus=len(cpus),
        sve_bits=int(sve) * 8 if sve and sve.isdigit() else 0,
    )


def this_cpu() -> CpuDescription:
    """This machine's CPU as seen by this process (read once per process; affinity read each call)."""
    described = _this_cpu()
    if hasattr(os, "sched_getaffinity"):
        cpus = len(os.sched_getaffinity(0))
        if cpus != described.cpus:
            return CpuDescription(**{**described.__dict__, "cpus": cpus})
    return described
