"""Imports point down only (docs/architecture.md, "Layers"): every package imports only the layers below it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import mlperf_track

PACKAGE = Path(mlperf_track.__file__).parent

#: Modules every layer may import (they import nothing of the package but each other).
FOUNDATION = frozenset({"errors", "spec", "metrics", "lazy", "secrets", "options", "liveness", "interrupts"})
_BELOW_ENGINE = FOUNDATION | {"models", "data", "training"}
_BELOW_FAMILIES = _BELOW_ENGINE | {"engine"}
_BELOW_PIPELINE = _BELOW_FAMILIES | {"runtimes", "variants", "profiling"}
_BELOW_ADAPTERS = _BELOW_PIPELINE | {"pipeline"}
#: Layer -> the layers it may import. runtimes and variants are siblings: neither imports the other (the
#: pipeline, which knows both, hands a recipe what it needs from a runtime, e.g. ``VariantContext.onnx_exporter``).
ALLOWED: dict[str, frozenset[str]] = {
    **{name: FOUNDATION for name in ("models", "data", "training")},
    "engine": _BELOW_ENGINE,
    "runtimes": _BELOW_FAMILIES,
    "variants": _BELOW_FAMILIES,
    "profiling": _BELOW_FAMILIES | {"runtimes"},
    "pipeline": _BELOW_PIPELINE,
    "report": _BELOW_ADAPTERS,
    "tracking": _BELOW_ADAPTERS | {"report"},
    "tuning": _BELOW_ADAPTERS | {"report", "tracking"},
}


def _package_imports(layer: str) -> dict[str, set[str]]:
    """Imported layer -> the files of ``layer`` importing it, for every import (lazy ones included)."""
    found: dict[str, set[str]] = {}
    for path in (PACKAGE / layer).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                parts = name.split(".")
                if parts[0] == "mlperf_track" and len(parts) > 1 and parts[1] != layer:
                    found.setdefault(parts[1], set()).add(str(path.relative_to(PACKAGE)))
    return found


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_layer_imports_only_the_layers_below_it(layer: str) -> None:
    imports = _package_imports(layer)
    upward = {target: sorted(files) for target, files in imports.items() if target not in ALLOWED[layer]}
    assert not upward, f"{layer} imports layers above or beside it: {upward}"


def test_the_rule_can_fail() -> None:
    # the check sees lazy imports inside functions too: the pipeline imports runtimes, which variants may not
    assert "runtimes" in _package_imports("pipeline")
    assert "runtimes" not in ALLOWED["variants"]
