"""The metric keys users see in MLflow (see DESIGN.md, "Names users see").

Keys are grouped by prefix so the MLflow UI shows them in sections. Every producer and consumer of a metric
uses these constants, never a string literal. This module imports nothing from the package.
"""

from __future__ import annotations

from typing import Final

LATENCY_P50: Final = "latency/p50_ms"
LATENCY_P90: Final = "latency/p90_ms"
LATENCY_P95: Final = "latency/p95_ms"
LATENCY_P99: Final = "latency/p99_ms"
LATENCY_MEAN: Final = "latency/mean_ms"
LATENCY_STD: Final = "latency/std_ms"
LATENCY_MIN: Final = "latency/min_ms"
LATENCY_MAX: Final = "latency/max_ms"
LATENCY_IQR: Final = "latency/iqr_ms"
LATENCY_CV: Final = "latency/cv"
LATENCY_P50_CI_LOW: Final = "latency/p50_ci_low_ms"
LATENCY_P50_CI_HIGH: Final = "latency/p50_ci_high_ms"
LATENCY_COUNT: Final = "latency/count"

THROUGHPUT: Final = "throughput/samples_per_s"

GPU_PEAK_ALLOCATED: Final = "memory/gpu_peak_allocated_mb"
GPU_PEAK_RESERVED: Final = "memory/gpu_peak_reserved_mb"
GPU_PROCESS_PEAK: Final = "memory/gpu_process_peak_mb"
CPU_RSS_PEAK: Final = "memory/cpu_rss_peak_mb"

GPU_POWER_MEAN: Final = "power/gpu_mean_w"
GPU_ENERGY_PER_SAMPLE: Final = "energy/gpu_j_per_sample"
CPU_ENERGY_PER_SAMPLE: Final = "energy/cpu_package_j_per_sample"
CPU_POWER_MEAN: Final = "power/cpu_package_mean_w"
GPU_UTILIZATION: Final = "gpu/utilization_pct"
CPU_UTILIZATION: Final = "cpu/utilization_pct"

ACCURACY_TOP1: Final = "accuracy/top1"
ACCURACY_TOP5: Final = "accuracy/top5"
ACCURACY_TOP1_DELTA: Final = "accuracy/top1_delta"
ACCURACY_AGREEMENT: Final = "accuracy/agreement"
#: 95% confidence bounds of the paired accuracy delta and of the agreement (same evaluation images).
ACCURACY_TOP1_DELTA_CI_LOW: Final = "accuracy/top1_delta_ci_low"
ACCURACY_TOP1_DELTA_CI_HIGH: Final = "accuracy/top1_delta_ci_high"
ACCURACY_AGREEMENT_CI_LOW: Final = "accuracy/agreement_ci_low"
ACCURACY_AGREEMENT_CI_HIGH: Final = "accuracy/agreement_ci_high"

#: Tag: the paired verdict on ``accuracy/top1_delta`` (one of :data:`ACCURACY_VERDICTS`).
ACCURACY_VERDICT_TAG: Final = "accuracy.verdict"
#: Tag: what a significant accuracy gain over the converged baseline means (present only with a gain).
ACCURACY_WARNING_TAG: Final = "accuracy.warning"
#: Tag: how the accuracy intervals were computed.
ACCURACY_CI_METHOD_TAG: Final = "accuracy.ci_method"
VERDICT_NO_CHANGE: Final = "no measurable change"
VERDICT_LOSS: Final = "loss"
VERDICT_GAIN: Final = "gain"
ACCURACY_VERDICTS: Final = (VERDICT_NO_CHANGE, VERDICT_LOSS, VERDICT_GAIN)

#: The baseline's training curve on the parent run, logged with ``step`` = epoch (holdout scores from epoch 0,
#: the model before training).
BASELINE_TRAIN_LOSS: Final = "baseline/train_loss"
BASELINE_HOLDOUT_TOP1: Final = "baseline/holdout_top1"
BASELINE_HOLDOUT_LOSS: Final = "baseline/holdout_loss"
#: The baseline fact that carries that curve (JSON ``{metric key: [[epoch, value], ...]}``) to the listener.
BASELINE_CURVE_FACT: Final = "baseline.curve"

MODEL_SIZE: Final = "model/size_mb"
MODEL_PARAMS: Final = "model/params"
MODEL_FLOPS: Final = "model/flops_per_sample"
MODEL_SPARSITY: Final = "model/sparsity"

ACHIEVED_TFLOPS: Final = "compute/achieved_tflops"
PEAK_FRACTION: Final = "compute/peak_fraction"

STARTUP_LOAD: Final = "startup/load_s"
STARTUP_PREPARE: Final = "startup/prepare_s"
STARTUP_FIRST_INFERENCE: Final = "startup/first_inference_ms"

#: Tag: ``true``/``false``, whether a result's measurement is usable (see ``BenchmarkResult.valid``).
VALID_TAG: Final = "valid"
#: Tag: why a result is invalid (``; ``-separated), absent when it is valid.
VALID_REASONS_TAG: Final = "valid.reasons"

LATENCY_KEYS: Final = (
    LATENCY_P50,
    LATENCY_P90,
    LATENCY_P95,
    LATENCY_P99,
    LATENCY_MEAN,
    LATENCY_STD,
    LATENCY_MIN,
    LATENCY_MAX,
)

#: Metrics where a smaller value is better (used by reports, comparisons and the tuner).
LOWER_IS_BETTER: Final = frozenset(
    {
        *LATENCY_KEYS,
        GPU_PEAK_ALLOCATED,
        GPU_PEAK_RESERVED,
        GPU_PROCESS_PEAK,
        CPU_RSS_PEAK,
        GPU_ENERGY_PER_SAMPLE,
        CPU_ENERGY_PER_SAMPLE,
        MODEL_SIZE,
        MODEL_PARAMS,
        MODEL_FLOPS,
        STARTUP_LOAD,
        STARTUP_PREPARE,
        STARTUP_FIRST_INFERENCE,
    }
)
