"""The up-front check of a pipeline's ``--options`` against what its runtimes and variants declare.

The one place that maps a :class:`PipelineConfig`'s runtime and variant names (groups expanded) to the option keys
they declare (``accepted_options``) and checks the options with :func:`mlperf_track.options.check_options`. The
command line calls it before any work starts; a caller of the Python API may call it the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlperf_track.options import OptionSpec
    from mlperf_track.pipeline.config import PipelineConfig


def declared_options(
    config: PipelineConfig,
) -> tuple[dict[str, tuple[OptionSpec, ...]], dict[str, tuple[OptionSpec, ...]]]:
    """The options declared by the runtimes and variants ``config`` selects, and by every registered one."""
    from mlperf_track.runtimes.registry import get_runtime, runtime_names
    from mlperf_track.variants.registry import BASELINE, get_variant, group_members, group_names, variant_names

    known = {name: get_runtime(name).accepted_options for name in runtime_names()}
    known.update({name: get_variant(name).accepted_options for name in variant_names()})
    from mlperf_track.variants.text_baseline import TEXT_TRAIN_OPTIONS

    # The baseline of a text model trains with options of its own (it is always part of a run).
    known["baseline"] = TEXT_TRAIN_OPTIONS
    selected = {name: get_runtime(name).accepted_options for name in config.runtimes}
    from mlperf_track.pipeline.session import TEXT_PREFIXES

    if config.model.startswith(TEXT_PREFIXES):
        selected["baseline"] = TEXT_TRAIN_OPTIONS
    for name in config.variants:
        if name == BASELINE:
            continue
        for member in group_members(name) if name in group_names() else [name]:
            selected[member] = get_variant(member).accepted_options
    return selected, known


def check_declared_options(config: PipelineConfig) -> None:
    """Refuse an ``--option`` key no selected runtime or variant declares, or a value its declaration refuses.

    Raises:
        ConfigError: One line naming the key, the value and what is allowed.
    """
    from mlperf_track.options import check_options

    if not config.options:
        return
    selected, known = declared_options(config)
    check_options(config.options, selected, known)
