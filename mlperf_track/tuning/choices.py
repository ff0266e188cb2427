"""Which (variant, runtime, precision[, compile mode]) combinations a study may propose.

Runtimes declare what they run (:meth:`Runtime.capabilities`); a session adds what variants need
(:meth:`BenchmarkSession.unsupported_reason`). Only combinations both accept become choices, so the sampler
never proposes a case that cannot run; the rest are reported with their reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Final

from mlperf_track.errors import UnsupportedError
from mlperf_track.spec import PRECISIONS
from mlperf_track.tuning.space import Choice

if TYPE_CHECKING:
    from mlperf_track.runtimes.base import Runtime

logger = logging.getLogger(__name__)

#: ``(variant, runtime, precision) -> None`` when the combination runs here, else why not.
UnsupportedReason = Callable[[str, str, str], "str | None"]
#: A variant's pins: ``(runtime, precision)``, each ``None`` when the variant runs under any.
Pins = Mapping[str, "tuple[str | None, str | None]"]

BASELINE: Final = "baseline"
#: The runtime whose ``compile_mode`` option ``--compile-modes`` searches.
COMPILE_RUNTIME: Final = "compile"
COMPILE_MODE_OPTION: Final = "compile_mode"
#: Precisions that only make sense with a variant that produced them (a quantized model): never searched for
#: the baseline by ``--precisions auto``.
VARIANT_ONLY_PRECISIONS: Final = frozenset({"int8", "fp8"})


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


def auto_precisions(runtimes: Mapping[str, Runtime], device: str) -> tuple[str, ...]:
    """Every precision some available runtime runs on ``device``, except :data:`VARIANT_ONLY_PRECISIONS`."""
    supported: set[str] = set()
    for runtime in runtimes.values():
        if runtime.unavailable_reason() is None:
            supported |= set(runtime.capabilities().precisions(device))
    return tuple(precision for precision in PRECISIONS if precision in supported - VARIANT_ONLY_PRECISIONS)


def enumerate_choices(
    *,
    runtimes: Sequence[str],
    precisions: Sequence[str],
    unsupported_reason: UnsupportedReason,
    variants: Sequence[str] = (),
    pins: Pins | None = None,
    compile_modes: Sequence[str] = (),
) -> tuple[list[Choice], list[tuple[str, str]]]:
    """The valid choices, and the skipped combinations with their reasons.

    Args:
        runtimes: Runtime names to search.
        precisions: Precisions to search.
        unsupported_reason: Says whether a combination runs here.
        variants: Variants besides the baseline.
        pins: Runtime/precision a variant is fixed to (a variant pinned to ``int8`` is searched only there).
        compile_modes: ``compile_mode`` values to search for the ``compile`` runtime.

    Returns:
        ``(choices, skipped)``; ``skipped`` holds ``(configuration key, reason)`` pairs.
    """
    choices: list[Choice] = []
    skipped: list[tuple[str, str]] = []
    for variant in dict.fromkeys([BASELINE, *variants]):
        pin_runtime, pin_precision = (pins or {}).get(variant, (None, None))
        for runtime in [pin_runtime] if pin_runtime else runtimes:
            for precision in [pin_precision] if pin_precision else precisions:
                options: list[tuple[tuple[str, str], ...]] = [()]
                if runtime == COMPILE_RUNTIME and compile_modes:
                    options = [((COMPILE_MODE_OPTION, mode),) for mode in compile_modes]
                for option in options:
                    choice = Choice(variant, runtime, precision, option)
                    reason = unsupported_reason(variant, runtime, precision)
                    if reason is None:
                        choices.append(choice)
                    else:
                        skipped.append((choice.key, reason))
    for key, reason in skipped:
        logger.info("not searched: %s (%s)", key, reason)
    return choices, skipped
