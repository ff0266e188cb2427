"""The search space: valid (variant, runtime, precision[, options]) choices x batch size [x CPU threads].

Why one categorical ``config`` parameter over *valid* combinations, plus ordinal batch size and thread count:

- Runtime, precision and variant are not independent: ``fp16`` exists for ``eager`` on CUDA but not for
  ``onnxruntime`` on the CPU, a quantized variant is pinned to ``int8`` and one runtime, a compile mode only
  means something for ``compile``. Separate or conditional parameters either propose combinations that cannot
  run (wasted, failed trials) or make the space dynamic, which ``GridSampler`` cannot express and which
  multivariate TPE splits into independent, less informed draws. One categorical over the valid tuples keeps
  the space static, so every sampler sees the same, fully valid space, and a study can be resumed or shared by
  workers without distribution conflicts. (The cost-aware sampler reads the parts of each key as features.)
- Batch size and thread count are ordered: they are integer parameters with their *real* values on a log
  scale (``batch_size`` = 32, as a person reading the study in optuna-dashboard expects), so TPE and GP model
  them along the axis and learn "larger batches were better". Only the candidate values are ever proposed:
  every sampler is wrapped (:mod:`mlperf_track.tuning.sampling`) so that a value between two candidates is
  moved to the nearest one on the log scale, and :meth:`SearchSpace.point` does the same for any other value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final

from mlperf_track.errors import ConfigError
from mlperf_track.spec import CaseSpec, check_positive_int

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import BaseDistribution

#: Optuna parameter names.
CONFIG_PARAM: Final = "config"
BATCH_PARAM: Final = "batch_size"
THREADS_PARAM: Final = "num_threads"
_SEPARATOR: Final = "/"


def nearest(candidates: tuple[int, ...], value: Any) -> int:
    """The candidate nearest to ``value`` on a log scale (ties go to the smaller one)."""
    target = math.log(max(float(value), 1e-9))
    return min(candidates, key=lambda candidate: (abs(math.log(candidate) - target), candidate))


@dataclass(frozen=True, order=True)
class Choice:
    """One runnable (variant, runtime, precision, options) combination.

    Attributes:
        variant: ``baseline`` or a variant name.
        runtime: Runtime name.
        precision: Precision name.
        options: Runtime options as sorted ``(key, value)`` pairs (``compile_mode``).
    """

    variant: str
    runtime: str
    precision: str
    options: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> str:
        """The categorical value: ``variant/runtime/precision[/key=value...]``."""
        parts = [self.variant, self.runtime, self.precision, *(f"{key}={value}" for key, value in self.options)]
        return _SEPARATOR.join(parts)

    @classmethod
    def from_key(cls, key: str) -> Choice:
        """Inverse of :attr:`key`."""
        parts = key.split(_SEPARATOR)
        if len(parts) < 3:
            raise ValueError(f"not a configuration key: {key!r}")
        options = tuple(tuple(part.split("=", 1)) for part in parts[3:])
        return cls(parts[0], parts[1], parts[2], options)  # type: ignore[arg-type]


@dataclass(frozen=True)
class TrialPoint:
    """What one trial measures."""

    choice: Choice
    batch_size: int
    num_threads: int | None = None

    def to_case(self, template: CaseSpec) -> CaseSpec:
        """The case: ``template`` (model, device, image size, dataset) with this point's settings."""
        return replace(
            template,
            variant=self.choice.variant,
            runtime=self.choice.runtime,
            precision=self.choice.precision,
            batch_size=self.batch_size,
            num_threads=self.num_threads if self.num_threads is not None else template.num_threads,
            options=tuple(sorted({**dict(template.options), **dict(self.choice.options)}.items())),
        )

    def attrs(self) -> dict[str, Any]:
        """Readable settings (for trial user attributes and tables)."""
        return {
            "variant": self.choice.variant,
            "runtime": self.choice.runtime,
            "precision": self.choice.precision,
            "batch_size": self.batch_size,
            "num_threads": self.num_threads,
            **{f"option.{key}": value for key, value in self.choice.options},
        }


@dataclass(frozen=True)
class SearchSpace:
    """The static space every trial of a study draws from.

    Attributes:
        choices: Valid combinations, in a stable order.
        batch_sizes: Candidate batch sizes, ascending.
        threads: Candidate CPU thread counts, ascending; empty when threads are not searched.
        skipped: Combinations left out, with the reason (for the log and the parent run).
    """

    choices: tuple[Choice, ...]
    batch_sizes: tuple[int, ...]
    threads: tuple[int, ...] = ()
    skipped: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if not self.choices:
            reasons = "; ".join(f"{key}: {reason}" for key, reason in self.skipped) or "nothing was asked for"
            raise ConfigError("search space", "empty", "at least one runnable runtime/precision", hint=reasons)
        if len({choice.key for choice in self.choices}) != len(self.choices):
            raise ConfigError("search space", [c.key for c in self.choices], "distinct configurations")
        if not self.batch_sizes:
            raise ConfigError("--batch-sizes", "", "at least one batch size")
        for value in self.batch_sizes:
            check_positive_int("--batch-sizes", value)
        for value in self.threads:
            check_positive_int("--threads", value)
        object.__setattr__(self, "batch_sizes", tuple(sorted(set(self.batch_sizes))))
        object.__setattr__(self, "threads", tuple(sorted(set(self.threads))))

    @property
    def size(self) -> int:
        """Number of distinct points."""
        return len(self.choices) * len(self.batch_sizes) * max(1, len(self.threads))

    def distributions(self) -> dict[str, BaseDistribution]:
        """The Optuna distributions, by parameter name (batch size and threads: real values, log scale)."""
        from optuna.distributions import CategoricalDistribution, IntDistribution

        result: dict[str, BaseDistribution] = {
            CONFIG_PARAM: CategoricalDistribution([choice.key for choice in self.choices]),
            BATCH_PARAM: IntDistribution(self.batch_sizes[0], self.batch_sizes[-1], log=True),
        }
        if self.threads:
            result[THREADS_PARAM] = IntDistribution(self.threads[0], self.threads[-1], log=True)
        return result

    def grid(self) -> dict[str, list[Any]]:
        """The space as :class:`optuna.samplers.GridSampler` wants it."""
        grid: dict[str, list[Any]] = {
            CONFIG_PARAM: [choice.key for choice in self.choices],
            BATCH_PARAM: list(self.batch_sizes),
        }
        if self.threads:
            grid[THREADS_PARAM] = list(self.threads)
        return grid

    def suggest(self, trial: optuna.Trial) -> TrialPoint:
        """Draw a point for ``trial`` (always a runnable combination)."""
        params: dict[str, Any] = {
            CONFIG_PARAM: trial.suggest_categorical(CONFIG_PARAM, [choice.key for choice in self.choices]),
            BATCH_PARAM: trial.suggest_int(BATCH_PARAM, self.batch_sizes[0], self.batch_sizes[-1], log=True),
        }
        if self.threads:
            params[THREADS_PARAM] = trial.suggest_int(THREADS_PARAM, self.threads[0], self.threads[-1], log=True)
        return self.point(params)

    def snap(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` with batch size and threads moved to the nearest candidate (log scale)."""
        snapped = dict(params)
        for name, candidates in ((BATCH_PARAM, self.batch_sizes), (THREADS_PARAM, self.threads)):
            if name in snapped and candidates:
                snapped[name] = nearest(candidates, snapped[name])
        return snapped

    def holds_point(self, params: Mapping[str, Any]) -> bool:
        """Whether ``params`` name a whole point (a trial another worker is still suggesting may hold only some)."""
        return CONFIG_PARAM in params and BATCH_PARAM in params and (not self.threads or THREADS_PARAM in params)

    def point(self, params: Mapping[str, Any]) -> TrialPoint:
        """The point of a trial's params (as stored by Optuna; off-candidate values snap to the nearest)."""
        snapped = self.snap(params)
        threads = int(snapped[THREADS_PARAM]) if self.threads else None
        choice = Choice.from_key(str(snapped[CONFIG_PARAM]))
        return TrialPoint(choice, int(snapped[BATCH_PARAM]), threads)

    def params_of(self, point: TrialPoint) -> dict[str, Any]:
        """The Optuna params of ``point`` (inverse of :meth:`point`)."""
        params: dict[str, Any] = {CONFIG_PARAM: point.choice.key, BATCH_PARAM: point.batch_size}
        if self.threads:
            params[THREADS_PARAM] = point.num_threads
        return params

    def points(self) -> list[TrialPoint]:
        """Every point of the space (grid order)."""
        threads: tuple[int | None, ...] = self.threads or (None,)
        return [TrialPoint(c, b, t) for c in self.choices for b in self.batch_sizes for t in threads]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (stored with the study, so a resumed study can be checked against it)."""
        return {
            "choices": [choice.key for choice in self.choices],
            "batch_sizes": list(self.batch_sizes),
            "threads": list(self.threads),
        }
