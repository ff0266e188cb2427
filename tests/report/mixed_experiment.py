"""An experiment as users really fill it, logged by the package's own code (listener, tuner, evaluator).

One experiment holds: pipeline runs of two models (resnet18 and tinycnn, digits at 32 px; resnet18 also at
64 px, a third question) with baseline, quantized int8, pruned and distilled variants on several runtimes,
an invalid measurement, an out-of-memory case and an export failure; a pipeline interrupted mid-case (KILLED
parent and child); a ``tune`` study with its trials (real Optuna, fake measurements); and an evaluator run from
``mlflow.models.evaluate`` (no ``batch_size`` param). Measurements are hand-made :class:`BenchmarkResult`
objects (seeded formulas), so the shapes are exactly what the package logs and the numbers are known.
"""

from __future__ import annotations

import importlib.util
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np

from mlperf_track import metrics as m
from mlperf_track.engine.result import BenchmarkResult
from mlperf_track.errors import ExportError, OutOfMemoryError
from mlperf_track.pipeline.config import PipelineConfig
from mlperf_track.pipeline.events import CaseOutcome, PipelineOutcome
from mlperf_track.spec import CaseSpec

ROOT = Path(__file__).resolve().parents[2]
#: (variant, runtime, precision) -> (speed factor over eager fp32, top-1 delta, delta CI half-width).
CONFIGS = {
    ("baseline", "eager", "fp32"): (1.0, 0.0, 0.0),
    ("baseline", "onnxruntime", "fp32"): (1.5, 0.0, 0.0),
    ("baseline", "openvino", "fp32"): (1.7, 0.0, 0.0),
    ("baseline", "eager", "bf16"): (1.3, -0.002, 0.004),
    ("quantized", "onnxruntime", "int8"): (3.1, -0.004, 0.006),  # no measurable change: eligible
    ("quantized", "eager", "int8"): (2.4, -0.005, 0.007),
    ("pruned", "eager", "fp32"): (1.2, -0.03, 0.01),  # a real loss beyond the 1-point limit
    ("distilled", "onnxruntime", "fp32"): (4.0, -0.08, 0.02),  # fastest, far beyond the limit
}
BATCH_SIZES = (1, 8, 32)
#: Top-1 of the fp32 baselines, by model.
TOP1 = {"resnet18": 0.975, "tinycnn": 0.93}
#: Eager fp32 samples/s at batch 1, by (model, image size).
BASE_SPEED = {("resnet18", 32): 300.0, ("resnet18", 64): 120.0, ("tinycnn", 32): 2000.0}


@dataclass
class MixedExperiment:
    """What :func:`create_mixed_experiment` made."""

    name: str
    pipelines: dict[str, str] = field(default_factory=dict)  # label -> parent run id
    killed_parent: str = ""
    tune_parent: str = ""
    evaluator_run: str = ""


def _result(case: CaseSpec, *, valid: bool = True) -> BenchmarkResult:
    factor, delta, half = CONFIGS[(case.variant, case.runtime, case.precision)]
    rng = np.random.default_rng(zlib.crc32(case.name.encode()))
    throughput = BASE_SPEED[(case.model, case.image_size)] * factor * case.batch_size / (case.batch_size + 2) * 3
    p50 = 1000.0 * case.batch_size / throughput
    samples = tuple(float(x) for x in rng.lognormal(np.log(p50), 0.03, 60))
    top1 = TOP1[case.model] + delta
    metrics = {
        m.LATENCY_P50: p50,
        m.LATENCY_P99: p50 * 1.2,
        m.LATENCY_MEAN: p50 * 1.02,
        m.THROUGHPUT: throughput,
        m.CPU_RSS_PEAK: 400.0 + 3.0 * case.batch_size * (0.5 if case.precision == "int8" else 1.0),
        m.ACCURACY_TOP1: top1,
        m.ACCURACY_TOP1_DELTA: delta,
        m.ACCURACY_TOP1_DELTA_CI_LOW: delta - half,
        m.ACCURACY_TOP1_DELTA_CI_HIGH: delta + half,
        m.MODEL_SIZE: 45.0 if case.precision != "int8" else 11.5,
    }
    reasons = () if valid else ("the median's 95% CI is 6.1% wide after the 2 s time cap (target 2%)",)
    return BenchmarkResult(
        case, metrics, samples_ms=samples, tags={"timing.stop_reason": "ci"}, invalid_reasons=reasons
    )


def _cases(model: str, image_size: int) -> list[CaseSpec]:
    return [
        CaseSpec(model, variant, runtime, precision, batch, "cpu", image_size, "digits")
        for (variant, runtime, precision) in CONFIGS
        for batch in BATCH_SIZES
    ]


def log_pipeline(model: str, image_size: int, *, interrupt_after: int | None = None) -> str:
    """Log one pipeline through the real listener; ``interrupt_after``: Ctrl-C after that many cases."""
    import mlflow

    from mlperf_track.tracking.listener import MlflowPipelineListener
    from mlperf_track.tracking.pipeline_run import end_open_runs, start_parent_run

    config = PipelineConfig(
        model=model, device="cpu", image_size=image_size, dataset="digits", batch_sizes=BATCH_SIZES, epochs=0
    )
    cases = _cases(model, image_size)
    parent = start_parent_run(config, run_name=model)
    listener = MlflowPipelineListener(parent.info.run_id, log_model=False)
    listener.on_pipeline_start(config, cases)
    outcome = PipelineOutcome(config)
    for index, case in enumerate(cases):
        listener.on_case_start(case)
        if interrupt_after is not None and index == interrupt_after:
            listener.abort("KILLED")
            listener.log_summary_artifacts()
            end_open_runs("KILLED")
            return str(parent.info.run_id)
        if case.runtime == "openvino" and case.batch_size == 32:
            item = CaseOutcome(case, error=OutOfMemoryError(f"{case.name} needs 9,000 MB"))
        elif case.variant == "pruned" and case.batch_size == 32:
            item = CaseOutcome(case, error=ExportError("onnx export of aten::_weight_norm is not supported"))
        else:
            valid = not (case.variant == "baseline" and case.runtime == "openvino" and case.batch_size == 8)
            item = CaseOutcome(case, result=_result(case, valid=valid))
        outcome.outcomes.append(item)
        listener.on_case_end(item)
    listener.on_pipeline_end(outcome)
    mlflow.end_run("FINISHED")
    return str(parent.info.run_id)


def _load(name: str, path: Path) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def log_tune(experiment: str) -> str:
    """A real Optuna study with the tuning tests' fake backend, logged by the tuner into ``experiment``."""
    from mlperf_track.tuning.config import TuneConfig
    from mlperf_track.tuning.runner import run_tune

    fakes = _load("tuning_fakes", ROOT / "tests" / "tuning" / "tuning_fakes.py")
    config = TuneConfig.create("fakenet", device="cpu", n_trials=6, seed=0, storage="none", experiment=experiment)
    outcome = run_tune(config, fakes.FakeBackend(fakes.small_space((1, 4, 16))))
    assert outcome.run_id is not None
    return outcome.run_id


def log_evaluator_run() -> str:
    """``mlflow.models.evaluate`` with the mlperf_track evaluator on a tiny PyTorch model."""
    import mlflow
    import torch
    from torch import nn

    torch.manual_seed(0)
    module = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    features = np.random.default_rng(0).normal(size=(40, 64)).astype("float32")
    labels = np.arange(40) % 10
    timing = {"warmup_iters": 1, "warmup_s": 0.0, "min_iters": 3, "max_iters": 20, "max_time_s": 0.1}
    with mlflow.start_run(run_name="evaluate-mlp") as run:
        info = mlflow.pytorch.log_model(module, name="mlp", input_example=features[:2])
        mlflow.models.evaluate(
            info.model_uri,
            features,
            targets=labels,
            model_type="classifier",
            evaluators="mlperf_track",
            evaluator_config={"batch_sizes": [1, 8], "timing": timing},
        )
    return str(run.info.run_id)


def create_mixed_experiment(name: str, *, evaluator: bool = True) -> MixedExperiment:
    """Fill experiment ``name`` in the current tracking store (``MLFLOW_TRACKING_URI``) and return its runs."""
    import mlflow

    mlflow.set_experiment(name)
    made = MixedExperiment(name)
    made.pipelines["resnet18 · 32 px"] = log_pipeline("resnet18", 32)
    made.pipelines["tinycnn · 32 px"] = log_pipeline("tinycnn", 32)
    made.pipelines["resnet18 · 64 px"] = log_pipeline("resnet18", 64)
    made.killed_parent = log_pipeline("tinycnn", 32, interrupt_after=3)
    made.tune_parent = log_tune(name)
    mlflow.set_experiment(name)
    if evaluator:
        made.evaluator_run = log_evaluator_run()
    return made
