"""Achieved TFLOP/s and a peak fraction that cannot exceed 1: datasheet table on GPUs, a hardware bound on CPUs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlperf_track import metrics as m
from mlperf_track.engine.compute import compute_metrics, table_peak_tflops
from mlperf_track.engine.cpu_peak import CpuDescription, cpu_peak, this_cpu
from mlperf_track.engine.facts import model_facts
from mlperf_track.engine.measure import measure_callable
from mlperf_track.spec import PRECISIONS, TimingConfig

#: An AVX-512 CPU like the project's CI machine, with its maximum clock known (as on bare metal).
AVX512 = CpuDescription(
    arch="x86_64",
    flags=frozenset({"sse2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni"}),
    max_ghz=3.7,
    clock_source="test",
    cpus=2,
)


@pytest.mark.parametrize(
    ("name", "precision", "peak"),
    [
        ("NVIDIA H100 80GB HBM3", "bf16", 989.4),
        ("NVIDIA H100 PCIe", "fp32", 51.0),
        ("NVIDIA H100 NVL", "fp8", 1670.5),
        ("NVIDIA H200", "tf32", 494.7),
        ("NVIDIA GH200 480GB", "fp32", 67.0),
        ("NVIDIA A100-SXM4-80GB", "tf32", 156.0),
        ("NVIDIA A10", "fp16", 125.0),
        ("NVIDIA L40S", "int8", 733.0),
        ("NVIDIA L4", "fp32", 30.3),
        ("Tesla T4", "fp16", 65.0),
        ("Tesla V100-PCIE-16GB", "fp16", 112.0),
        ("NVIDIA GeForce RTX 4090", "bf16", 165.2),
    ],
)
def test_peak_table(name: str, precision: str, peak: float) -> None:
    assert table_peak_tflops(name, precision) == peak


@pytest.mark.parametrize(
    ("name", "precision"), [("NVIDIA A10G", "fp32"), ("Tesla T4", "bf16"), ("NVIDIA A100-PCIE-40GB", "fp8")]
)
def test_peak_table_misses(name: str, precision: str) -> None:
    assert table_peak_tflops(name, precision) is None


def test_achieved_and_fraction_from_the_hardware_bound() -> None:
    # 2 cores x 64 fp32 FLOPs/cycle x 3.7 GHz = 0.4736 TFLOP/s
    metrics, notes, tags = compute_metrics(4e9, 50.0, "cpu", "fp32", cpu=AVX512)
    assert metrics[m.ACHIEVED_TFLOPS] == pytest.approx(0.2)
    assert metrics[m.PEAK_FRACTION] == pytest.approx(0.2 / 0.4736)
    assert tags["compute.peak_source"] == "hardware" and tags["compute.peak_tflops"] == "0.4736"
    assert tags["compute.peak_basis"].startswith("upper bound: 2 cores x 64 ops/cycle (avx512f FMA")
    assert notes == {}


def test_the_case_thread_count_sets_the_cores_in_use() -> None:
    _, _, one = compute_metrics(4e9, 10.0, "cpu", "fp32", num_threads=1, cpu=AVX512)
    _, _, many = compute_metrics(4e9, 10.0, "cpu", "fp32", num_threads=64, cpu=AVX512)
    assert float(one["compute.peak_tflops"]) == pytest.approx(0.2368)
    assert float(many["compute.peak_tflops"]) == pytest.approx(0.4736)  # never more cores than the process has


def test_missing_inputs_give_notes() -> None:
    metrics, notes, _ = compute_metrics(None, 500.0, "cpu", "fp32", cpu=AVX512)
    assert metrics == {} and "flops_per_sample" in notes[m.ACHIEVED_TFLOPS] and m.PEAK_FRACTION in notes


def test_unknown_clock_leaves_the_fraction_out() -> None:
    vm = CpuDescription(AVX512.arch, AVX512.flags, None, "no cpufreq maximum for cpu0", cpus=2)
    metrics, notes, tags = compute_metrics(1e9, 100.0, "cpu", "fp32", cpu=vm)
    assert m.ACHIEVED_TFLOPS in metrics and m.PEAK_FRACTION not in metrics
    assert "maximum clock is unknown (no cpufreq maximum for cpu0)" in notes[m.PEAK_FRACTION]
    assert "compute.peak_tflops" not in tags


def test_a_rate_above_the_bound_is_a_contradiction_not_a_fraction() -> None:
    metrics, notes, _ = compute_metrics(1e12, 1.0, "cpu", "fp32", cpu=AVX512)  # 1 TFLOP/s > 0.47
    assert m.PEAK_FRACTION not in metrics and metrics[m.ACHIEVED_TFLOPS] == pytest.approx(1.0)
    assert "exceeds the upper bound" in notes[m.PEAK_FRACTION] and "FLOP count" in notes[m.PEAK_FRACTION]


def test_property_no_input_gives_a_fraction_above_one() -> None:
    """Over random FLOPs, throughputs, thread counts, CPUs and precisions: in (0, 1], or absent with a note."""
    rng = np.random.default_rng(0)
    flag_sets = [
        {"sse2"},
        {"sse2", "avx", "avx2", "fma"},
        {"sse2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx512_fp16"},
        {"sse2", "avx", "avx2", "avx512f", "amx_tile", "amx_bf16", "amx_int8", "amx_fp16"},
        set(),
    ]
    for _ in range(3000):
        cpu = CpuDescription(
            arch=str(rng.choice(["x86_64", "aarch64", "riscv64"])),
            flags=frozenset(flag_sets[int(rng.integers(len(flag_sets)))]) | {"asimd", "bf16", "i8mm"},
            max_ghz=None if rng.random() < 0.1 else float(rng.uniform(0.5, 6.5)),
            clock_source="test",
            cpus=int(rng.integers(1, 257)),
            sve_bits=int(rng.choice([0, 128, 256, 512, 2048])),
        )
        flops = float(10 ** rng.uniform(3, 13))
        throughput = float(10 ** rng.uniform(-2, 7))
        threads = None if rng.random() < 0.3 else int(rng.integers(1, 512))
        precision = str(rng.choice(PRECISIONS))
        metrics, notes, _ = compute_metrics(flops, throughput, "cpu", precision, num_threads=threads, cpu=cpu)
        if m.PEAK_FRACTION in metrics:
            assert 0 < metrics[m.PEAK_FRACTION] <= 1
        else:
            assert notes[m.PEAK_FRACTION]


def test_the_bound_is_reachable_only_at_the_bound() -> None:
    peak = cpu_peak(AVX512, "int8", None)
    assert not isinstance(peak, str)
    flops = 1e9
    at_peak = peak.tflops * 1e12 / flops
    assert compute_metrics(flops, at_peak, "cpu", "int8", cpu=AVX512)[0][m.PEAK_FRACTION] == pytest.approx(1.0)
    assert m.PEAK_FRACTION not in compute_metrics(flops, at_peak * 1.001, "cpu", "int8", cpu=AVX512)[0]


def test_a_real_tinycnn_measurement_stays_within_the_bound() -> None:
    from mlperf_track.models.tiny import TinyCNN

    torch.manual_seed(0)
    model = TinyCNN().eval()
    inputs = torch.randn(8, 3, 32, 32)
    facts, _ = model_facts(model, inputs)
    timing = TimingConfig(warmup_iters=2, warmup_s=0, min_iters=10, max_iters=200, max_time_s=0.3)
    with torch.inference_mode():
        measurement = measure_callable(lambda: model(inputs), device="cpu", batch_size=8, timing=timing, monitors=False)
    # This machine's ISA; a clock no x86 CPU has reached keeps it an upper bound wherever the test runs.
    here = this_cpu()
    cpu = CpuDescription(here.arch, here.flags, 6.5, "test: above any shipped x86 clock", here.cpus, here.sve_bits)
    metrics, notes, tags = compute_metrics(
        facts[m.MODEL_FLOPS], measurement.metrics[m.THROUGHPUT], "cpu", "fp32", cpu=cpu
    )
    if m.PEAK_FRACTION in metrics:
        assert 0 < metrics[m.PEAK_FRACTION] <= 1 and tags["compute.peak_source"] == "hardware"
    else:
        assert notes[m.PEAK_FRACTION].startswith("no CPU peak model")  # an ISA the table does not know
    # And on this machine as it is: a fraction in (0, 1], or absent with the reason.
    metrics, notes, _ = compute_metrics(facts[m.MODEL_FLOPS], measurement.metrics[m.THROUGHPUT], "cpu", "fp32")
    assert (0 < metrics[m.PEAK_FRACTION] <= 1) if m.PEAK_FRACTION in metrics else bool(notes[m.PEAK_FRACTION])
