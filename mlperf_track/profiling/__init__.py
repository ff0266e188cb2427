"""Where a case's time goes: torch.profiler traces, flame graphs, top operators and Python overhead.

The profiling layer sits beside the engine: it imports torch (lazily) and nothing of mlflow.
"""

from __future__ import annotations

from mlperf_track.profiling.flamegraph import render_flamegraph, write_flamegraph
from mlperf_track.profiling.python_profile import profile_python
from mlperf_track.profiling.stacks import fold_events, write_folded
from mlperf_track.profiling.torch_profile import profile_prepared

__all__ = [
    "fold_events",
    "profile_prepared",
    "profile_python",
    "render_flamegraph",
    "write_flamegraph",
    "write_folded",
]
