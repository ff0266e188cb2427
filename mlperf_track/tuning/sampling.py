"""Samplers for the study, and why TPE with an initial design is the default.

``auto``/``tpe``: :class:`optuna.samplers.TPESampler`, started from an *initial design* that the study's
creator enqueues: each configuration once, at the middle batch size (and thread count) -- see
:func:`initial_design`. Those trials rank the configurations (a faster precision or runtime is faster at
most batch sizes), so TPE spends the rest of the budget on the promising configurations and their batch
sizes instead of on random start-up trials (Optuna's default of 10 random trials is most of a budget of 12).
Otherwise TPE keeps Optuna 5's defaults: multivariate for one objective (configuration and batch size
modelled jointly), independent for several (MOTPE), and ``constant_liar`` (parallel workers do not all
propose the same point while earlier trials run). Optuna 4.9 deprecated the knobs that would tune it
further (``gamma``, ``prior_weight``, ``weights``, ...), so none is used. On replayed grids
(``benchmarks/search_efficiency.py``) the design mattered most: without it TPE was hardly better than random
search at a quarter of the grid. TPE reads the constraints set with :meth:`optuna.Trial.set_constraint`
(c-TPE, Optuna >= 5) and handles several objectives, which suits budgets of tens of trials better than
NSGA-II's generations of 50.

``grid``: :class:`optuna.samplers.GridSampler` over the whole space (exhaustive; the reference).
``random``: :class:`optuna.samplers.RandomSampler`.
``nsga2``: :class:`optuna.samplers.NSGAIISampler` (constrained dominance; for large multi-objective budgets).
"""

from __future__ import annotations

import hashlib
import os
import random
import socket
import warnings
from typing import Any, Final

import optuna

from mlperf_track.tuning.space import BATCH_PARAM, CONFIG_PARAM, THREADS_PARAM, SearchSpace

#: Random start-up trials of TPE are a fifth of the budget, within these bounds.
MIN_STARTUP_TRIALS: Final = 4
MAX_STARTUP_TRIALS: Final = 10
#: Samplers that start from :func:`initial_design`.
DESIGNED_SAMPLERS: Final = ("auto", "tpe")


def startup_trials(n_trials: int, space_size: int) -> int:
    """Random trials before TPE models the results: ``n_trials / 5`` within [4, 10], never above the space."""
    return max(1, min(space_size, MAX_STARTUP_TRIALS, max(MIN_STARTUP_TRIALS, n_trials // 5)))


def initial_design(space: SearchSpace, n_trials: int, seed: int) -> list[dict[str, Any]]:
    """Params of the first trials: each configuration once at the middle batch size and thread count.

    At most half the budget is spent on it; with more configurations than that, a seeded random subset.
    """
    choices = list(space.choices)
    limit = max(1, n_trials // 2)
    if len(choices) > limit:
        choices = sorted(random.Random(seed).sample(choices, limit))
    params: dict[str, Any] = {BATCH_PARAM: len(space.batch_sizes) // 2}  # the upper middle of an even count
    if space.threads:
        params[THREADS_PARAM] = len(space.threads) // 2
    return [{CONFIG_PARAM: choice.key, **params} for choice in choices]


def worker_seed(seed: int, *, shared: bool) -> int:
    """The sampler seed of this process.

    An in-memory study has one worker, so ``seed`` makes it reproducible. A study in a database may have many
    workers started with the same ``--seed``; each gets a seed derived from ``seed``, the host and the process
    id, or they would all propose the same points.
    """
    if not shared:
        return seed
    digest = hashlib.sha256(f"{seed}:{socket.gethostname()}:{os.getpid()}".encode()).hexdigest()
    return int(digest[:8], 16)


def make_sampler(name: str, space: SearchSpace, *, seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    """The sampler called ``name`` (one of :data:`mlperf_track.tuning.config.SAMPLERS`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name in ("auto", "tpe"):
            return optuna.samplers.TPESampler(
                seed=seed, constant_liar=True, n_startup_trials=startup_trials(n_trials, space.size)
            )
        if name == "grid":
            return optuna.samplers.GridSampler(space.grid(), seed=seed)
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if name == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed)
    raise ValueError(f"unknown sampler {name!r}")
