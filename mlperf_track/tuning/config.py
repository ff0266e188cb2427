"""The configuration of one tuning study: the pipeline's configuration plus the study's own search settings.

A :class:`TuneConfig` composes a :class:`~mlperf_track.pipeline.config.PipelineConfig` (what a case is and how it
is measured: model, device, variants, runtimes, precisions, batch sizes, dataset, timing, options, limits on
accuracy, ...) with :class:`SearchSettings` (what only a study has: objective, budget, sampler, limits on memory
and latency, storage, warm start). A new pipeline option is added once, to ``PipelineConfig``, and a study
has it. In a study the pipeline's runtimes, precisions and batch sizes are the *candidates* searched.

:meth:`TuneConfig.create` resolves what a user leaves to the machine (``None``/``auto``), in one place:
runtimes are every runtime installed and able to run on the device; precisions every precision one of them
runs there natively (a precision the device would only emulate is never proposed); batch sizes powers of two
up to :data:`AUTO_MAX_BATCH`; the dataset is the labelled default whenever a candidate can change accuracy (a
variant, a precision other than fp32). Constructing the dataclasses themselves loads nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from mlperf_track.errors import ConfigError
from mlperf_track.spec import TimingConfig, check_choice, check_positive_int, parse_int_list

if TYPE_CHECKING:
    from mlperf_track.pipeline.config import PipelineConfig

#: ``--objective`` values: maximise throughput, minimise p99 latency, or a Pareto front of several metrics.
OBJECTIVES: Final = ("throughput", "latency", "multi", "max_qps")
#: The objective that serves each trial under load (:mod:`mlperf_track.tuning.load_study`).
MAX_QPS: Final = "max_qps"
#: ``--sampler`` values. ``auto`` is ``costaware`` for one objective and TPE for several (see
#: :mod:`mlperf_track.tuning.sampling`).
SAMPLERS: Final = ("auto", "costaware", "tpe", "gp", "grid", "random", "nsga2")
#: ``--pruner`` values: how a short first measurement stops a trial (see :mod:`mlperf_track.tuning.pruning`).
PRUNERS: Final = ("auto", "ci", "halving", "none")
#: Largest batch size of ``--batch-sizes auto`` per device.
AUTO_MAX_BATCH: Final = {"cpu": 64, "cuda": 512}
#: Words that mean "leave it to the machine" / "nothing" in flags and MLproject parameters.
AUTO_WORDS: Final = ("", "auto")
NONE_WORDS: Final = ("none", "null", "off")


def is_auto(text: str | None) -> bool:
    """Whether a flag value means "choose for me" (``auto``, empty or ``None``)."""
    return text is None or text.strip().lower() in AUTO_WORDS


def is_none(text: str | None) -> bool:
    """Whether a flag value means "none" (``none``, ``null``, ``off``)."""
    return text is not None and text.strip().lower() in NONE_WORDS


def powers_of_two(maximum: int) -> tuple[int, ...]:
    """``(1, 2, 4, ..., p)`` with ``p`` the largest power of two not above ``maximum``."""
    check_positive_int("batch size maximum", maximum)
    return tuple(2**exponent for exponent in range(int(math.log2(maximum)) + 1))


def parse_batch_sizes(text: str, device: str) -> tuple[int, ...]:
    """Parse ``--batch-sizes``: ``auto``, ``max:N`` (powers of two up to N) or a list ``1,2,4``.

    Args:
        text: The flag value.
        device: The resolved device (``auto`` means powers of two up to :data:`AUTO_MAX_BATCH` there).

    Returns:
        The batch sizes, ascending and without duplicates.

    Raises:
        ConfigError: For anything else.
    """
    if is_auto(text):
        return powers_of_two(AUTO_MAX_BATCH.get(device, AUTO_MAX_BATCH["cpu"]))
    value = text.strip().lower()
    if value.startswith("max:"):
        try:
            maximum = int(value[4:])
        except ValueError:
            raise ConfigError("--batch-sizes", text, "auto, max:N or a list such as 1,2,4") from None
        if maximum <= 0:
            raise ConfigError("--batch-sizes", text, "auto, max:N with N >= 1, or a list such as 1,2,4")
        return powers_of_two(maximum)
    return tuple(sorted(parse_int_list("--batch-sizes", text)))


def _positive_or_none(parameter: str, value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(parameter, value, "a positive number (or none)")


def _int_at_least(parameter: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(parameter, value, f"an integer >= {minimum}")


@dataclass(frozen=True)
class SearchSettings:
    """What only a study has (everything about a case is the pipeline's). Validated on construction.

    Attributes:
        objective: One of :data:`OBJECTIVES`.
        n_trials: How many trials the study holds when it ends (shared by every worker; retries of trials whose
            worker died do not count; points reused from earlier runs do).
        time_budget_s: Wall-clock seconds the study may take, preparation included; it stops at whichever of
            this and ``n_trials`` comes first. ``None``: no time limit.
        sampler: One of :data:`SAMPLERS`.
        pruner: One of :data:`PRUNERS` (``auto``: the confidence-interval rule; ignored for several objectives).
        threads: CPU thread counts to search (``()``: the pipeline's ``num_threads``; CPU only).
        option_values: Runtime option values to search, by key, instead of the values the runtimes declare
            (``(("compile_mode", ("default",)),)``); a key fixed by the pipeline's ``options`` is not searched.
        compositions: Also search every composition of a requested variant that leaves a transformable model
            (pruning, distillation) with a requested quantizer (``pruned_structured+quantized_int8_ort``).
        memory_limit_mb: Peak memory a feasible configuration may use, or ``None``.
        p99_slo_ms: p99 latency (per batch) a feasible configuration may take, or ``None``.
        short_time_s: Time cap of the short first measurement (multi-fidelity); ``None`` measures every trial in
            full at once.
        keep_prepared: Prepared models kept open between trials (``None``: 2 on a CPU without a memory limit,
            else 1, so a memory limit is checked against a process holding one prepared model).
        warm_start: ``auto`` (the study's MLflow experiment), ``none``, or an experiment name: measured points of
            earlier runs on the same model, hardware and software are added to a new study.
        storage: Optuna storage URL (``sqlite:///...``, ``postgresql://...``), or ``None`` for memory.
        study_name: Study name (resumes the study when it exists), or ``None`` for a new unique name.
        experiment: MLflow experiment name, or ``None`` for MLflow's choice.
        heartbeat_interval_s: Heartbeat of a running trial in a database storage.
        grace_period_s: A running trial whose heartbeat is older than this is failed and retried.
        max_retry: How often a trial whose worker died is retried.
        latency_bound_ms: ``max_qps``: the p99 bound in ms a trial's Server rate must keep (required there).
        min_duration: ``max_qps``: seconds of each load point of a trial's search.
        max_batch_size: ``max_qps``: dynamic-batching max batch sizes to search.
        max_queue_delay_ms: ``max_qps``: queue delays in ms to search (a delay above 0 only with a max batch
            size above 1: without batching there is nothing to wait for).
        load_workers: ``max_qps``: model instance counts to search.
    """

    objective: str = "throughput"
    n_trials: int = 30
    time_budget_s: float | None = None
    sampler: str = "auto"
    pruner: str = "auto"
    threads: tuple[int, ...] = ()
    option_values: tuple[tuple[str, tuple[str, ...]], ...] = ()
    compositions: bool = True
    memory_limit_mb: float | None = None
    p99_slo_ms: float | None = None
    short_time_s: float | None = 0.3
    keep_prepared: int | None = None
    warm_start: str = "auto"
    storage: str | None = None
    study_name: str | None = None
    experiment: str | None = None
    heartbeat_interval_s: int = 10
    grace_period_s: int = 30
    max_retry: int = 3
    latency_bound_ms: float | None = None
    min_duration: float = 10.0
    max_batch_size: tuple[int, ...] = (1, 4, 16)
    max_queue_delay_ms: tuple[float, ...] = (0.0, 2.0, 10.0)
    load_workers: tuple[int, ...] = (1, 2)

    def __post_init__(self) -> None:
        check_choice("--objective", self.objective, OBJECTIVES)
        check_choice("--sampler", self.sampler, SAMPLERS)
        check_choice("--pruner", self.pruner, PRUNERS)
        if isinstance(self.n_trials, bool) or not isinstance(self.n_trials, int) or self.n_trials <= 0:
            raise ConfigError("--n-trials", self.n_trials, "a positive integer")
        for threads in self.threads:
            check_positive_int("--threads", threads)
        for parameter, value in (
            ("--time-budget", self.time_budget_s),
            ("--memory-limit-mb", self.memory_limit_mb),
            ("--p99-slo-ms", self.p99_slo_ms),
            ("--short-time", self.short_time_s),
        ):
            _positive_or_none(parameter, value)
        if self.keep_prepared is not None:
            check_positive_int("keep_prepared", self.keep_prepared)
        if not self.warm_start or not self.warm_start.strip():
            raise ConfigError("--warm-start", self.warm_start, "auto, none or an MLflow experiment name")
        check_positive_int("heartbeat_interval_s", self.heartbeat_interval_s)
        if not isinstance(self.grace_period_s, int) or self.grace_period_s <= self.heartbeat_interval_s:
            raise ConfigError("grace_period_s", self.grace_period_s, "an integer above heartbeat_interval_s")
        _int_at_least("max_retry", self.max_retry, 0)
        if self.study_name is not None and not self.study_name.strip():
            raise ConfigError("--study-name", self.study_name, "a non-empty name")
        for key, values in self.option_values:
            if not values:
                raise ConfigError("--search-option", key, "at least one value per option key")
        self._check_load_knobs()

    def _check_load_knobs(self) -> None:
        """The ``max_qps`` settings (one line naming the flag on a bad value)."""
        _positive_or_none("--latency-bound-ms", self.latency_bound_ms)
        if self.objective == MAX_QPS and self.latency_bound_ms is None:
            raise ConfigError("--latency-bound-ms", None, "a positive number of milliseconds (--objective max_qps)")
        if isinstance(self.min_duration, bool) or not isinstance(self.min_duration, (int, float)):
            raise ConfigError("--min-duration", self.min_duration, "a number of seconds >= 0")
        if self.min_duration < 0:
            raise ConfigError("--min-duration", self.min_duration, "a number of seconds >= 0")
        for flag, values in (("--max-batch-size", self.max_batch_size), ("--load-workers", self.load_workers)):
            if not values:
                raise ConfigError(flag, "", "at least one positive integer")
            for value in values:
                check_positive_int(flag, value)
        if not self.max_queue_delay_ms or any(
            isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0
            for value in self.max_queue_delay_ms
        ):
            raise ConfigError("--max-queue-delay-ms", self.max_queue_delay_ms, "numbers of milliseconds >= 0")

    @property
    def option_value_dict(self) -> dict[str, tuple[str, ...]]:
        """:attr:`option_values` as a dict."""
        return {key: tuple(values) for key, values in self.option_values}


@dataclass(frozen=True)
class TuneConfig:
    """One study: the pipeline's configuration (the candidates and how a case is measured) and the search.

    Build it with :meth:`create`, which resolves ``auto`` values for the device, or from two validated parts.

    Attributes:
        pipeline: Model, device, variants, runtimes, precisions and batch sizes to search, dataset, timing,
            fixed options, seed, directories, and ``max_accuracy_drop`` (the accuracy limit of the answer).
        search: The study's own settings.
    """

    pipeline: PipelineConfig
    search: SearchSettings = field(default_factory=SearchSettings)

    @classmethod
    def create(cls, model: str, **values: Any) -> TuneConfig:
        """A study of ``model``; each keyword is a :class:`PipelineConfig` or :class:`SearchSettings` field.

        ``None`` (or ``auto``) for ``device``, ``runtimes``, ``precisions``, ``batch_sizes``, ``image_size``,
        ``epochs``, ``timing`` or ``dataset`` takes the study's default for the device (module docstring);
        ``batch_sizes`` may be text (``max:32``, ``1,8``); ``max_time_s`` caps the full measurement's window and
        ``target_ci`` sets its CI target (both on the device's default timing unless ``timing`` is given).

        Raises:
            ConfigError: An unknown keyword, or a value the dataclasses refuse.
        """
        from mlperf_track.pipeline.config import PipelineConfig

        search_names = {item.name for item in fields(SearchSettings)}
        pipeline_names = {item.name for item in fields(PipelineConfig)} - {"model"}
        timing_keys = {"max_time_s", "target_ci"}
        unknown = sorted(set(values) - search_names - pipeline_names - timing_keys)
        if unknown:
            raise ConfigError("tune setting", unknown[0], sorted(search_names | pipeline_names | timing_keys))
        search = SearchSettings(**{key: value for key, value in values.items() if key in search_names})
        given = {key: value for key, value in values.items() if key in pipeline_names}
        timing = {key: values[key] for key in timing_keys if values.get(key) is not None}
        return cls(resolve_pipeline(model, given, **timing), search)

    @property
    def needs_accuracy(self) -> bool:
        """Whether accuracy is part of the objective or of a limit."""
        return self.search.objective == "multi" or self.pipeline.max_accuracy_drop is not None

    def with_search(self, **changes: Any) -> TuneConfig:
        """A copy with some search settings changed."""
        return replace(self, search=replace(self.search, **changes))


def _given(values: dict[str, Any], key: str) -> Any:
    value = values.get(key)
    return None if value is None or (isinstance(value, str) and is_auto(value)) else value


def resolve_pipeline(
    model: str, values: dict[str, Any], *, max_time_s: float | None = None, target_ci: float | None = None
) -> PipelineConfig:
    """The pipeline configuration of a study, ``auto`` values resolved for the device (module docstring).

    Raises:
        ConfigError: A bad value (named by its field).
        DeviceError: ``cuda`` without a GPU.
    """
    from mlperf_track.engine.device import resolve_device
    from mlperf_track.pipeline.config import PipelineConfig
    from mlperf_track.pipeline.defaults import auto_defaults
    from mlperf_track.spec import TEXT_MODEL_PREFIXES
    from mlperf_track.tuning.choices import native_precisions, search_runtimes

    device = resolve_device(str(values.get("device") or "auto"))
    defaults = auto_defaults(device)
    # ``None`` is "not given" except for a field where it is a value of its own (``max_accuracy_drop=None``: no
    # limit, though the field's default is a limit)
    nullable = {item.name for item in fields(PipelineConfig) if "None" in str(item.type)}
    resolved = {key: value for key, value in values.items() if value is not None or key in nullable}
    runtimes = tuple(_given(values, "runtimes") or search_runtimes(device))
    precisions = tuple(_given(values, "precisions") or native_precisions(runtimes, device))
    batch_sizes = _given(values, "batch_sizes")
    if batch_sizes is None or isinstance(batch_sizes, str):
        batch_sizes = parse_batch_sizes(batch_sizes or "auto", device)
    timing: TimingConfig = _given(values, "timing") or defaults["timing"]
    _positive_or_none("--max-time", max_time_s)
    if max_time_s is not None:
        timing = replace(timing, max_time_s=max_time_s)
    if target_ci is not None:
        timing = replace(timing, target_rel_ci=target_ci)
    for folder in ("output_dir", "cache_dir"):
        if folder in resolved:
            resolved[folder] = Path(resolved[folder])
    variants = tuple(name for name in values.get("variants") or () if name not in ("", "none", "baseline"))
    for key, flag in (("seq_lens", "--seq-lens"), ("prompt_lens", "--prompt-lens"), ("output_lens", "--output-lens")):
        lengths = values.get(key)
        if lengths is not None and len(tuple(lengths)) != 1:
            shown = ",".join(map(str, lengths))
            raise ConfigError(flag, shown, "one length: every trial of a study runs the same shape")
    dataset = _given(values, "dataset")
    if dataset is None:
        changes_accuracy = bool(variants) or any(precision != "fp32" for precision in precisions)
        labelled = "auto" if model.startswith(TEXT_MODEL_PREFIXES) else defaults["dataset"]  # a text model's own
        dataset = labelled if changes_accuracy else "synthetic"
    resolved.update(
        device=device,
        runtimes=runtimes,
        precisions=precisions,
        batch_sizes=tuple(sorted(set(batch_sizes))),
        variants=variants,
        dataset=dataset,
        timing=timing,
        image_size=_given(values, "image_size") or defaults["image_size"],
        epochs=defaults["epochs"] if _given(values, "epochs") is None else values["epochs"],
    )
    return PipelineConfig(model=model, **resolved)
