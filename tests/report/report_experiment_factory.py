"""Realistic MLflow experiments for the report, compare, export and notebook tests.

Runs are created with MLflow's own client in a temporary SQLite store, shaped like the pipeline's: a parent
run, one child run per case with the case's params (:meth:`CaseSpec.params`), metric keys from
:mod:`mlperf_track.metrics`, ``hw.*`` tags, and a ``samples.csv`` artifact (``iteration,latency_ms``).
Latencies follow a seeded log-normal law whose median grows with the batch size, so figures have a shape.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from mlperf_track import metrics as m
from mlperf_track.spec import CaseSpec

MACHINE_A = "AMD EPYC 7B13 64-Core Processor"
MACHINE_B = "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz"
#: (variant, runtime) -> (ms per sample at batch 1, fixed overhead ms, top-1, model size MB).
CONFIGS = {
    ("baseline", "eager"): (1.00, 0.40, 0.962, 0.045),
    ("baseline", "onnxruntime"): (0.70, 0.15, 0.962, 0.045),
    ("quantized", "onnxruntime"): (0.45, 0.15, 0.951, 0.014),
}
BATCH_SIZES = (1, 4, 16)
N_SAMPLES = 120


@dataclass
class FakeExperiment:
    """What :func:`create_experiment` made."""

    name: str
    experiment_id: str
    parent_run_id: str
    case_run_ids: dict[tuple[str, str], str] = field(default_factory=dict)  # (machine, case name) -> run id
    failed_run_id: str | None = None


def write_samples_csv(path: Path, samples: np.ndarray) -> Path:
    """``iteration,latency_ms`` rows, the pipeline's format."""
    pd.DataFrame({"iteration": np.arange(len(samples)), "latency_ms": samples}).to_csv(path, index=False)
    return path


def latency_samples(median_ms: float, seed: int, n: int = N_SAMPLES, spread: float = 0.04) -> np.ndarray:
    """Seeded log-normal latencies around ``median_ms``."""
    return np.random.default_rng(seed).lognormal(np.log(median_ms), spread, n)


def _case_metrics(samples: np.ndarray, batch_size: int, top1: float | None, size_mb: float) -> dict[str, float]:
    metrics = {
        m.LATENCY_P50: float(np.percentile(samples, 50)),
        m.LATENCY_P90: float(np.percentile(samples, 90)),
        m.LATENCY_P99: float(np.percentile(samples, 99)),
        m.LATENCY_MEAN: float(samples.mean()),
        m.LATENCY_STD: float(samples.std()),
        m.LATENCY_MIN: float(samples.min()),
        m.LATENCY_MAX: float(samples.max()),
        m.THROUGHPUT: float(batch_size * 1000.0 / samples.mean()),
        m.CPU_RSS_PEAK: 310.0 + 2.5 * batch_size,
        m.MODEL_SIZE: size_mb,
    }
    if top1 is not None:
        metrics[m.ACCURACY_TOP1] = top1
        metrics[m.ACCURACY_TOP1_DELTA] = top1 - CONFIGS[("baseline", "eager")][2]
    return metrics


def _log_case(
    client: MlflowClient,
    experiment_id: str,
    parent_id: str,
    case: CaseSpec,
    *,
    metrics: dict[str, float],
    tags: dict[str, str],
    samples: np.ndarray,
    workdir: Path,
) -> str:
    run = client.create_run(experiment_id, run_name=case.name, tags={"mlflow.parentRunId": parent_id})
    run_id = run.info.run_id
    client.log_batch(
        run_id,
        metrics=[Metric(key, value, 0, 0) for key, value in metrics.items()],
        params=[Param(key, value) for key, value in case.params().items()],
        tags=[RunTag(key, value) for key, value in tags.items()],
    )
    client.log_artifact(run_id, str(write_samples_csv(workdir / "samples.csv", samples)))
    client.set_terminated(run_id, "FINISHED")
    return run_id


def create_experiment(
    tracking_uri: str,
    name: str,
    artifact_root: Path,
    *,
    machines: tuple[str, ...] = (MACHINE_A,),
    with_accuracy: bool = True,
    with_failure: bool = True,
    seed: int = 0,
) -> FakeExperiment:
    """Create experiment ``name`` with a parent run, one child per case and machine, and a failed case."""
    client = MlflowClient(tracking_uri)
    experiment_id = client.create_experiment(name, artifact_location=(artifact_root / name).as_uri())
    parent = client.create_run(experiment_id, run_name="tinycnn", tags={"mlperf_track.role": "pipeline"})
    made = FakeExperiment(name, experiment_id, parent.info.run_id)
    rng_seed = seed
    with tempfile.TemporaryDirectory() as tmp:
        for machine_index, machine in enumerate(machines):
            slowdown = 1.0 + 0.6 * machine_index
            for (variant, runtime), (per_sample, overhead, top1, size_mb) in CONFIGS.items():
                for batch_size in BATCH_SIZES:
                    case = CaseSpec(
                        model="tinycnn",
                        variant=variant,
                        runtime=runtime,
                        batch_size=batch_size,
                        image_size=32,
                        dataset="digits" if with_accuracy else "synthetic",
                    )
                    median = slowdown * (overhead + per_sample * batch_size)
                    rng_seed += 1
                    samples = latency_samples(median, rng_seed)
                    metrics = _case_metrics(samples, batch_size, top1 if with_accuracy else None, size_mb)
                    tags = {"hw.cpu": machine, "hw.cpu_cores": "2", "hw.gpu": "none", "sw.torch": "2.14.1"}
                    made.case_run_ids[(machine, case.name)] = _log_case(
                        client,
                        experiment_id,
                        made.parent_run_id,
                        case,
                        metrics=metrics,
                        tags=tags,
                        samples=samples,
                        workdir=Path(tmp),
                    )
        if with_failure:
            case = CaseSpec(
                model="tinycnn",
                variant="pruned",
                runtime="openvino",
                batch_size=1,
                image_size=32,
                dataset="digits" if with_accuracy else "synthetic",
            )
            run = client.create_run(experiment_id, run_name=case.name, tags={"mlflow.parentRunId": made.parent_run_id})
            client.log_batch(
                run.info.run_id,
                params=[Param(k, v) for k, v in case.params().items()],
                tags=[
                    RunTag("error.type", "ExportError"),
                    RunTag("error.message", "openvino could not convert aten::foo"),
                ],
            )
            client.set_terminated(run.info.run_id, "FAILED")
            made.failed_run_id = run.info.run_id
    client.set_terminated(made.parent_run_id, "FINISHED")
    return made
