"""The variant registry: every recipe by name, the groups users ask for, and resolution for a device.

Recipes (each module documents what it does and its options; "pins" is what the artifact is fixed to):

- ``quantized_int8_pt2e``: int8 static PTQ, torchao PT2E + X86InductorQuantizer. x86 CPU. Pins int8, compile.
- ``quantized_int8_dynamic``: int8 dynamic quantization of ``nn.Linear`` layers. CPU. Pins int8, eager.
- ``quantized_fp16``: cast to float16. CUDA, or CPUs with native fp16. Pins fp16.
- ``quantized_bf16``: cast to bfloat16. CUDA sm80+, or CPUs with AVX512-BF16/AMX. Pins bf16.
- ``quantized_int8_ort``: ONNX Runtime static int8, QDQ, per-channel weights. CPU. Pins int8, onnxruntime.
- ``quantized_int8_nncf``: OpenVINO int8 from NNCF post-training quantization (Q/DQ ONNX). CPU. Pins int8, openvino.
- ``pruned_unstructured``: global L1 magnitude pruning of weights (sparsity, no speed-up with dense kernels).
- ``pruned_structured``: channel pruning with torch-pruning (a smaller, faster model).
- ``distilled``: Hinton distillation into a smaller student.
- ``pruned_structured+quantized_int8_pt2e``: structured pruning, then PT2E int8. Pins int8, compile.
- ``quantized_int8_weight_only`` / ``quantized_int4_weight_only``: torchao weight-only int8 / int4 of the
  ``nn.Linear`` layers of a text model, where the device has the kernels. Pins fp32 / bf16 and the device.
- ``pruned_mlp_channels``: torch-pruning removes MLP channels of every transformer block (a text model).
- ``distilled_shallow``: a text model with fewer layers, initialised from the teacher's and trained on its logits.

Each recipe declares the kinds of model it applies to (``Variant.workloads``): image models, text encoders,
text decoders. Quantized int8 dynamic and fp16/bf16 apply to all; the two weight-only recipes,
``pruned_mlp_channels`` and ``distilled_shallow`` to text models only; the others to image models only.

Groups: ``quantized`` (the six ``quantized_*``), ``pruned`` (both ``pruned_*``), ``distilled``, and ``all``
(every registered recipe, compositions included). Any ``a+b`` of registered names is a composition too.
``baseline`` is accepted and skipped (the pipeline always measures it).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from mlperf_track.errors import ConfigError, UnsupportedError
from mlperf_track.spec import closest_matches
from mlperf_track.variants.base import Variant
from mlperf_track.variants.compose import SEPARATOR, compose

logger = logging.getLogger(__name__)

BASELINE = "baseline"
_VARIANTS: dict[str, Variant] = {}
_GROUPS: dict[str, list[str]] = {"quantized": [], "pruned": [], "distilled": []}
ALL = "all"


def register_variant(variant: Variant, *, groups: Sequence[str] = ()) -> None:
    """Register ``variant`` under its name (replacing one of that name) and add it to ``groups``."""
    _VARIANTS[variant.name] = variant
    for group in groups:
        members = _GROUPS.setdefault(group, [])
        if variant.name not in members:
            members.append(variant.name)


def _ensure_builtins() -> None:
    if _VARIANTS:
        return
    from mlperf_track.variants.distill import DistilledVariant
    from mlperf_track.variants.distill_text import ShallowDistilledVariant
    from mlperf_track.variants.prune_structured import StructuredPruneVariant
    from mlperf_track.variants.prune_text import PrunedMlpVariant
    from mlperf_track.variants.prune_unstructured import UnstructuredPruneVariant
    from mlperf_track.variants.quantize_dynamic import DynamicInt8Variant
    from mlperf_track.variants.quantize_half import Bf16Variant, Fp16Variant
    from mlperf_track.variants.quantize_nncf import NncfInt8Variant
    from mlperf_track.variants.quantize_ort import OrtInt8Variant
    from mlperf_track.variants.quantize_pt2e import PT2EInt8Variant
    from mlperf_track.variants.quantize_torchao import Int4WeightOnlyVariant, Int8WeightOnlyVariant

    recipes = (
        PT2EInt8Variant(),
        DynamicInt8Variant(),
        Fp16Variant(),
        Bf16Variant(),
        OrtInt8Variant(),
        NncfInt8Variant(),
    )
    for quantized in recipes:
        register_variant(quantized, groups=["quantized"])
    register_variant(UnstructuredPruneVariant(), groups=["pruned"])
    register_variant(StructuredPruneVariant(), groups=["pruned"])
    register_variant(DistilledVariant(), groups=["distilled"])
    register_variant(compose([_VARIANTS["pruned_structured"], _VARIANTS["quantized_int8_pt2e"]]))
    # Text-model recipes (image runs never resolve them: see ``Variant.workloads``).
    for text_quantized in (Int8WeightOnlyVariant(), Int4WeightOnlyVariant()):
        register_variant(text_quantized, groups=["quantized"])
    register_variant(PrunedMlpVariant(), groups=["pruned"])
    register_variant(ShallowDistilledVariant(), groups=["distilled"])


def variant_names() -> list[str]:
    """Registered recipe names, in registration order."""
    _ensure_builtins()
    return list(_VARIANTS)


def group_names() -> list[str]:
    """Group names, ``all`` last."""
    _ensure_builtins()
    return [*_GROUPS, ALL]


def group_members(group: str) -> list[str]:
    """Recipe names in ``group`` (every registered recipe for ``all``)."""
    _ensure_builtins()
    return variant_names() if group == ALL else list(_GROUPS[group])


def get_variant(name: str) -> Variant:
    """The recipe called ``name``; ``a+b`` composes registered recipes.

    Raises:
        ConfigError: Unknown name (the message lists the known names and the closest matches).
    """
    _ensure_builtins()
    name = name.strip()
    if name in _VARIANTS:
        return _VARIANTS[name]
    if SEPARATOR in name:
        return compose([get_variant(part) for part in name.split(SEPARATOR)])
    known = [*variant_names(), *group_names()]
    matches = closest_matches(name, known)
    hint = f"did you mean {', '.join(matches)}?" if matches else "compose recipes with '+'"
    raise ConfigError("variant", name, known, hint)


def resolve_variants(names: Sequence[str], device: str, workload: str = "image") -> list[Variant]:
    """Expand groups and check that each recipe can run on ``device`` here, for a ``workload`` model.

    A recipe named explicitly that cannot run raises; a recipe reached through a group that cannot run (or
    does not apply to the workload) is left out, with a log line saying why. Duplicates are dropped, order is
    kept; ``baseline`` is skipped.

    Args:
        names: Recipe and group names (``["quantized", "distilled"]``).
        device: ``cpu`` or ``cuda``.
        workload: ``image``, ``tokens`` (text encoder) or ``generation`` (text decoder).

    Raises:
        ConfigError: An unknown name.
        UnsupportedError: A recipe named explicitly cannot run on ``device`` (the message says why).
    """
    _ensure_builtins()
    resolved: dict[str, Variant] = {}
    for raw in names:
        name = raw.strip()
        if name in ("", BASELINE):
            continue
        if name == ALL or name in _GROUPS:
            for member in group_members(name):
                variant = _VARIANTS[member]
                if workload not in variant.workloads:
                    logger.debug("variant %s of group %s does not apply to %s models", member, name, workload)
                    continue
                reason = variant.unavailable_reason(device)
                if reason is None:
                    resolved.setdefault(member, variant)
                else:
                    logger.info("skipping variant %s of group %s on %s: %s", member, name, device, reason)
            continue
        variant = get_variant(name)
        if workload not in variant.workloads:
            raise UnsupportedError(
                "variant", name, hint=f"it applies to {', '.join(sorted(variant.workloads))} models, not {workload}"
            )
        reason = variant.unavailable_reason(device)
        if reason is not None:
            raise UnsupportedError("variant", name, hint=reason)
        resolved.setdefault(variant.name, variant)
    return list(resolved.values())
