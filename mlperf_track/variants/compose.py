"""Compositions: recipes applied one after the other (``pruned_structured+quantized_int8_pt2e``).

Every step but the last must leave a PyTorch module that is not pinned to a runtime (a PT2E graph or an
ONNX file cannot be pruned further), which :meth:`ComposedVariant.build` checks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from mlperf_track.errors import UnsupportedError
from mlperf_track.models.artifact import ModelArtifact
from mlperf_track.variants.base import Variant, VariantContext

#: Joins the step names of a composition.
SEPARATOR = "+"


def prefixes(name: str) -> list[str]:
    """The variants a build of ``name`` goes through, in order: ``a+b+c`` -> ``a``, ``a+b``, ``a+b+c``."""
    steps = name.split(SEPARATOR)
    return [SEPARATOR.join(steps[: count + 1]) for count in range(len(steps))]


class ComposedVariant(Variant):
    """Apply ``steps`` in order. Create with :func:`compose`."""

    steps: tuple[Variant, ...] = ()

    def unavailable_reason(self, device: str) -> str | None:
        """The first step's reason, if any step cannot run on ``device``."""
        for step in self.steps:
            reason = step.unavailable_reason(device)
            if reason is not None:
                return f"{step.name}: {reason}"
        return None

    def build(self, baseline: ModelArtifact, context: VariantContext) -> ModelArtifact:
        """Build each step from the previous step's artifact."""
        artifact = baseline
        for index, step in enumerate(self.steps):
            if index > 0 and (artifact.module is None or artifact.runtime is not None):
                raise UnsupportedError(
                    "variant",
                    self.name,
                    hint=f"{self.steps[index - 1].name} must come last: its result cannot be transformed further",
                )
            artifact = step.build(artifact, context)
        # A new artifact: the last step's result may be remembered and shared (see memo.py).
        tags = {**artifact.tags, "variant.recipe": self.name, "variant.base": baseline.name}
        return dataclasses.replace(artifact, tags=tags)


def compose(steps: Sequence[Variant]) -> ComposedVariant:
    """A variant named ``a+b+...`` that applies ``steps`` in order."""
    name = SEPARATOR.join(step.name for step in steps)
    extras = sorted({step.extra for step in steps if step.extra})
    accepted = tuple(dict.fromkeys(spec for step in steps for spec in step.accepted_options))
    pinned = {
        "pinned_precision": next((step.pinned_precision for step in reversed(steps) if step.pinned_precision), None),
        "pinned_runtime": next((step.pinned_runtime for step in reversed(steps) if step.pinned_runtime), None),
    }
    workloads = frozenset.intersection(*(step.workloads for step in steps)) if steps else frozenset()
    members = {
        "name": name,
        "extra": ",".join(extras) or None,
        "steps": tuple(steps),
        "accepted_options": accepted,
        "workloads": workloads,
        "trains": any(step.trains for step in steps),
        **pinned,
    }
    return type("ComposedVariant", (ComposedVariant,), members)()
