"""The CPU peak bound: operations per cycle by ISA and precision, and a maximum clock only from trusted drivers."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlperf_track.engine import cpu_peak as cp
from mlperf_track.engine.cpu_peak import CpuDescription, CpuPeak, cpu_peak, ops_per_cycle

X86 = "x86_64"


def _cpu(flags: set[str], arch: str = X86, ghz: float | None = 3.0, cpus: int = 4, sve: int = 0) -> CpuDescription:
    return CpuDescription(arch, frozenset(flags), ghz, "test", cpus, sve)


AVX2 = {"sse2", "avx", "avx2", "fma"}
AVX512 = AVX2 | {"avx512f"}


@pytest.mark.parametrize(
    ("flags", "precision", "ops"),
    [
        ({"sse2"}, "fp32", 16),
        (AVX2, "fp32", 32),
        (AVX512, "fp32", 64),
        (AVX512, "tf32", 64),
        (AVX512, "bf16", 64),  # no bf16 units: computed in fp32 vectors
        (AVX512 | {"avx512_bf16"}, "bf16", 128),
        (AVX512, "fp16", 64),
        (AVX512 | {"avx512_fp16"}, "fp16", 128),
        (AVX2, "int8", 128),
        (AVX512 | {"avx512_vnni"}, "int8", 256),
        (AVX512 | {"amx_bf16", "amx_int8", "amx_fp16"}, "bf16", 1024),
        (AVX512 | {"amx_bf16", "amx_int8", "amx_fp16"}, "int8", 2048),
        (AVX512 | {"amx_bf16", "amx_int8", "amx_fp16"}, "fp16", 1024),
    ],
)
def test_x86_ops_per_cycle(flags: set[str], precision: str, ops: int) -> None:
    found = ops_per_cycle(_cpu(flags), precision)
    assert found is not None and found[0] == ops


@pytest.mark.parametrize(
    ("flags", "sve", "precision", "ops"),
    [
        ({"asimd"}, 0, "fp32", 32),
        ({"asimd", "sve"}, 512, "fp32", 64),
        ({"asimd", "i8mm"}, 0, "int8", 256),
        ({"asimd", "asimddp"}, 0, "int8", 128),
        ({"asimd", "bf16"}, 0, "bf16", 128),
    ],
)
def test_arm_ops_per_cycle(flags: set[str], sve: int, precision: str, ops: int) -> None:
    found = ops_per_cycle(_cpu(flags, arch="aarch64", sve=sve), precision)
    assert found is not None and found[0] == ops


@pytest.mark.parametrize(
    ("cpu", "precision", "reason"),
    [
        (_cpu(AVX512), "fp8", "no CPU peak model for fp8"),
        (_cpu(set()), "fp32", "no CPU peak model for fp32 on x86_64"),
        (_cpu({"rv64"}, arch="riscv64"), "fp32", "on riscv64"),
        (_cpu(AVX512, ghz=None), "fp32", "maximum clock is unknown"),
    ],
)
def test_no_bound_means_a_reason(cpu: CpuDescription, precision: str, reason: str) -> None:
    found = cpu_peak(cpu, precision, None)
    assert isinstance(found, str) and reason in found


def test_peak_is_cores_times_ops_times_clock() -> None:
    found = cpu_peak(_cpu(AVX512, ghz=2.5, cpus=8), "fp32", 3)
    assert isinstance(found, CpuPeak)
    assert found.tflops == pytest.approx(3 * 64 * 2.5e9 / 1e12)
    assert found.basis == (
        "upper bound: 3 cores x 64 ops/cycle (avx512f FMA (2 pipes x 16 fp32 lanes x 2 FLOPs)) x 2.5 GHz"
    )


def _fake_sysfs(root: Path, cpus: dict[int, tuple[str, str]], boost: str | None = None) -> None:
    for cpu, (khz, driver) in cpus.items():
        folder = root / f"cpu{cpu}" / "cpufreq"
        folder.mkdir(parents=True)
        (folder / "cpuinfo_max_freq").write_text(khz + "\n")
        (folder / "scaling_driver").write_text(driver + "\n")
    if boost is not None:
        (root / "cpufreq").mkdir(exist_ok=True)
        (root / "cpufreq" / "boost").write_text(boost + "\n")


def test_clock_from_a_boost_aware_driver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_sysfs(tmp_path, {0: ("3700000", "amd-pstate-epp"), 1: ("3500000", "amd-pstate-epp")})
    monkeypatch.setattr(cp, "_SYS_CPU", tmp_path)
    assert cp._max_clock_ghz([0, 1]) == (3.7, "cpufreq cpuinfo_max_freq (amd-pstate-epp)")


def test_acpi_cpufreq_with_boost_is_not_a_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_sysfs(tmp_path, {0: ("2450000", "acpi-cpufreq")}, boost="1")
    monkeypatch.setattr(cp, "_SYS_CPU", tmp_path)
    ghz, why = cp._max_clock_ghz([0])
    assert ghz is None and "acpi-cpufreq may report a maximum below the boost clock" in why


def test_acpi_cpufreq_without_boost_is_a_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_sysfs(tmp_path, {0: ("2450000", "acpi-cpufreq")}, boost="0")
    monkeypatch.setattr(cp, "_SYS_CPU", tmp_path)
    assert cp._max_clock_ghz([0])[0] == pytest.approx(2.45)


def test_no_cpufreq_as_in_a_vm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cp, "_SYS_CPU", tmp_path)
    assert cp._max_clock_ghz([0]) == (None, "no cpufreq maximum for cpu0, as in most virtual machines")


def test_this_cpu_reads_the_machine() -> None:
    here = cp.this_cpu()
    assert here.cpus >= 1 and here.arch
    assert here.max_ghz is None or here.max_ghz > 0
    assert here.clock_source
