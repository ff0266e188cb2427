"""Runs one case: prepare (or reuse) the runtime model, measure it, and assemble the result.

Memory on a GPU is measured per case, not per process history:

* the preparation (export/compile/engine build, the warm-up calls over every batch size, the first call and the
  accuracy pass) is watched on its own (:mod:`~mlperf_track.pipeline.prepare_watch`), once per prepared model;
* before each timed window the previous case's tensors are dropped and torch's cached blocks returned
  (``torch.cuda.empty_cache``), so the window's allocator peaks (reset when it starts) hold only this batch
  size's blocks, not those of a larger batch prepared earlier;
* the device's used memory is read before a model is prepared; ``memory/gpu_device_delta_peak_mb`` is the
  window's peak above that baseline, which sees ONNX Runtime's and TensorRT's memory too.
"""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mlperf_track import metrics as m
from mlperf_track.engine.device import is_out_of_memory, release_memory, synchronize
from mlperf_track.errors import OutOfMemoryError, UnsupportedError
from mlperf_track.pipeline.events import CaseOutcome
from mlperf_track.pipeline.prepare_watch import NO_WINDOW, end_prepare_watch, start_prepare_watch
from mlperf_track.spec import CaseSpec, TimingConfig

if TYPE_CHECKING:
    from mlperf_track.engine.monitors import MonitorGroup
    from mlperf_track.engine.result import BenchmarkResult
    from mlperf_track.models.artifact import ModelArtifact
    from mlperf_track.pipeline.session import BenchmarkSession
    from mlperf_track.runtimes.base import PreparedModel

logger = logging.getLogger(__name__)

#: What identifies a prepared model: the case minus its batch size (one prepared model serves every batch size),
#: or the case itself under :attr:`PreparePolicy.per_case_batch` for a runtime that prepares per batch size.
PreparedKey = CaseSpec


@dataclass(frozen=True)
class PreparePolicy:
    """Which batch sizes a model is prepared for, and how many prepared models stay open between cases.

    Attributes:
        per_case_batch: Prepare a runtime that specialises per batch size
            (:attr:`~mlperf_track.runtimes.base.RuntimeCapabilities.per_batch_preparation`, a static-shape compile)
            for the case's batch size only, and key it by that size. The pipeline measures every batch size of a
            configuration in a row and prepares them all at once; a tuner measures one point at a time, where
            compiling every candidate batch size up front would cost several times the point itself.
        keep: Prepared models kept open between cases, least recently used closed first (a tuner returning to a
            configuration); ``None``: the pipeline's rule (one, or every one for interleaved replicates on the
            CPU). Kept models count in the process's RSS, which is what ``memory/cpu_rss_peak_mb`` reports.
    """

    per_case_batch: bool = False
    keep: int | None = None


@dataclass
class _Prepared:
    model: PreparedModel
    prepare_s: float
    called: bool = False
    #: The device's used memory before the model was prepared (CUDA; ``None`` elsewhere or unreadable).
    gpu_baseline_bytes: int | None = None
    #: Watches the preparation until the first case of this model has run its accuracy pass.
    watch: MonitorGroup | None = None
    memory: dict[str, float] = field(default_factory=dict)
    memory_notes: dict[str, str] = field(default_factory=dict)


class CaseRunner:
    """Measures cases for a :class:`BenchmarkSession`, caching what does not depend on the batch size."""

    def __init__(self, session: BenchmarkSession, policy: PreparePolicy | None = None) -> None:
        self.session = session
        self.policy = policy or PreparePolicy()
        self._prepared: dict[PreparedKey, _Prepared] = {}
        self._facts: dict[str, tuple[dict[str, float], dict[str, str]]] = {}
        self._sizes: dict[tuple[str, str], float] = {}
        self._accuracy: dict[PreparedKey, tuple[dict[str, float], dict[str, str]]] = {}

    def run(self, case: CaseSpec, *, profile: bool = False, timing: TimingConfig | None = None) -> CaseOutcome:
        """Measure ``case``; its own failures come back in the outcome.

        A case asking for ``channels_last`` where the runtime ignores it is measured, and reported, without it.
        ``timing`` replaces the session's timing for this case (a tuner's short first measurement).
        """
        case = self.effective_case(case)
        outcome = CaseOutcome(case=case)
        try:
            outcome.result = self._measure(case, outcome, profile=profile, timing=timing)
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

    def effective_case(self, case: CaseSpec) -> CaseSpec:
        """``case`` without ``channels_last`` where its runtime ignores the flag for its variant's artifact."""
        if not case.channels_last:
            return case
        try:
            artifact = self.session.variant(case.variant)
            honoured = self.session.runtime(case.runtime).honours_channels_last(artifact)
        except Exception:  # a variant that cannot be built: its run reports that error
            return case
        return case if honoured else replace(case, channels_last=False)

    def prepared_key(self, case: CaseSpec) -> PreparedKey:
        """The key of the prepared model that serves ``case`` (see :class:`PreparePolicy`)."""
        return case if self._per_case(case) else replace(case, batch_size=1)

    def _per_case(self, case: CaseSpec) -> bool:
        return self.policy.per_case_batch and self.session.runtime(case.runtime).capabilities().per_batch_preparation

    def _measure(
        self, case: CaseSpec, outcome: CaseOutcome, *, profile: bool, timing: TimingConfig | None = None
    ) -> BenchmarkResult:
        from mlperf_track.engine.compute import compute_metrics
        from mlperf_track.engine.environment import environment_tags
        from mlperf_track.engine.measure import measure_callable
        from mlperf_track.engine.monitors import default_monitors
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
        key = self.prepared_key(case)
        cudnn_benchmark = _bool_option(case, "cudnn_benchmark")
        with (
            precision_settings(case.precision, case.device, cudnn_benchmark=cudnn_benchmark) as precision_tags,
            cpu_threads(case.num_threads),
        ):
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
            # The accuracy pass belongs to the preparation (its memory too), so it runs before the timed window.
            accuracy, accuracy_tags = self._accuracy_metrics(replace(case, batch_size=1), prepared, case)
            self._end_prepare_watch(entry)
            release_memory(case.device)  # the previous case's tensors and cached blocks go before the window
            monitor_list = default_monitors(case.device, gpu_baseline_bytes=entry.gpu_baseline_bytes)
            if artifact.workload == "generation":
                measurement: Any = _measure_generation(
                    prepared, inputs, case, timing or session.config.timing, monitor_list
                )
            else:
                measurement = measure_callable(
                    lambda: prepared(inputs),
                    device=case.device,
                    batch_size=case.batch_size,
                    timing=timing or session.config.timing,
                    monitor_list=monitor_list,
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
        result = measurement.to_result(case)
        if session.text is not None:
            result = result.with_metrics(session.text.per_token_metrics(result))
        facts, fact_notes = self._model_facts(case, artifact)
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
            {**facts, **compute, **startup, **accuracy, **entry.memory},
            {**fact_notes, **compute_notes, **notes, **entry.memory_notes},
        ).with_tags(tags)

    def _prepare(self, key: PreparedKey, artifact: ModelArtifact, case: CaseSpec) -> _Prepared:
        """Prepare once per (variant, runtime, precision) for every batch size; time it as startup.

        On a GPU the previous models are released first, the device's used memory is read as the baseline,
        and monitors watch the preparation (stopped by :meth:`_end_prepare_watch`).
        """
        if key in self._prepared:
            self._prepared[key] = self._prepared.pop(key)  # most recently used last
        else:
            self._make_room(case)
            from mlperf_track.runtimes.base import PrepareRequest

            runtime = self.session.runtime(case.runtime)
            runtime.check(case.device, case.precision)
            config = self.session.config
            per_case = self._per_case(case)  # prepared for this batch size only (PreparePolicy.per_case_batch)
            text = self.session.text
            request = PrepareRequest(
                device=case.device,
                precision=case.precision,
                batch_sizes=(case.batch_size,) if per_case else tuple(sorted({*config.batch_sizes, case.batch_size})),
                input_shape=text.input_shape(case) if text is not None else artifact.input_shape,
                max_sequence=text.max_sequence() if text is not None else None,
                channels_last=case.channels_last,
                num_threads=case.num_threads,
                options=case.option_dict,
                cache_dir=config.runtime_cache_dir,
            )
            baseline, watch = start_prepare_watch(case.device)
            start = time.perf_counter()
            try:
                prepared = runtime.prepare(artifact, request)
            except BaseException:
                if watch is not None:
                    watch.stop(NO_WINDOW)
                raise
            elapsed = time.perf_counter() - start
            self._prepared[key] = _Prepared(prepared, elapsed, gpu_baseline_bytes=baseline, watch=watch)
        return self._prepared[key]

    def _make_room(self, case: CaseSpec) -> None:
        """Close prepared models before a new one is prepared, as :class:`PreparePolicy` says."""
        keep = self.policy.keep
        if keep is None:
            # Interleaved replicates revisit every case: on the CPU keep prepared models (host memory is
            # plentiful, RSS is a process-wide peak anyway); on a GPU re-prepare from the runtimes' disk caches
            # so each case's GPU memory stays its own (pipeline/runner.py).
            if self.session.config.repeats == 1 or case.device != "cpu":
                self.release(keep=None)
            return
        for key in list(self._prepared)[: max(0, len(self._prepared) - max(keep, 1) + 1)]:
            self._close(key)

    @staticmethod
    def _end_prepare_watch(entry: _Prepared) -> None:
        """Stop the preparation's monitors (once per prepared model) and keep their readings under prepare keys."""
        if entry.watch is not None:
            entry.memory, entry.memory_notes = end_prepare_watch(entry.watch)
            entry.watch = None

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
        if session.config.measure_accuracy and session.text is not None and session.text.kind == "decoder":
            # A decoder's quality (perplexity) does not depend on the prompt or output length: once per model.
            quality_key = replace(key, prompt_len=None, output_len=None)
            if quality_key not in self._accuracy:
                self._accuracy[quality_key] = (session.text.quality_metrics(prepared, session.baseline()), {})
            return self._accuracy[quality_key]
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

    def _model_facts(self, case: CaseSpec, artifact: ModelArtifact) -> tuple[dict[str, float], dict[str, str]]:
        """The variant's facts, with ``model/size_mb`` at the case's precision (fp16 weights are half the size)."""
        from mlperf_track.engine.facts import model_facts, state_dict_bytes
        from mlperf_track.engine.monitors.base import BYTES_PER_MB
        from mlperf_track.engine.precision import dtype_for
        from mlperf_track.runtimes.base import keeps_own_form

        text = self.session.text
        facts_key = case.variant if text is None else f"{case.variant}|{text.input_shape(case)}"
        if facts_key not in self._facts:
            # A half-precision variant's weights need an input of their dtype to be run for FLOP counting.
            dtype = (dtype_for(artifact.precision) if artifact.precision else None) or torch.float32
            example = torch.randn(1, *artifact.input_shape).to(dtype) if text is None else text.example_input(case)
            self._facts[facts_key] = model_facts(artifact.module, example, artifact.onnx_path)
            if artifact.workload == "generation":  # a prompt's forward pass is not what a generation call costs
                metrics, notes = self._facts[facts_key]
                metrics = {key: value for key, value in metrics.items() if key != m.MODEL_FLOPS}
                notes = {**notes, m.MODEL_FLOPS: "not counted for generation (a call is a prefill and decode steps)"}
                self._facts[facts_key] = (metrics, notes)
        metrics, notes = self._facts[facts_key]
        case_dtype = dtype_for(case.precision)
        if artifact.module is not None and case_dtype is not None and not keeps_own_form(artifact):
            size_key = (case.variant, case.precision)
            if size_key not in self._sizes:
                self._sizes[size_key] = state_dict_bytes(artifact.module, case_dtype) / BYTES_PER_MB
            metrics = {**metrics, m.MODEL_SIZE: self._sizes[size_key]}
        return metrics, notes

    def _case_dir(self, case: CaseSpec) -> Path:
        """The case's folder in this process's own work folder (never shared with another process)."""
        return self.session.files.case_dir(case.name)

    def _write_files(self, result: BenchmarkResult) -> dict[str, Path]:
        """Raw samples (one ``latency_ms`` row per timed call) and the result JSON."""
        folder = self._case_dir(result.case)
        samples = folder / "samples.csv"
        with samples.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["iteration", "latency_ms"])
            writer.writerows(enumerate(result.samples_ms))
        return {"samples.csv": samples, "result.json": result.write_json(folder / "result.json")}

    def prepared_model(self, case: CaseSpec) -> PreparedModel | None:
        """The prepared model that served ``case`` (still open), for checks that time it by hand; else ``None``."""
        entry = self._prepared.get(self.prepared_key(self.effective_case(case)))
        return entry.model if entry is not None else None

    def release(self, keep: PreparedKey | None = None) -> None:
        """Close every prepared model except ``keep``."""
        for key in [key for key in self._prepared if key != keep]:
            self._close(key)

    def _close(self, key: PreparedKey) -> None:
        entry = self._prepared.pop(key)
        if entry.watch is not None:  # a case failed during its preparation: stop the monitors' thread
            entry.watch.stop(NO_WINDOW)
        try:
            entry.model.close()
        except Exception:  # closing must never hide the real outcome
            logger.debug("closing %s failed", key, exc_info=True)


def _bool_option(case: CaseSpec, key: str, default: bool = False) -> bool:
    """A ``true``/``false`` case option (``--option cudnn_benchmark=true``)."""
    from mlperf_track.spec import check_choice

    value = case.option_dict.get(key)
    return default if value is None else check_choice(f"option {key}", value.lower(), ("true", "false")) == "true"


def _measure_generation(prepared: Any, prompt: Any, case: CaseSpec, timing: Any, monitor_list: Any) -> Any:
    """Time a decoder case with :func:`~mlperf_track.engine.generation.measure_generation`, plus its KV cache size."""
    from mlperf_track.engine.generation import measure_generation
    from mlperf_track.engine.monitors.base import BYTES_PER_MB

    assert case.output_len is not None, f"generation case {case.name} has no output_len"
    measurement = measure_generation(
        prepared.generation_run(prompt, case.output_len),
        device=case.device,
        batch_size=case.batch_size,
        output_len=case.output_len,
        timing=timing,
        monitor_list=monitor_list,
    )
    kv_bytes = prepared.kv_cache_bytes()
    if kv_bytes is None:
        measurement.notes[m.KV_CACHE] = "the runtime's cache exposes no key/value tensors"
    else:
        measurement.metrics[m.KV_CACHE] = kv_bytes / BYTES_PER_MB
    return measurement
