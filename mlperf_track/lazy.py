"""Lazy package exports (PEP 562): a package names what it offers, each member is imported on first use.

Written here once because the standard library has no helper for it (``importlib.util.LazyLoader`` defers a
whole module, not the names a package re-exports) and several packages need it: ``import mlperf_track.engine``
must stay cheap and never load pynvml, torch.profiler or the load generator until asked.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` whose ``exports`` map a name to its submodule.

    Example, in a package's ``__init__.py``::

        __getattr__, __dir__ = lazy_exports(__name__, {"run_load": "runner"})

    The first access imports ``package.<submodule>`` and caches the value in the package, so later accesses
    cost a dictionary lookup.
    """

    def attribute(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def names() -> list[str]:
        namespace = vars(sys.modules[package])
        return sorted({*namespace, *namespace.get("__all__", ())})

    return attribute, names
