"""Declared ``--option KEY=VALUE`` settings of the runtimes and variants, and their up-front check.

Each runtime and variant declares the option keys it reads as a class attribute ``accepted_options`` (a tuple of
:class:`OptionSpec`), next to the code that reads them. :func:`check_options` checks a run's options against
the members it selected before any work starts: an unknown key or a bad value is one :class:`ConfigError`
naming the key, the value and what is allowed (the optimum-benchmark idea: a typed config per backend, where
unknown keys are errors, instead of free strings checked only when a case is prepared).

This module imports only :mod:`mlperf_track.errors` and :mod:`mlperf_track.spec`, so every layer may use it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from mlperf_track.errors import ConfigError
from mlperf_track.spec import closest_matches

OptionKind = Literal["choice", "int", "float", "text"]


@dataclass(frozen=True)
class OptionSpec:
    """One option key a runtime or variant reads.

    Attributes:
        key: The key users write (``compile_mode``).
        help: One sentence: what it changes.
        kind: ``choice`` (one of ``choices``), ``int``, ``float`` or ``text`` (any non-empty string).
        choices: The allowed values of a ``choice``.
        low: Lower bound of an ``int`` or ``float`` (``None``: unbounded).
        high: Upper bound of a ``float`` (``None``: unbounded).
        closed: Whether a ``float``'s bounds are allowed values (``[low, high]``) or not (``(low, high)``).
            An ``int``'s ``low`` is always allowed.
        default: The default as users would write it, for the documentation.
        searched: The values a tuner searches (a subset of ``choices`` the member's author judges worth
            measuring, e.g. compile modes but not debug settings); empty: a tuner leaves the option at its
            default. Whether a value runs on a device is the member's to say
            (:meth:`~mlperf_track.runtimes.base.Runtime.option_unsupported_reason`).
        accepts_auto: Whether ``auto`` is allowed besides the kind's values (an ``int`` of training epochs
            that may also be "until converged").
    """

    key: str
    help: str
    kind: OptionKind = "choice"
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    closed: bool = False
    default: str = ""
    searched: tuple[str, ...] = ()
    accepts_auto: bool = False

    def allowed(self) -> str:
        """What values are allowed, in words (``one of a, b``, ``an integer >= 1``, ``a number in (0, 1)``)."""
        return self._allowed_values() + (", or auto" if self.accepts_auto else "")

    def _allowed_values(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(self.choices)
        if self.kind == "int":
            return "an integer" if self.low is None else f"an integer >= {self.low:g}"
        if self.kind == "text":
            return "a non-empty text"
        left, right = ("[", "]") if self.closed else ("(", ")")
        if self.low is not None and self.high is not None:
            return f"a number in {left}{self.low:g}, {self.high:g}{right}"
        if self.low is not None:
            return f"a number {'>=' if self.closed else '>'} {self.low:g}"
        if self.high is not None:
            return f"a number {'<=' if self.closed else '<'} {self.high:g}"
        return "a number"

    def check(self, value: str) -> None:
        """Raise :class:`ConfigError` (parameter ``--option KEY``) when ``value`` is not allowed."""
        text = str(value).strip()
        if self.accepts_auto and text.lower() == "auto":
            return
        if self.kind == "choice":
            if text not in self.choices:
                matches = closest_matches(text, self.choices)
                raise ConfigError(self._parameter, value, self.allowed(), _did_you_mean(matches))
            return
        if self.kind == "text":
            if not text:
                raise ConfigError(self._parameter, value, self.allowed())
            return
        if not self._in_range(text):
            raise ConfigError(self._parameter, value, self.allowed())

    @property
    def _parameter(self) -> str:
        return f"--option {self.key}"

    def _in_range(self, text: str) -> bool:
        try:
            number = float(int(text)) if self.kind == "int" else float(text)
        except ValueError:
            return False
        if not math.isfinite(number):
            return False
        if self.kind == "int":
            return self.low is None or number >= self.low
        above = self.low is None or (number >= self.low if self.closed else number > self.low)
        below = self.high is None or (number <= self.high if self.closed else number < self.high)
        return above and below


def _did_you_mean(matches: Sequence[str]) -> str | None:
    return f"did you mean {', '.join(matches)}?" if matches else None


def check_options(
    options: Iterable[tuple[str, str]],
    selected: Mapping[str, Sequence[OptionSpec]],
    known: Mapping[str, Sequence[OptionSpec]] | None = None,
) -> None:
    """Check every ``(key, value)`` against the options the selected runtimes and variants declare.

    Args:
        options: The run's options.
        selected: Declared options of each runtime and variant the run uses, by member name.
        known: Declared options of every registered member (for the hint "an option of X, which is not
            selected"); defaults to ``selected``.

    Raises:
        ConfigError: A key no selected member declares (with the closest keys, or the members that would take
            it), or a value its declaration does not allow.
    """
    specs: dict[str, OptionSpec] = {}
    for declared in selected.values():
        for spec in declared:
            specs.setdefault(spec.key, spec)
    for key, value in options:
        if key not in specs:
            raise _unknown_key(key, value, specs, selected, known or selected)
        specs[key].check(value)


def _unknown_key(
    key: str,
    value: str,
    specs: Mapping[str, OptionSpec],
    selected: Mapping[str, Sequence[OptionSpec]],
    known: Mapping[str, Sequence[OptionSpec]],
) -> ConfigError:
    owners = sorted(name for name, declared in known.items() if any(spec.key == key for spec in declared))
    names = ", ".join(sorted(selected)) or "none"
    if specs:
        allowed: str = f"a key of {names}: {', '.join(sorted(specs))}"
    else:
        allowed = f"no key ({names} declare no options)"
    if owners:
        hint: str | None = f"{key} is an option of {', '.join(owners)}, which this run does not use"
    else:
        hint = _did_you_mean(closest_matches(key, specs))
    return ConfigError("--option", f"{key}={value}", allowed, hint)
