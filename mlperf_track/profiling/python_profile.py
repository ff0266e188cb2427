"""Python-side overhead of a prepared model: cProfile statistics and, when installed, a pyinstrument page.

torch.profiler shows operators; these show the Python that dispatches them (module hooks, argument
handling, runtime bindings), which dominates small batches.
"""

from __future__ import annotations

import cProfile
import io
import logging
import pstats
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)


def profile_python(call: Callable[[], object], *, steps: int, output_dir: Path, title: str) -> dict[str, Path]:
    """Run ``call`` ``steps`` times under cProfile, then again under pyinstrument when it is installed.

    Args:
        call: One step (already warmed up, synchronised by the caller when needed).
        steps: Calls per profiler.
        output_dir: Where the files go.
        title: Heading of the text summary.

    Returns:
        ``python.prof`` (pstats, for snakeviz or ``python -m pstats``), ``python_stats.txt`` (top functions
        by cumulative time) and, with pyinstrument, ``python_profile.html``.
    """
    files: dict[str, Path] = {}
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        for _ in range(steps):
            call()
    finally:
        profiler.disable()
    files["python.prof"] = output_dir / "python.prof"
    profiler.dump_stats(files["python.prof"])
    text = io.StringIO()
    text.write(f"{title}: cProfile over {steps} step(s), top 40 functions by cumulative time\n\n")
    pstats.Stats(profiler, stream=text).strip_dirs().sort_stats("cumulative").print_stats(40)
    files["python_stats.txt"] = output_dir / "python_stats.txt"
    files["python_stats.txt"].write_text(text.getvalue(), encoding="utf-8")
    html = _pyinstrument_html(call, steps)
    if html is not None:
        files["python_profile.html"] = output_dir / "python_profile.html"
        files["python_profile.html"].write_text(html, encoding="utf-8")
    return files


def _pyinstrument_html(call: Callable[[], object], steps: int) -> str | None:
    """pyinstrument's interactive HTML page, or ``None`` when pyinstrument is not installed (it is optional)."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        logger.info("pyinstrument is not installed (pip install 'mlperf-track[report]'): no python_profile.html")
        return None
    # A 0.1 ms interval: a step of a small model lasts only a few milliseconds.
    profiler = Profiler(interval=0.0001)
    profiler.start()
    try:
        for _ in range(steps):
            call()
    finally:
        profiler.stop()
    return str(profiler.output_html())
