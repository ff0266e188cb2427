"""Runs one case: prepare (or reuse) the runtime model, measure it, and assemble the result."""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mlperf_track import metrics as m
from mlperf_track.engine.device import is_out_of_memory, release_memory, synchronize
from mlperf_track.errors import OutOfMemoryError, UnsupportedError
from mlperf_track.pipeline.events import CaseOutcome
from mlperf_track.spec import CaseSpec

if TYPE_CHECKING:
    from mlperf_track.engine.result import BenchmarkResult
    from mlperf_track.models.artifact import ModelArtifact
    from mlperf_track.pipeline.session import BenchmarkSession
    from mlperf_track.runtimes.base import PreparedModel

logger = logging.getLogger(__name__)

#: What identifies a prepared model: the case minus its batch size (one prepared model serves every batch size).
PreparedKey = CaseSpec


@dataclass
class _Prepared:
    model: PreparedModel
    prepare_s: float
    called: bool = False


class CaseRunner:
    """Measures cases for a :class:`BenchmarkSession`, caching what does not depend on the batch size."""

    def __init__(self, session: BenchmarkSession) -> None:
        self.session = session
        self._prepared: dict[PreparedKey, _Prepared] = {}
        self._facts: dict[str, tuple[dict[str, float], dict[str, str]]] = {}
        self._accuracy: dict[PreparedKey, tuple[dict[str, float], dict[str, str]]] = {}

    def run(self, case: CaseSpec, *, profile: bool = False) -> CaseOutcome:
        """Measure ``case``; its own failures come back in the outcome."""
        outcome = CaseOutcome(case=case)
        try:
            outcome.result = self._measure(case, outcome, profile=profile)
            outcome.artifacts.update(self._write_files(outcome.result))
        except KeyboardInterrupt:
            raise
        except Exception as error:  # a case's failure must not stop the pipeline
            if is_out_of_memory(error) and not isinstance(error, OutOfMemoryError):
                error = OutOfMemoryError(f"{case.name} ran out of memory: {error}")
            logger.error("case %s failed: %s: %s", case.name, type(error).__name__, error)
            logger.debug("case %s traceback", case.name, exc_info=True)
            outcome.error = error
            self.release()
            release_memory(case.device)
        return outcome

    def _measure(self, case: CaseSpec, outcome: CaseOutcome, *, profile: bool) -> BenchmarkResult:
        from mlperf_track.engine.compute import compute_metrics
        from mlperf_track.engine.environment import environment_tags
        from mlperf_track.engine.measure import measure_callable
        from mlperf_track.engine.precision import precision_settings
        from mlperf_track.pipeline.session import cpu_threads

        session = self.session
        artifact = session.variant(case.variant)
        if artifact.precision and artifact.precision != case.precision:
            raise UnsupportedError(
                "precision",
                case.precision,
                [artifact.precision],
                hint=f"variant {case.variant} is fixed to {artifact.precision}",
            )
        key: PreparedKey = replace(case, batch_size=1)
        with precision_settings(case.precision, case.device) as precision_tags, cpu_threads(case.num_threads):
            entry = self._prepare(key, artifact, case)
            prepared = entry.model
            inputs = prepared.make_input(case.batch_size, seed=session.config.seed)
            startup = {m.STARTUP_PREPARE: entry.prepare_s}
            notes: dict[str, str] = {}
            first_ms = self._first_inference_ms(entry, inputs, case.device)
            if first_ms is None:
                notes[m.STARTUP_FIRST_INFERENCE] = (
                    "the prepared model was already called for another batch size; only a first call is reported"
                )
            else:
                startup[m.STARTUP_FIRST_INFERENCE] = first_ms
            measurement = measure_callable(
                lambda: prepared(inputs),
                device=case.device,
                batch_size=case.batch_size,
                timing=session.config.timing,
            )
            if profile:
                from mlperf_track.profiling import profile_prepared

                outcome.artifacts.update(
                    profile_prepared(
                        prepared,
                        inputs,
                        device=case.device,
                        output_dir=self._case_dir(case),
                        label=case.name,
                    )
                )
            accuracy, accuracy_tags = self._accuracy_metrics(key, prepared, case)
        result = measurement.to_result(case)
        facts, fact_notes = self._model_facts(case.variant, artifact)
        compute, compute_notes, compute_tags = compute_metrics(
            facts.get(m.MODEL_FLOPS),
            result.metrics.get(m.THROUGHPUT),
            case.device,
            case.precision,
            num_threads=case.num_threads,
        )
        startup[m.STARTUP_LOAD] = session.loaded_model.load_s
        tags = {
            **environment_tags(),
            **precision_tags,
            **prepared.tags,
            **compute_tags,
            **{f"artifact.{k}": v for k, v in artifact.tags.items()},
            **accuracy_tags,
        }
        return result.with_metrics(
            {**facts, **compute, **startup, **accuracy}, {**fact_notes, **compute_notes, **notes}
        ).with_tags(tags)

    def _prepare(self, key: PreparedKey, artifact: ModelArtifact, case: CaseSpec) -> _Prepared:
        """Prepare once per (variant, runtime, precision) for every batch size; time it as startup."""
        if key not in self._prepared:
            # Interleaved replicates revisit every case: on the CPU keep prepared models (host memory is
            # plentiful, RSS is a process-wide peak anyway); on a GPU re-prepare from the runtimes' disk caches
            # so each case's GPU memory stays its own (pipeline/runner.py).
            if self.session.config.repeats == 1 or case.device != "cpu":
                self.release(keep=None)
            from mlperf_track.runtimes.base import PrepareRequest

            runtime = self.session.runtime(case.runtime)
            runtime.check(case.device, case.precision)
            config = self.session.config
            request = PrepareRequest(
                device=case.device,
                precision=case.precision,
                batch_sizes=tuple(sorted({*config.batch_sizes, case.batch_size})),
                input_shape=artifact.input_shape,
                channels_last=case.channels_last,
                num_threads=case.num_threads,
                options=case.option_dict,
                cache_dir=config.cache_dir / "runtimes",
            )
            start = time.perf_counter()
            prepared = runtime.prepare(artifact, request)
            self._prepared[key] = _Prepared(prepared, time.perf_counter() - start)
        return self._prepared[key]

    @staticmethod
    def _first_inference_ms(entry: _Prepared, inputs: Any, device: str) -> float | None:
        """The first call after preparation; ``None`` when the model was already called (another batch size)."""
        if entry.called:
            return None
        synchronize(device)
        start = time.perf_counter()
        entry.model(inputs)
        synchronize(device)
        entry.called = True
        return (time.perf_counter() - start) * 1e3

    def _accuracy_metrics(
        self, key: PreparedKey, prepared: PreparedModel, case: CaseSpec
    ) -> tuple[dict[str, float], dict[str, str]]:
        """Accuracy metrics and tags (verdict, interval method, a warning with a gain) of the prepared model."""
        session = self.session
        if not session.config.measure_accuracy or not session.data.has_labels:
            return {}, {}
        if key not in self._accuracy:
            from mlperf_track.engine.accuracy import evaluate_accuracy

            assert session.data.val is not None
            report = evaluate_accuracy(
                prepared.predict,
                session.data.val,
                batch_size=max(case.batch_size, 8),
                reference=session.reference_accuracy(),
            )
            tags = report.tags()
            if tags.get(m.ACCURACY_VERDICT_TAG) == m.VERDICT_GAIN:
                from mlperf_track.variants.retrain import gain_warning

                tags[m.ACCURACY_WARNING_TAG] = gain_warning(session.variant(case.variant).tags, session.baseline_facts)
                logger.warning("%s: %s", case.name, tags[m.ACCURACY_WARNING_TAG])
            self._accuracy[key] = (report.metrics(), tags)
        return self._accuracy[key]

    def _model_facts(self, variant: str, artifact: ModelArtifact) -> tuple[dict[str, float], dict[str, str]]:
        if variant not in self._facts:
            from mlperf_track.engine.facts import model_facts
            from mlperf_track.engine.precision import dtype_for

            # A half-precision variant's weights need an input of their dtype to be run for FLOP counting.
            dtype = (dtype_for(artifact.precision) if artifact.precision else None) or torch.float32
            example = torch.randn(1, *artifact.input_shape).to(dtype)
            self._facts[variant] = model_facts(artifact.module, example, artifact.onnx_path)
        return self._facts[variant]

    def _case_dir(self, case: CaseSpec) -> Path:
        path = self.session.config.output_dir / case.name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _write_files(self, result: BenchmarkResult) -> dict[str, Path]:
        """Raw samples (one ``latency_ms`` row per timed call) and the result JSON."""
        folder = self._case_dir(result.case)
        samples = folder / "samples.csv"
        with samples.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["iteration", "latency_ms"])
            writer.writerows(enumerate(result.samples_ms))
        return {"samples.csv": samples, "result.json": result.write_json(folder / "result.json")}

    def release(self, keep: PreparedKey | None = None) -> None:
        """Close every prepared model except ``keep``."""
        for key in [key for key in self._prepared if key != keep]:
            entry = self._prepared.pop(key)
            try:
                entry.model.close()
            except Exception:  # closing must never hide the real outcome
                logger.debug("closing %s failed", key, exc_info=True)
