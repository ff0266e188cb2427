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
#: Between-replicate spread of a merged result (``--repeats N``): coefficient of variation of the replicates'
#: medians, and how many replicates were merged.
LATENCY_P50_REPLICATE_CV: Final = "latency/p50_replicate_cv"
LATENCY_REPLICATE_COUNT: Final = "latency/replicate_count"

THROUGHPUT: Final = "throughput/samples_per_s"

GPU_PEAK_ALLOCATED: Final = "memory/gpu_peak_allocated_mb"
GPU_PEAK_RESERVED: Final = "memory/gpu_peak_reserved_mb"
GPU_PROCESS_PEAK: Final = "memory/gpu_process_peak_mb"
CPU_RSS_PEAK: Final = "memory/cpu_rss_peak_mb"
#: Peak of the GPU's used memory over the timed window minus the memory in use before the case (the prepared
#: model, workspaces and activations of any runtime, ONNX Runtime and TensorRT included; whole device).
GPU_DEVICE_DELTA_PEAK: Final = "memory/gpu_device_delta_peak_mb"
#: Peak reserved by torch's caching allocator while the case's model was prepared (export/compile/engine
#: build, warm-up calls over every batch size, the accuracy pass), kept apart from the timed window's peaks.
GPU_PREPARE_PEAK: Final = "memory/gpu_prepare_peak_mb"
#: Like :data:`GPU_DEVICE_DELTA_PEAK`, over the preparation instead of the timed window.
GPU_PREPARE_DEVICE_DELTA_PEAK: Final = "memory/gpu_prepare_device_delta_peak_mb"

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

# -- Text models (transformers). Encoders: ``latency/*`` and ``throughput/samples_per_s`` are per batch of
# sequences, as for images; per token they are below. Generation: ``latency/*`` and ``samples_per_s`` are per
# whole generation call (prompt in, every new token out) and per sequence; time to first token (TTFT) is the
# prefill until the first new token is on the host, time per output token (TPOT) the gap between two new
# tokens, pooled over every generation of the timed window.
TTFT_P50: Final = "latency/ttft_p50_ms"
TTFT_P90: Final = "latency/ttft_p90_ms"
TTFT_P99: Final = "latency/ttft_p99_ms"
TTFT_MEAN: Final = "latency/ttft_mean_ms"
TPOT_P50: Final = "latency/tpot_p50_ms"
TPOT_P90: Final = "latency/tpot_p90_ms"
TPOT_P99: Final = "latency/tpot_p99_ms"
TPOT_MEAN: Final = "latency/tpot_mean_ms"
#: Encoders: the median batch latency divided by the tokens of the batch (batch x sequence length).
LATENCY_P50_PER_TOKEN: Final = "latency/p50_per_token_ms"
#: Tokens per second: encoders, input tokens processed (batch x sequence length x batches/s); generation,
#: output tokens generated (batch x output length per call, over the timed calls' total time).
TOKENS_PER_S: Final = "throughput/tokens_per_s"
#: The key/value cache of one generation call at its full length (prompt plus output), from its tensors.
KV_CACHE: Final = "memory/kv_cache_mb"
#: Decoders: perplexity on the corpus' evaluation windows; its difference to the baseline's (candidate minus
#: baseline) with a paired 95% interval over the windows; share of positions whose most likely next token
#: equals the baseline's; share whose most likely next token is the true one.
ACCURACY_PERPLEXITY: Final = "accuracy/perplexity"
ACCURACY_PERPLEXITY_DELTA: Final = "accuracy/perplexity_delta"
ACCURACY_PERPLEXITY_DELTA_CI_LOW: Final = "accuracy/perplexity_delta_ci_low"
ACCURACY_PERPLEXITY_DELTA_CI_HIGH: Final = "accuracy/perplexity_delta_ci_high"
ACCURACY_NEXT_TOKEN_AGREEMENT: Final = "accuracy/next_token_agreement"
ACCURACY_NEXT_TOKEN_AGREEMENT_CI_LOW: Final = "accuracy/next_token_agreement_ci_low"
ACCURACY_NEXT_TOKEN_AGREEMENT_CI_HIGH: Final = "accuracy/next_token_agreement_ci_high"
ACCURACY_NEXT_TOKEN_TOP1: Final = "accuracy/next_token_top1"
#: Decoders: next-token top-1 minus the baseline's (a fraction), with a paired 95% interval over the windows: the
#: accuracy the "best" rule's limit reads for a language model (``accuracy/top1_delta`` is for classifiers).
ACCURACY_NEXT_TOKEN_TOP1_DELTA: Final = "accuracy/next_token_top1_delta"
ACCURACY_NEXT_TOKEN_TOP1_DELTA_CI_LOW: Final = "accuracy/next_token_top1_delta_ci_low"
ACCURACY_NEXT_TOKEN_TOP1_DELTA_CI_HIGH: Final = "accuracy/next_token_top1_delta_ci_high"

#: Tag: ``true``/``false``, whether a result's measurement is usable (see ``BenchmarkResult.valid``).
VALID_TAG: Final = "valid"
#: Tag: why a result is invalid (``; ``-separated), absent when it is valid.
VALID_REASONS_TAG: Final = "valid.reasons"
#: Tag (on the model and its runs): the files loaded with loaders that can run code (``--trust-pickle``).
UNSAFE_LOAD_TAG: Final = "model.unsafe_load"
#: Tag (on a retrained variant and its runs): ``true`` when its weights came from the on-disk variant cache
#: (its ``variant.train_*`` tags then describe the training run that made them), ``false`` when built now.
VARIANT_CACHED_TAG: Final = "variant.cached"
#: Tag: the key of the retrained variant's cache file (everything that changes its weights, hashed).
VARIANT_CACHE_KEY_TAG: Final = "variant.cache_key"

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
        LATENCY_P50_REPLICATE_CV,
        GPU_PEAK_ALLOCATED,
        GPU_PEAK_RESERVED,
        GPU_PROCESS_PEAK,
        CPU_RSS_PEAK,
        GPU_DEVICE_DELTA_PEAK,
        GPU_PREPARE_PEAK,
        GPU_PREPARE_DEVICE_DELTA_PEAK,
        GPU_ENERGY_PER_SAMPLE,
        CPU_ENERGY_PER_SAMPLE,
        MODEL_SIZE,
        MODEL_PARAMS,
        MODEL_FLOPS,
        STARTUP_LOAD,
        STARTUP_PREPARE,
        STARTUP_FIRST_INFERENCE,
        TTFT_P50,
        TTFT_P90,
        TTFT_P99,
        TTFT_MEAN,
        TPOT_P50,
        TPOT_P90,
        TPOT_P99,
        TPOT_MEAN,
        LATENCY_P50_PER_TOKEN,
        KV_CACHE,
        ACCURACY_PERPLEXITY,
        ACCURACY_PERPLEXITY_DELTA,
    }
)

# -- Latency under load (engine/load): per query, latency = completion - arrival, split into queueing delay
# (arrival -> a worker starts its batch) and compute (start -> completion). Percentiles are nearest-rank as in
# MLPerf LoadGen (sorted[floor(n * p)]).
LOAD_LATENCY_P50: Final = "load/latency_p50_ms"
LOAD_LATENCY_P90: Final = "load/latency_p90_ms"
LOAD_LATENCY_P99: Final = "load/latency_p99_ms"
LOAD_LATENCY_MEAN: Final = "load/latency_mean_ms"
LOAD_LATENCY_MAX: Final = "load/latency_max_ms"
LOAD_QUEUE_P50: Final = "load/queue_p50_ms"
LOAD_QUEUE_P99: Final = "load/queue_p99_ms"
LOAD_QUEUE_MEAN: Final = "load/queue_mean_ms"
LOAD_COMPUTE_P50: Final = "load/compute_p50_ms"
LOAD_COMPUTE_P99: Final = "load/compute_p99_ms"
LOAD_COMPUTE_MEAN: Final = "load/compute_mean_ms"
#: The scenario's latency percentile's 99% upper confidence bound (MLPerf LoadGen's early-stopping estimate).
LOAD_EARLY_STOPPING_LATENCY: Final = "load/early_stopping_latency_ms"
#: Queries whose latency exceeded the latency bound.
LOAD_OVER_BOUND: Final = "load/over_bound"
LOAD_OFFERED_QPS: Final = "load/offered_qps"
LOAD_ACHIEVED_QPS: Final = "load/achieved_qps"
LOAD_SAMPLES_PER_S: Final = "load/samples_per_s"
LOAD_ISSUED: Final = "load/issued"
LOAD_COMPLETED: Final = "load/completed"
#: Issued but never served: refused by a full queue, or still waiting when the run's time cap ended it.
LOAD_DROPPED: Final = "load/dropped"
#: Failed calls: every failure, then by kind (HTTP: timeouts, connection errors, HTTP error statuses).
LOAD_ERRORS: Final = "load/errors"
LOAD_TIMEOUTS: Final = "load/timeouts"
LOAD_CONNECTION_ERRORS: Final = "load/connection_errors"
LOAD_HTTP_ERRORS: Final = "load/http_errors"
LOAD_BATCH_SIZE_MEAN: Final = "load/batch_size_mean"
LOAD_DURATION: Final = "load/duration_s"
#: How late the generator issued open-loop queries against their schedule (its own headroom).
LOAD_ISSUE_LAG_P99: Final = "load/issue_lag_p99_ms"
#: Degradation under injected background load, against the same point measured unloaded.
LOAD_P99_SLOWDOWN: Final = "load/p99_slowdown"
LOAD_QPS_RATIO: Final = "load/achieved_qps_ratio"
#: Parent run: the highest Server rate whose p99 stayed under the latency bound (a VALID run).
BEST_MAX_QPS: Final = "best/max_qps"
#: Parent run: the same under the injected background load.
BEST_MAX_QPS_BACKGROUND: Final = "best/max_qps_background"
#: Tag: how a memory limit was enforced (``cgroup_v2``, ``rlimit_as``, ``rlimit_data``).
LOAD_MEMORY_LIMIT_TAG: Final = "load.memory_limit.mechanism"

#: Load metrics where a smaller value is better (the lead may fold this into LOWER_IS_BETTER).
LOAD_LOWER_IS_BETTER: Final = frozenset(
    {
        LOAD_LATENCY_P50,
        LOAD_LATENCY_P90,
        LOAD_LATENCY_P99,
        LOAD_LATENCY_MEAN,
        LOAD_LATENCY_MAX,
        LOAD_QUEUE_P50,
        LOAD_QUEUE_P99,
        LOAD_QUEUE_MEAN,
        LOAD_COMPUTE_P50,
        LOAD_COMPUTE_P99,
        LOAD_COMPUTE_MEAN,
        LOAD_EARLY_STOPPING_LATENCY,
        LOAD_OVER_BOUND,
        LOAD_DROPPED,
        LOAD_ERRORS,
        LOAD_ISSUE_LAG_P99,
        LOAD_P99_SLOWDOWN,
    }
)

# -- Run bookkeeping: resume, liveness, stale runs, the outbox (tracking/resume.py, stale.py, outbox.py) --------
#: Parent metric: cases taken over from the run this one resumes (their child runs moved under this parent).
CASES_RESUMED: Final = "cases/resumed"
#: Parent metric: cases whose logging waited in the local outbox for the tracking server.
CASES_LOGGED_LATE: Final = "cases/logged_late"
#: Parent tag: hash of the resolved configuration (``config.*`` params); ``resume=last`` looks for it.
CONFIG_FINGERPRINT_TAG: Final = "mlperf_track.config_fingerprint"
#: Parent tag: the run this one resumes. Old parent tag: the run that resumed it.
RESUMED_FROM_TAG: Final = "mlperf_track.resumed_from"
RESUMED_BY_TAG: Final = "mlperf_track.resumed_by"
#: Parent tag: the resumed cases' names (comma-separated, clipped); child tag: the parent it was measured under.
RESUMED_CASES_TAG: Final = "mlperf_track.resumed_cases"
CHILD_RESUMED_FROM_TAG: Final = "mlperf_track.measured_under"
#: Tags naming the process that owns a run (host, kernel boot id, pid and its start time in clock ticks).
HOST_TAG: Final = "mlperf_track.host"
BOOT_ID_TAG: Final = "mlperf_track.boot_id"
PID_TAG: Final = "mlperf_track.pid"
PID_START_TAG: Final = "mlperf_track.pid_start"
#: Tag refreshed while the run's process works (Unix seconds) and its interval in seconds.
HEARTBEAT_TAG: Final = "mlperf_track.heartbeat"
HEARTBEAT_INTERVAL_TAG: Final = "mlperf_track.heartbeat_interval_s"
#: Tags on a run closed because its process was gone: why, and who closed it (host:pid).
KILLED_REASON_TAG: Final = "mlperf_track.killed_reason"
CLOSED_BY_TAG: Final = "mlperf_track.closed_by"
#: Tag: the status this process ended the run with (``mlflow run`` may overwrite the status afterwards).
END_STATUS_TAG: Final = "mlperf_track.end_status"
# -- Tuning (tuning/): each trial's costs and, for a trial pruned after its short first measurement, the short
# figures (never under the keys above: a pruned trial is not a measurement of the case).
TRIAL_PREPARE_S: Final = "trial/prepare_s"
TRIAL_VARIANT_BUILD_S: Final = "trial/variant_build_s"
TRIAL_MEASURE_S: Final = "trial/measure_s"
TRIAL_WALL_S: Final = "trial/wall_s"
SHORT_THROUGHPUT: Final = "short/throughput/samples_per_s"
SHORT_LATENCY_P50: Final = "short/latency/p50_ms"
SHORT_LATENCY_P99: Final = "short/latency/p99_ms"
#: Each measured key and the key its short figure is logged under.
SHORT_KEYS: Final = ((THROUGHPUT, SHORT_THROUGHPUT), (LATENCY_P50, SHORT_LATENCY_P50), (LATENCY_P99, SHORT_LATENCY_P99))
#: The optimistic end of the short measurement's 95% CI for the study's objective (what the pruner compared).
SHORT_OBJECTIVE_BOUND: Final = "short/objective_bound"
#: Prefix of a trial run's constraint values (``constraint/<name>``: > 0 breaks the limit).
CONSTRAINT_PREFIX: Final = "constraint/"
#: Parent run of a study: wall time of the call (preparation included), its preparation and measurement
#: seconds summed over this worker's trials, and trials by how they ended.
STUDY_WALL_S: Final = "study/wall_s"
STUDY_PREPARE_S: Final = "study/prepare_s"
STUDY_MEASURE_S: Final = "study/measure_s"
STUDY_N_REUSED: Final = "study/n_reused"
STUDY_N_SHORT_PRUNED: Final = "study/n_short_pruned"
#: Tags of a trial run: ``measured``/``pruned``/``reused``/``failed``/``out_of_memory``/``over_budget``, the
#: fidelity reached (``short``/``full``/``none``), whether the prepared model was ``new`` or ``cached``.
TRIAL_OUTCOME_TAG: Final = "trial.outcome"
TRIAL_FIDELITY_TAG: Final = "trial.fidelity"
TRIAL_PREPARATION_TAG: Final = "trial.preparation"
#: The variants a trial built (comma-separated; absent when it built none).
TRIAL_VARIANT_BUILT_TAG: Final = "trial.variant_built"
#: Tag of a study's parent run: why it stopped (``n_trials``, ``time budget``, ``space exhausted``).
STOP_REASON_TAG: Final = "tune.stop_reason"
