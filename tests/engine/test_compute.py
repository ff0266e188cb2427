"""Achieved TFLOP/s, peak table lookups and CPU calibration."""

from __future__ import annotations

import pytest

from mlperf_track import metrics as m
from mlperf_track.engine.compute import calibrate_peak_tflops, compute_metrics, table_peak_tflops


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


def test_achieved_and_fraction_with_injected_calibration() -> None:
    metrics, notes, tags = compute_metrics(4e9, 500.0, "cpu", "fp32", calibrate=lambda device, precision: 4.0)
    assert metrics[m.ACHIEVED_TFLOPS] == pytest.approx(2.0)
    assert metrics[m.PEAK_FRACTION] == pytest.approx(0.5)
    assert tags["compute.peak_source"] == "calibration" and "threads" in tags["compute.peak_basis"]
    assert notes == {}


def test_missing_inputs_give_notes() -> None:
    metrics, notes, _ = compute_metrics(None, 500.0, "cpu", "fp32")
    assert metrics == {} and "flops_per_sample" in notes[m.ACHIEVED_TFLOPS] and m.PEAK_FRACTION in notes


def test_int8_on_cpu_has_no_peak() -> None:
    metrics, notes, _ = compute_metrics(1e9, 100.0, "cpu", "int8")
    assert m.ACHIEVED_TFLOPS in metrics and m.PEAK_FRACTION not in metrics
    assert "float matmuls only" in notes[m.PEAK_FRACTION]


def test_cpu_calibration_is_measured_once() -> None:
    first = calibrate_peak_tflops("cpu", "fp32", size=128, min_time_s=0.02)
    assert first is not None and 0 < first < 100  # a 2-core CPU does not reach 100 TFLOP/s
    assert calibrate_peak_tflops("cpu", "fp32", size=128, min_time_s=0.02) == first  # cached
