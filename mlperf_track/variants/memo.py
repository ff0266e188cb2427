"""Build each expensive recipe once per baseline and context in a process.

A composition such as ``pruned_structured+quantized_int8_pt2e`` starts with a step the pipeline usually
builds on its own too (``pruned_structured``, with its recovery fine-tune: about a minute for resnet50 at
64 px on two cores). Remembering results by the baseline module (weakly: a discarded baseline frees them),
its tags, and everything in the context that changes the result lets the composition reuse that work.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from typing import TypeVar

from mlperf_track.models.artifact import ModelArtifact
from mlperf_track.variants.base import Variant, VariantContext

_V = TypeVar("_V", bound=Variant)
Build = Callable[[_V, ModelArtifact, VariantContext], ModelArtifact]

_RESULTS: weakref.WeakKeyDictionary[object, dict[tuple[object, ...], ModelArtifact]] = weakref.WeakKeyDictionary()


def _context_key(context: VariantContext) -> tuple[object, ...]:
    # The dataset is identified by the object: splits are not hashable, and a new load may differ.
    options = tuple(sorted((str(key), str(value)) for key, value in context.options.items()))
    return (context.device, id(context.data), context.image_size, context.seed, context.epochs, options)


def memoized(build: Build[_V]) -> Build[_V]:
    """Decorate :meth:`Variant.build` so the same (recipe, baseline module, context) is built once."""

    @functools.wraps(build)
    def wrapper(self: _V, baseline: ModelArtifact, context: VariantContext) -> ModelArtifact:
        if baseline.module is None:
            return build(self, baseline, context)
        results = _RESULTS.setdefault(baseline.module, {})
        # The artifact's tags too: a recipe may read them (the retraining ones stop at the baseline's holdout score).
        tags = tuple(sorted(baseline.tags.items()))
        key = (type(self).__qualname__, self.name, _context_key(context), tags)
        if key not in results:
            results[key] = build(self, baseline, context)
        return results[key]

    return wrapper


def forget_all() -> None:
    """Drop every remembered result (tests; or to free memory early)."""
    _RESULTS.clear()
