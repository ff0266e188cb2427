"""Which (variant, runtime, precision, runtime options) combinations a study may propose.

Everything is asked, never assumed from a name: runtimes declare what they run (:meth:`Runtime.capabilities`),
which option values are worth searching (``OptionSpec.searched``) and which of those a device can run
(:meth:`Runtime.option_unsupported_reason`); variants declare the runtime and precision they pin; a session
adds what building a variant needs (:meth:`BenchmarkSession.unsupported_reason`). Only combinations all of them
accept become choices, so the sampler never proposes a case that cannot run; the rest are reported with their
reason. A precision the device would only emulate (:func:`~mlperf_track.engine.precision.emulated_reason`) is
left out too: it runs, slowly, and would only spend the budget.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Final

from mlperf_track.errors import UnsupportedError
from mlperf_track.spec import PRECISIONS
from mlperf_track.tuning.space import Choice

if TYPE_CHECKING:
    from mlperf_track.runtimes.base import Runtime
    from mlperf_track.variants.base import Variant

logger = logging.getLogger(__name__)

#: ``(variant, runtime, precision) -> None`` when the combination runs here, else why not.
UnsupportedReason = Callable[[str, str, str], "str | None"]
#: A variant's pins: ``(runtime, precision)``, each ``None`` when the variant runs under any.
Pins = Mapping[str, "tuple[str | None, str | None]"]
#: ``(precision, device) -> None`` when the device computes the precision natively, else why not.
EmulatedReason = Callable[[str, str], "str | None"]

BASELINE: Final = "baseline"
#: Precisions that only make sense with a variant that produced them (a quantized model): never searched for
#: the baseline by ``--precisions auto``.
VARIANT_ONLY_PRECISIONS: Final = frozenset({"int8", "fp8"})


def _engine_emulated_reason(precision: str, device: str) -> str | None:
    from mlperf_track.engine.precision import emulated_reason

    return emulated_reason(precision, device)


def search_runtimes(device: str) -> tuple[str, ...]:
    """``--runtimes auto`` of a study: every registered runtime that is installed and runs on ``device``."""
    from mlperf_track.runtimes.registry import get_runtime, runtime_names

    chosen = []
    for name in runtime_names():
        runtime = get_runtime(name)
        reason = runtime.unavailable_reason()
        if reason is None and device in runtime.capabilities().devices:
            chosen.append(name)
        else:
            logger.debug("runtime %s is not searched on %s: %s", name, device, reason or f"it does not run on {device}")
    return tuple(chosen)


def native_precisions(
    runtimes: Sequence[str] | Mapping[str, Runtime], device: str, emulated: EmulatedReason | None = None
) -> tuple[str, ...]:
    """``--precisions auto`` of a study: what some runtime runs on ``device``, natively, and without a variant."""
    from mlperf_track.runtimes.registry import get_runtime

    native = emulated or _engine_emulated_reason
    instances = runtimes if isinstance(runtimes, Mapping) else {name: get_runtime(name) for name in runtimes}
    supported: set[str] = set()
    for runtime in instances.values():
        if runtime.unavailable_reason() is None:
            supported |= set(runtime.capabilities().precisions(device))
    found = []
    for precision in PRECISIONS:
        if precision not in supported or precision in VARIANT_ONLY_PRECISIONS:
            continue
        reason = native(precision, device)
        if reason is None:
            found.append(precision)
        else:
            logger.debug("precision %s is not searched: %s", precision, reason)
    return tuple(found) or ("fp32",)


def runtime_unsupported_reason(runtimes: Mapping[str, Runtime], device: str) -> UnsupportedReason:
    """An :data:`UnsupportedReason` that asks each runtime (availability, then capabilities)."""

    def reason(variant: str, runtime: str, precision: str) -> str | None:
        instance = runtimes.get(runtime)
        if instance is None:
            return f"runtime {runtime!r} is not part of this study"
        try:
            instance.check(device, precision)
        except UnsupportedError as error:
            return str(error)
        return None

    return reason


def with_compositions(variants: Sequence[Variant]) -> list[Variant]:
    """``variants`` and every composition of one that leaves a transformable model with one that pins a precision.

    A recipe that pins neither a runtime nor a precision (pruning, distillation) leaves a PyTorch module that
    another recipe can take; one that pins a precision (quantization, a half-precision cast) finishes the model.
    The pipeline's default run measured ``pruned_structured+quantized_int8_pt2e`` fastest on a CPU, where a
    study over the single recipes could not find it; compositions make such answers reachable.
    """
    from mlperf_track.variants.compose import compose

    found = {variant.name: variant for variant in variants}
    shapers = [variant for variant in variants if variant.pinned_runtime is None and variant.pinned_precision is None]
    finishers = [variant for variant in variants if variant.pinned_precision is not None and "+" not in variant.name]
    for shaper, finisher in itertools.product(shapers, finishers):
        if "+" in shaper.name:
            continue
        composed = compose([shaper, finisher])
        found.setdefault(composed.name, composed)
    return list(found.values())


def option_choices(
    runtime: Runtime,
    device: str,
    *,
    values: Mapping[str, Sequence[str]] | None = None,
    fixed: Collection[str] = (),
) -> tuple[list[tuple[tuple[str, str], ...]], list[tuple[str, str]]]:
    """The option settings of ``runtime`` a study searches on ``device``, and the values left out with why.

    Args:
        runtime: The runtime (its ``accepted_options`` with ``searched`` values).
        device: Where the study runs.
        values: Values to search by key instead of the declared ones (an unknown key or value is ignored here;
            the CLI checks them against the declarations).
        fixed: Keys the run fixes (the pipeline's ``options``): not searched.

    Returns:
        ``(settings, skipped)``: every combination as sorted ``(key, value)`` pairs (``[()]`` when nothing is
        searched), and ``(key=value, reason)`` pairs for values the device cannot run.
    """
    axes: list[list[tuple[str, str]]] = []
    skipped: list[tuple[str, str]] = []
    for spec in runtime.accepted_options:
        wanted = (values or {}).get(spec.key, spec.searched)
        if spec.key in fixed or not wanted:
            continue
        allowed = [value for value in wanted if spec.kind != "choice" or value in spec.choices]
        runnable = []
        for value in allowed:
            reason = runtime.option_unsupported_reason(device, spec.key, value)
            if reason is None:
                runnable.append((spec.key, value))
            else:
                skipped.append((f"{runtime.name}/{spec.key}={value}", reason))
        if runnable:
            axes.append(runnable)
    return [tuple(sorted(combo)) for combo in itertools.product(*axes)], skipped


def enumerate_choices(
    *,
    runtimes: Mapping[str, Runtime],
    precisions: Sequence[str],
    device: str,
    unsupported_reason: UnsupportedReason,
    variants: Sequence[str] = (),
    pins: Pins | None = None,
    option_values: Mapping[str, Sequence[str]] | None = None,
    fixed_options: Collection[str] = (),
    emulated: EmulatedReason | None = None,
) -> tuple[list[Choice], list[tuple[str, str]]]:
    """The valid choices, and the skipped combinations with their reasons.

    Args:
        runtimes: Runtimes to search, by name.
        precisions: Precisions to search (a variant pinned to a precision uses that one).
        device: Where the study runs.
        unsupported_reason: Says whether a (variant, runtime, precision) combination runs here.
        variants: Variants besides the baseline.
        pins: Runtime/precision a variant is fixed to (a variant pinned to ``int8`` is searched only there).
        option_values: Runtime option values to search instead of the declared ones, by key.
        fixed_options: Option keys the study fixes (not searched).
        emulated: Says whether the device computes a precision natively (default: the engine's rule).

    Returns:
        ``(choices, skipped)``; ``skipped`` holds ``(configuration key, reason)`` pairs.
    """
    from mlperf_track.runtimes.registry import get_runtime

    native = emulated or _engine_emulated_reason
    choices: list[Choice] = []
    skipped: list[tuple[str, str]] = []
    for variant in dict.fromkeys([BASELINE, *variants]):
        pin_runtime, pin_precision = (pins or {}).get(variant, (None, None))
        for runtime in [pin_runtime] if pin_runtime else list(runtimes):
            instance = runtimes.get(runtime) or get_runtime(runtime)
            settings, option_skips = option_choices(instance, device, values=option_values, fixed=fixed_options)
            skipped += [(f"{variant}/{key}", reason) for key, reason in option_skips]
            for precision in [pin_precision] if pin_precision else precisions:
                reason = unsupported_reason(variant, runtime, precision) or native(precision, device)
                for options in settings:
                    choice = Choice(variant, runtime, precision, options)
                    if reason is None:
                        choices.append(choice)
                    else:
                        skipped.append((choice.key, reason))
    for key, reason in skipped:
        logger.debug("not searched: %s (%s)", key, reason)
    return choices, skipped
