"""A benchmark session: one model and dataset, many cases, with everything expensive done once.

The session composes the layers (model -> variant -> runtime -> engine -> result). It loads and prepares the
baseline once, builds each variant once, reuses a prepared runtime model across the batch sizes it serves,
and turns every case's own failure into a :class:`CaseOutcome` instead of an exception, so a pipeline or a
tuner carries on with the next case.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Collection, Iterator
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from mlperf_track.engine.device import release_memory, resolve_device
from mlperf_track.errors import ConfigError, UnsupportedError
from mlperf_track.pipeline.case_runner import CaseRunner, PreparedKey, PreparePolicy
from mlperf_track.pipeline.config import PipelineConfig
from mlperf_track.pipeline.events import CaseOutcome
from mlperf_track.pipeline.workdir import WorkDir
from mlperf_track.runtimes.base import ARTIFACT_PRECISIONS
from mlperf_track.spec import TEXT_MODEL_PREFIXES, CaseSpec, TimingConfig

if TYPE_CHECKING:
    from mlperf_track.data.base import DatasetSplits
    from mlperf_track.engine.accuracy import AccuracyReport
    from mlperf_track.models.artifact import ModelArtifact
    from mlperf_track.models.base import LoadedModel
    from mlperf_track.pipeline.text_workload import TextWorkload
    from mlperf_track.runtimes.base import PreparedModel, Runtime
    from mlperf_track.variants.base import Variant

logger = logging.getLogger(__name__)

BASELINE = "baseline"
#: References of the text model sources (a session knows a text model by them before loading it).
TEXT_PREFIXES = TEXT_MODEL_PREFIXES


class BenchmarkSession:
    """Measures cases of one model on one device.

    Args:
        config: The pipeline configuration. Runtime and variant names are checked here, so bad input fails
            before any long work starts.
        prepare_policy: Which batch sizes models are prepared for and how many stay open (default: the
            pipeline's: every batch size of the run, one model open).
    """

    def __init__(self, config: PipelineConfig, *, prepare_policy: PreparePolicy | None = None) -> None:
        from mlperf_track.runtimes.registry import get_runtime

        self.config = config
        self.device = resolve_device(config.device)
        self.runtimes: dict[str, Runtime] = {name: get_runtime(name) for name in config.runtimes}
        self._data: DatasetSplits | None = None
        self._loaded: LoadedModel | None = None
        self._artifacts: dict[str, ModelArtifact] = {}
        self._build_errors: dict[str, Exception] = {}
        self._baseline_facts: dict[str, str] = {}
        self._reference: AccuracyReport | None = None
        #: This process's private folder for per-case and variant files.
        self.files = WorkDir(config.output_dir)
        self._text: TextWorkload | None = None
        self._runner = CaseRunner(self, prepare_policy)
        self.variants: dict[str, Variant] = {}
        if config.variants:
            from mlperf_track.variants.registry import resolve_variants

            # A text model is loaded here: which recipes apply depends on it (and bad lengths fail now).
            workload = self.text.workload if self.text is not None else "image"
            resolved = resolve_variants(config.variants, self.device, workload)
            self.variants = {variant.name: variant for variant in resolved}
        self._check_precisions()

    def _check_precisions(self) -> None:
        """A precision that no requested runtime runs on this device is bad input, not a failed case.

        So is ``int8``/``fp8`` without a requested variant that produces a model in it for this device: runtimes
        run those from a quantized artifact (TensorRT from a Q/DQ ONNX graph), they never make one up.
        """
        for precision in self.config.precisions:
            if precision in ARTIFACT_PRECISIONS and not any(
                variant.pinned_precision == precision for variant in self.variants.values()
            ):
                raise UnsupportedError(
                    "precision",
                    precision,
                    hint=f"{precision} runs a model a quantized variant produced, and none of the requested variants "
                    f"({', '.join(self.variants) or 'none'}) produces one on {self.device}; add such a variant "
                    f"that runs on {self.device}, or drop {precision}",
                )
            if not any(runtime.capabilities().supports(self.device, precision) for runtime in self.runtimes.values()):
                allowed = sorted(
                    set().union(*(runtime.capabilities().precisions(self.device) for runtime in self.runtimes.values()))
                )
                raise UnsupportedError(
                    "precision",
                    precision,
                    allowed,
                    hint=f"what runtimes {', '.join(self.runtimes)} run on {self.device}",
                )

    # -- data and models --------------------------------------------------------------------------------

    @property
    def text(self) -> TextWorkload | None:
        """The text side of the session for a text model (``hf:``, ``hf-config:``), else ``None``.

        Creating it checks the sequence, prompt and output lengths against the model (bad input fails here).
        """
        if self._text is None and (self._loaded is not None or self.config.model.startswith(TEXT_PREFIXES)):
            from mlperf_track.models.text import text_info

            if text_info(self.loaded_model) is not None:
                from mlperf_track.pipeline.text_workload import TextWorkload

                self._text = TextWorkload(self.config, self.loaded_model, self.device)  # type: ignore[arg-type]
        return self._text

    @property
    def data(self) -> DatasetSplits:
        """The dataset, loaded on first use."""
        if self._data is None and self.text is not None:
            self._data = self.text.data
        if self._data is None:
            from mlperf_track.data.registry import load_dataset

            self._data = load_dataset(self.config.dataset, image_size=self.config.image_size, seed=self.config.seed)
        return self._data

    @property
    def loaded_model(self) -> LoadedModel:
        """The model as loaded from its source (before any fine-tuning)."""
        if self._loaded is None:
            from mlperf_track.models.registry import load_model

            config = self.config
            self._loaded = load_model(config.model, weights=config.weights, trust_pickle=config.trust_pickle)
        return self._loaded

    def baseline(self) -> ModelArtifact:
        """The baseline artifact: loaded, head replaced and trained on a labelled dataset (cached on disk).

        With ``epochs=None`` (auto) it is trained until its holdout top-1 stops improving.
        """
        if BASELINE not in self._artifacts and self.text is not None:
            self._check_text_runtimes()
            prepared = self.text.baseline()
            self._artifacts[BASELINE] = prepared.artifact
            self._baseline_facts = dict(prepared.facts)
        if BASELINE not in self._artifacts:
            from mlperf_track.models.safety import UNSAFE_LOAD_TAG
            from mlperf_track.variants.baseline import prepare_baseline

            prepared = prepare_baseline(
                self.loaded_model,
                self.data,
                image_size=self.config.image_size,
                epochs=self.config.epochs,
                device=self.device,
                seed=self.config.seed,
                cache_dir=self.config.cache_dir,
                train_precision=self.train_precision,
            )
            self._artifacts[BASELINE] = prepared.artifact
            self._baseline_facts = dict(prepared.facts)
            unsafe = self.loaded_model.tags.get(UNSAFE_LOAD_TAG)
            if unsafe:  # --trust-pickle let a file run code: every run of it says so
                prepared.artifact.tags[UNSAFE_LOAD_TAG] = self._baseline_facts[UNSAFE_LOAD_TAG] = unsafe
        return self._artifacts[BASELINE]

    @cached_property
    def train_precision(self) -> str:
        """The precision the baseline and the retraining variants train in here (``auto`` resolved once)."""
        from mlperf_track.variants.common import resolve_train_precision

        return resolve_train_precision(self.config.train_precision, self.device)

    @property
    def baseline_facts(self) -> dict[str, str]:
        """Facts about the baseline preparation (cached, training time and curve, holdout and evaluation top-1)."""
        self.baseline()
        return dict(self._baseline_facts)

    def variant(self, name: str) -> ModelArtifact:
        """The artifact of variant ``name`` (``baseline`` or a resolved variant), built once."""
        if name == BASELINE:
            return self.baseline()
        if name in self._build_errors:
            raise self._build_errors[name]
        if name not in self._artifacts:
            if name not in self.variants:
                raise ConfigError("variant", name, [BASELINE, *self.variants])
            from mlperf_track.runtimes.onnx_export import cached_onnx_exporter
            from mlperf_track.variants.base import VariantContext

            context = VariantContext(
                device=self.device,
                data=self.data,
                image_size=self.config.image_size,
                seed=self.config.seed,
                epochs=self.config.epochs,
                options=self.config.option_dict,
                work_dir=self.files.variant_dir(name),
                cache_dir=self.config.cache_dir,
                onnx_exporter=cached_onnx_exporter(self.config.runtime_cache_dir),
                train_precision=self.train_precision,
            )
            logger.info("building variant %s", name)
            try:
                self._artifacts[name] = self.variants[name].build(self.baseline(), context)
            except Exception as error:
                self._build_errors[name] = error
                raise
        return self._artifacts[name]

    def build_variants(self, names: Collection[str] | None = None) -> dict[str, Exception]:
        """Build every variant now (only those in ``names`` when given); returns the build errors by variant
        (those variants' cases will fail)."""
        for name in self.variants:
            if names is not None and name not in names:
                continue
            try:
                self.variant(name)
            except Exception as error:
                logger.error("variant %s could not be built: %s: %s", name, type(error).__name__, error)
        return dict(self._build_errors)

    def reference_accuracy(self) -> AccuracyReport | None:
        """Accuracy of the baseline in eager fp32: the reference for deltas and agreement."""
        if self._reference is None and self.config.measure_accuracy and self.data.has_labels:
            from mlperf_track.engine.accuracy import evaluate_accuracy

            module = self.baseline().module
            assert module is not None and self.data.val is not None
            module.eval()

            def predict(images: torch.Tensor) -> torch.Tensor:
                with torch.inference_mode():
                    return module(images).float()

            self._reference = evaluate_accuracy(predict, self.data.val)
        return self._reference

    # -- planning -----------------------------------------------------------------------------------------

    def variant_names(self) -> list[str]:
        """The baseline followed by every resolved variant."""
        return [BASELINE, *self.variants]

    def cases_for(self, variant: str, *, build: bool = True) -> list[CaseSpec]:
        """The cases of one variant; a variant pinned to a runtime or precision uses that one.

        A variant that failed to build gets one case, whose run reports the build error. With ``build=False`` a
        variant not built yet is planned from its recipe's declarations (``pinned_runtime``, ``pinned_precision``;
        the conformance suite checks that artifacts agree with them) and is not built: a resumed pipeline builds
        only the variants that still have cases to measure.
        """
        if variant in self._build_errors:
            config = self.config
            first = self.text.shapes()[0] if self.text is not None else {}
            return [self.make_case(variant, config.runtimes[0], config.precisions[0], config.batch_sizes[0], **first)]
        if not build and variant != BASELINE and variant not in self._artifacts:
            recipe = self.variants[variant]
            return self._cases(variant, recipe.pinned_runtime, recipe.pinned_precision, effective=False)
        artifact = self.variant(variant)
        return self._cases(variant, artifact.runtime, artifact.precision)

    def _cases(
        self, variant: str, runtime: str | None, precision: str | None, *, effective: bool = True
    ) -> list[CaseSpec]:
        runtimes = [runtime] if runtime else list(self.config.runtimes)
        shapes = self.text.shapes() if self.text is not None else [{}]
        if self.text is not None and not runtime:
            runtimes = self._check_text_runtimes()
        # int8/fp8 run only a model quantized in them: not the baseline, not a float variant
        floats = [item for item in self.config.precisions if item not in ARTIFACT_PRECISIONS]
        precisions = [precision] if precision else floats
        if precision and not runtime:
            fitting = [name for name in runtimes if self._supports(name, precision)]
            runtimes = fitting or runtimes[:1]
        return [
            self._make_case(variant, name, item, batch_size, shape, effective=effective)
            for name in runtimes
            for item in precisions
            for shape in shapes
            for batch_size in self.config.batch_sizes
        ]

    def _check_text_runtimes(self) -> list[str]:
        """The requested runtimes that run the text model's workload (none of them: bad input, one line)."""
        assert self.text is not None
        workload = self.text.workload
        supports = {name: workload in self.runtime(name).capabilities().workloads for name in self.config.runtimes}
        return self.text.check_runtimes(list(self.config.runtimes), supports)

    def plan(self, *, build: bool = True) -> list[CaseSpec]:
        """Every case of the configuration, grouped so that prepared models are reused across batch sizes.

        ``build=False``: variants not built yet are planned from their declarations (see :meth:`cases_for`).
        """
        return [case for variant in self.variant_names() for case in self.cases_for(variant, build=build)]

    def make_case(self, variant: str, runtime: str, precision: str, batch_size: int, **lengths: int) -> CaseSpec:
        """A case of this session's model, device and dataset (``channels_last`` only where the runtime honours it).

        ``lengths`` are a text model's ``seq_len`` or ``prompt_len`` and ``output_len``.
        """
        return self._make_case(variant, runtime, precision, batch_size, lengths)

    def _make_case(
        self,
        variant: str,
        runtime: str,
        precision: str,
        batch_size: int,
        lengths: dict[str, int],
        *,
        effective: bool = True,
    ) -> CaseSpec:
        """:meth:`make_case`; ``effective=False`` leaves the case as configured, without building the variant."""
        case = CaseSpec(
            model=self.config.model,
            variant=variant,
            runtime=runtime,
            precision=precision,
            batch_size=batch_size,
            device=self.device,
            image_size=self.config.image_size,
            dataset=self.config.dataset,
            num_threads=self.config.num_threads,
            channels_last=self.config.channels_last,
            options=self.config.options,
            **lengths,
        )
        return self._runner.effective_case(case) if effective else case

    def runtime(self, name: str) -> Runtime:
        """The runtime ``name``: the session's own instance, or one from the registry (a tuner may ask for more)."""
        from mlperf_track.runtimes.registry import get_runtime

        return self.runtimes.get(name) or get_runtime(name)

    def _supports(self, runtime: str, precision: str) -> bool:
        instance = self.runtime(runtime)
        return instance.unavailable_reason() is None and instance.capabilities().supports(self.device, precision)

    def unsupported_reason(self, variant: str, runtime: str, precision: str) -> str | None:
        """Why a combination cannot run here, or ``None`` when it can (cheap: builds nothing new)."""
        instance = self.runtime(runtime)
        try:
            instance.check(self.device, precision)
            if self.text is not None:
                instance.check_workload(self.text.workload)
        except UnsupportedError as error:
            return str(error)
        if variant != BASELINE and variant not in self.variants:
            return f"variant {variant!r} is not part of this session"
        recipe = self.variants.get(variant)
        if precision in ARTIFACT_PRECISIONS and (recipe is None or recipe.pinned_precision != precision):
            return f"{precision} runs only a model a variant quantized in {precision}; {variant} is not one"
        return recipe.unavailable_reason(self.device) if recipe is not None else None

    # -- running -------------------------------------------------------------------------------------------

    def run_case(self, case: CaseSpec, *, profile: bool = False, timing: TimingConfig | None = None) -> CaseOutcome:
        """Measure one case. A failure of the case itself is returned in the outcome, never raised.

        ``timing`` replaces the configuration's timing for this case (a tuner's short first measurement).
        """
        return self._runner.run(case, profile=profile or self.config.profile, timing=timing)

    def prepared_model(self, case: CaseSpec) -> PreparedModel | None:
        """The prepared model that served ``case``, while the session keeps it (benchmarks time it by hand)."""
        return self._runner.prepared_model(case)

    def has_variant(self, name: str) -> bool:
        """Whether variant ``name`` (or the baseline) is built already (cheap: builds nothing)."""
        return name in self._artifacts

    def release(self, keep: PreparedKey | None = None) -> None:
        """Close prepared models (all but ``keep``) and give memory back."""
        self._runner.release(keep)
        release_memory(self.device)

    def close(self) -> None:
        """Release every prepared model and delete the work folder (published case folders have left it)."""
        self.release()
        self.files.close()

    @property
    def keeps_files(self) -> bool:
        """Whether reported cases' files are published to ``<output_dir>/<case>/`` (else deleted)."""
        return self.config.keep_files is not False

    def __enter__(self) -> BenchmarkSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def output_dir(self) -> Path:
        """The output folder (per-case files are written in :attr:`files`, this process's folder under it)."""
        return self.config.output_dir


@contextlib.contextmanager
def cpu_threads(num_threads: int | None) -> Iterator[None]:
    """Set torch's intra-op thread count for the block, then restore it."""
    if num_threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
