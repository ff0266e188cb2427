"""The runtimes, registered by name in one place.

Adding a runtime means adding its module and one line to :data:`_RUNTIMES`; nothing else changes.
Members import their heavy dependencies only in ``prepare``/``capabilities``, so listing them is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlperf_track.runtimes.compile import CompileRuntime
from mlperf_track.runtimes.eager import EagerRuntime
from mlperf_track.runtimes.ort import OnnxRuntimeRuntime
from mlperf_track.runtimes.ov import OpenVinoRuntime
from mlperf_track.runtimes.trt import TensorRtRuntime
from mlperf_track.spec import check_choice

if TYPE_CHECKING:
    from mlperf_track.runtimes.base import Runtime

_RUNTIMES: dict[str, type[Runtime]] = {
    runtime.name: runtime
    for runtime in (EagerRuntime, CompileRuntime, OnnxRuntimeRuntime, TensorRtRuntime, OpenVinoRuntime)
}


def runtime_names() -> list[str]:
    """Names of every registered runtime, in a stable order (eager first)."""
    return list(_RUNTIMES)


def get_runtime(name: str) -> Runtime:
    """A new instance of the runtime called ``name``.

    Raises:
        ConfigError: ``name`` is not registered; the message lists the names and the closest matches.
    """
    check_choice("runtime", name, runtime_names())
    return _RUNTIMES[name]()
