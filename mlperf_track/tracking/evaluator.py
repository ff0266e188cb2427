"""``mlflow.models.evaluate(..., evaluators="mlperf_track")``: latency, throughput and memory of any model.

Usage::

    result = mlflow.models.evaluate(
        "models:/digits-mlp/1", X_test, targets=y_test, model_type="classifier",
        evaluators="mlperf_track", evaluator_config={"batch_sizes": [1, 32]},
    )
    result.metrics["latency/p50_ms_bs1"], result.metrics["throughput/samples_per_s_bs32"]

It runs only when asked for: when ``evaluators`` names it (``"mlperf_track"`` or a list holding it), or, with
``evaluators=None`` (MLflow then offers the evaluation to every installed evaluator), when the evaluator config
carries its settings, e.g. ``evaluator_config={"mlperf_track": {"batch_sizes": [1, 32]}}``. A plain
``mlflow.models.evaluate(data=df, predictions="pred", targets="y", model_type="classifier")`` never reaches it.

For each batch size the evaluator builds one batch from the first rows of the data (cycling when the data
is shorter), then times the model on it with the engine's :func:`measure_callable` (warm-up, adaptive run
length, monitors). What is called:

- ``native`` (default for models with the PyTorch flavour): the ``nn.Module`` itself on a float32 tensor,
  under ``torch.inference_mode``, on ``device``; no pandas conversion is timed.
- ``pyfunc`` (every other model, or ``call="pyfunc"``): ``model.predict(batch)``, the path a served model
  takes, on the CPU.

Metrics: with one batch size, under the DESIGN.md names (``latency/p50_ms``, ``throughput/samples_per_s``,
``memory/cpu_rss_peak_mb`` ...); with several, every batch-size-dependent metric once per batch size with a
``_bs<N>`` suffix (``latency/p50_ms_bs32``) and none without, so no metric is a copy of another. The tag
``mlperf_track.batch_sizes`` lists the batch sizes. ``cpu/utilization_pct`` is percent of one core, at most
100 x the cores the process may use (tag ``cpu.utilization_scope``).
With targets and a classifier (or no model type): ``accuracy/top1`` (a fraction, 0-1) and ``accuracy/top5``
for score outputs with five or more columns. ``model/size_mb`` (serialized MLflow model, MiB) when MLflow
recorded it; for native models the engine's ``model/params`` and ``model/flops_per_sample`` too. A metric that cannot
be measured is absent and a ``note.<metric>`` tag says why. Artifacts: ``mlperf_track/samples_bs<N>.csv``
(raw latencies) and ``mlperf_track/evaluation.json``.

Config keys: ``batch_sizes`` (list or ``"1,32"``), ``timing`` (dict of :class:`TimingConfig` fields),
``device`` (``auto``/``cpu``/``cuda``, native only), ``call`` (``native``/``pyfunc``), ``input_shape``
(per-sample shape for native models fed flat rows, e.g. ``[1, 8, 8]``; default from the signature),
``monitors`` (bool), ``metric_prefix`` (str).
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from mlflow.models.evaluation.base import EvaluationResult, ModelEvaluator

from mlperf_track import metrics as m
from mlperf_track.errors import ConfigError
from mlperf_track.tracking.context import hardware_software_tags
from mlperf_track.tracking.evaluator_data import (
    EvaluatorSettings,
    accuracy_metrics,
    carries_settings,
    device_baseline,
    make_batch,
    native_caller,
    native_module,
    offered_by_default,
    predict_all,
    signature_shape,
    to_tensor,
)
from mlperf_track.tracking.logging import clip, write_samples_csv

logger = logging.getLogger(__name__)

#: Metric prefixes that depend on the batch size (suffixed with ``_bs<N>``).
PER_BATCH_PREFIXES = ("latency/", "throughput/", "memory/", "power/", "energy/", "cpu/", "gpu/")
ARTIFACT_DIR = "mlperf_track"


class MlperfTrackEvaluator(ModelEvaluator):
    """Performance evaluator: times ``predict`` (or the PyTorch module) on batches of the evaluation data."""

    name = "mlperf_track"

    @classmethod
    def can_evaluate(cls, *, model_type: Any, evaluator_config: Any, **kwargs: Any) -> bool:
        """Claims an evaluation only when asked for (see the module docstring).

        Named in ``evaluators``: yes, for any model type. Offered by ``evaluators=None``: only when
        ``evaluator_config`` carries this evaluator's settings (``{"mlperf_track": {"batch_sizes": [1]}}``).
        """
        if not offered_by_default():
            return True
        return carries_settings(evaluator_config)

    def evaluate(
        self,
        *,
        model_type: str | None,
        dataset: Any,
        run_id: str,
        evaluator_config: dict[str, Any] | None,
        model: Any = None,
        extra_metrics: Any = None,
        custom_artifacts: Any = None,
        predictions: Any = None,
        **kwargs: Any,
    ) -> EvaluationResult:
        """Measure the model on ``dataset``, log metrics, tags and artifacts to ``run_id``, return them."""
        from mlflow.exceptions import INVALID_PARAMETER_VALUE, MlflowException

        if model is None:
            raise MlflowException(
                "the mlperf_track evaluator times a model, so evaluate() needs model=...; "
                "a dataset of precomputed predictions has nothing to time",
                error_code=INVALID_PARAMETER_VALUE,
            )
        try:
            settings = EvaluatorSettings.from_config(evaluator_config or {})
        except ConfigError as error:
            message = f"mlperf_track evaluator_config: {error}"
            raise MlflowException(message, error_code=INVALID_PARAMETER_VALUE) from None
        metrics, tags, notes, details = self._measure(model, model_type, dataset, settings)
        prefixed = {f"{settings.metric_prefix}{key}": value for key, value in metrics.items()}
        artifacts = self._log(run_id, prefixed, {**hardware_software_tags(), **tags}, notes, details)
        return EvaluationResult(metrics=prefixed, artifacts=artifacts, run_id=run_id)

    def _measure(
        self, model: Any, model_type: str | None, dataset: Any, settings: EvaluatorSettings
    ) -> tuple[dict[str, float], dict[str, str], dict[str, str], list[dict[str, Any]]]:
        from mlperf_track.engine.measure import measure_callable
        from mlperf_track.engine.monitors import default_monitors

        features = dataset.features_data
        module = native_module(model) if settings.call == "native" else None
        device = settings.resolved_device() if module is not None else "cpu"
        tags = {"mlperf_track.call": "native" if module is not None else "pyfunc", "mlperf_track.device": device}
        metrics: dict[str, float] = {}
        notes: dict[str, str] = {}
        details: list[dict[str, Any]] = []
        baseline = device_baseline(device)  # before the module moves to the GPU: the delta then counts it
        caller_for = native_caller(module, model, device, settings) if module is not None else None
        single = len(settings.batch_sizes) == 1
        tags["mlperf_track.batch_sizes"] = ",".join(str(size) for size in settings.batch_sizes)
        for index, batch_size in enumerate(settings.batch_sizes):
            batch = make_batch(features, batch_size)
            call = caller_for(batch) if caller_for is not None else _pyfunc_call(model, batch)
            measurement = measure_callable(
                call,
                device=device,
                batch_size=batch_size,
                timing=settings.timing,
                monitors=settings.monitors,
                monitor_list=default_monitors(device, gpu_baseline_bytes=baseline),
            )
            details.append(
                {
                    "batch_size": batch_size,
                    "metrics": dict(measurement.metrics),
                    "samples_ms": list(measurement.samples_ms),
                    "tags": dict(measurement.tags),
                    "notes": dict(measurement.notes),
                    "warnings": list(measurement.warnings),
                }
            )
            suffix = "" if single else f"_bs{batch_size}"
            metrics.update({_per_batch(key, suffix): float(value) for key, value in measurement.metrics.items()})
            notes.update({_per_batch(key, suffix): note for key, note in measurement.notes.items()})
            if index == 0:
                tags.update({key: str(value) for key, value in measurement.tags.items()})
        size_mb = _model_size_mb(model)
        if size_mb is None:
            notes[m.MODEL_SIZE] = "MLflow recorded no model size for this model"
        else:
            metrics[m.MODEL_SIZE] = size_mb
        if module is not None:
            facts, fact_notes = _module_facts(module, model, settings, features, device)
            metrics.update({key: value for key, value in facts.items() if key != m.MODEL_SIZE})
            notes.update({key: value for key, value in fact_notes.items() if key != m.MODEL_SIZE})
        accuracy, accuracy_notes = self._accuracy(model, module, model_type, dataset, device=device, settings=settings)
        metrics.update(accuracy)
        notes.update(accuracy_notes)
        return metrics, tags, notes, details

    def _accuracy(
        self, model: Any, module: Any, model_type: str | None, dataset: Any, *, device: str, settings: EvaluatorSettings
    ) -> tuple[dict[str, float], dict[str, str]]:
        if not dataset.has_targets:
            return {}, {m.ACCURACY_TOP1: "no targets given"}
        if model_type not in (None, "classifier"):
            return {}, {m.ACCURACY_TOP1: f"accuracy applies to classifiers, not {model_type}"}
        outputs = predict_all(model, module, dataset.features_data, device, settings)
        return accuracy_metrics(outputs, dataset.labels_data)

    def _log(
        self,
        run_id: str,
        metrics: dict[str, float],
        tags: dict[str, str],
        notes: dict[str, str],
        details: list[dict[str, Any]],
    ) -> dict[str, Any]:
        import mlflow
        import pandas as pd
        from mlflow.entities import Metric, RunTag
        from mlflow.models.evaluation.artifacts import CsvEvaluationArtifact, JsonEvaluationArtifact

        client = mlflow.MlflowClient()
        now_ms = int(time.time() * 1000)
        all_tags = {**tags, **{f"note.{key}": value for key, value in notes.items()}}
        client.log_batch(
            run_id,
            metrics=[Metric(key, value, now_ms, 0) for key, value in metrics.items()],
            tags=[RunTag(key, clip(str(value))) for key, value in all_tags.items()],
        )
        artifact_uri = client.get_run(run_id).info.artifact_uri.rstrip("/")
        artifacts: dict[str, Any] = {}
        with tempfile.TemporaryDirectory(prefix="mlperf_track_eval_") as tmp:
            for detail in details:
                name = f"samples_bs{detail['batch_size']}.csv"
                path = write_samples_csv(detail["samples_ms"], Path(tmp) / name)
                client.log_artifact(run_id, str(path), ARTIFACT_DIR)
                artifacts[f"mlperf_track_samples_bs{detail['batch_size']}"] = CsvEvaluationArtifact(
                    uri=f"{artifact_uri}/{ARTIFACT_DIR}/{name}", content=pd.read_csv(path)
                )
            summary = {"metrics": metrics, "tags": tags, "notes": notes, "batch_sizes": details}
            json_path = Path(tmp) / "evaluation.json"
            json_path.write_text(json.dumps(summary, indent=2), encoding="utf-8")
            client.log_artifact(run_id, str(json_path), ARTIFACT_DIR)
            artifacts["mlperf_track_evaluation"] = JsonEvaluationArtifact(
                uri=f"{artifact_uri}/{ARTIFACT_DIR}/evaluation.json", content=summary
            )
        return artifacts


def _per_batch(key: str, suffix: str) -> str:
    """``key`` with the batch-size suffix when it depends on the batch size."""
    return f"{key}{suffix}" if key.startswith(PER_BATCH_PREFIXES) else key


def _pyfunc_call(model: Any, batch: Any) -> Any:
    def call() -> object:
        return model.predict(batch)

    return call


def _model_size_mb(model: Any) -> float | None:
    """MLflow's recorded model size in MiB (``*_mb`` is MiB everywhere), or ``None``."""
    from mlperf_track.engine.monitors.base import BYTES_PER_MB

    size = getattr(getattr(model, "metadata", None), "model_size_bytes", None)
    return float(size) / BYTES_PER_MB if isinstance(size, (int, float)) and size > 0 else None


def _module_facts(
    module: Any, model: Any, settings: EvaluatorSettings, features: Any, device: str
) -> tuple[dict[str, float], dict[str, str]]:
    from mlperf_track.engine.facts import model_facts

    try:
        example = to_tensor(make_batch(features, 1), settings.input_shape or signature_shape(model), device)
        return model_facts(module, example)
    except Exception as error:  # facts are extras: their failure must not lose the timings
        logger.debug("model facts failed", exc_info=True)
        return {}, {m.MODEL_PARAMS: f"model facts failed: {type(error).__name__}: {error}"}
