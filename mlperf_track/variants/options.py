"""Reading recipe parameters from :attr:`VariantContext.options`.

Options arrive as strings (``--options ratio=0.3``) and are shared with the runtimes, so a recipe reads only the
keys it knows. Which keys those are is declared on the recipe (``accepted_options``, see
:mod:`mlperf_track.options`): the command line refuses a key no selected runtime or variant declares, and a value
its declaration does not allow, before any work starts. These readers check the value again (the Python API and
the tuner build configurations without the command line) and raise :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from mlperf_track.errors import ConfigError


def option_float(
    options: Mapping[str, str],
    key: str,
    default: float,
    *,
    low: float | None = None,
    high: float | None = None,
    allowed: str | None = None,
) -> float:
    """``options[key]`` as a float strictly between ``low`` and ``high`` (when given), else ``default``.

    Raises:
        ConfigError: The value is not a number or lies outside ``(low, high)``.
    """
    raw = options.get(key)
    if raw is None:
        return default
    description = allowed or _interval(low, high)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ConfigError(key, raw, description) from None
    if not math.isfinite(value) or (low is not None and value <= low) or (high is not None and value >= high):
        raise ConfigError(key, raw, description)
    return value


def option_int(options: Mapping[str, str], key: str, default: int, *, minimum: int = 0) -> int:
    """``options[key]`` as an integer ``>= minimum``, else ``default``.

    Raises:
        ConfigError: The value is not an integer or is below ``minimum``.
    """
    raw = options.get(key)
    if raw is None:
        return default
    try:
        value = int(str(raw))
    except ValueError:
        raise ConfigError(key, raw, f"an integer >= {minimum}") from None
    if value < minimum:
        raise ConfigError(key, raw, f"an integer >= {minimum}")
    return value


def option_str(options: Mapping[str, str], key: str, default: str) -> str:
    """``options[key]`` stripped, else ``default`` (also for an empty value)."""
    raw = options.get(key)
    return str(raw).strip() if raw is not None and str(raw).strip() else default


def _interval(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"a number in ({low:g}, {high:g})"
    if low is not None:
        return f"a number > {low:g}"
    if high is not None:
        return f"a number < {high:g}"
    return "a number"
