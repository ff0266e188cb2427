"""Render the HTML report and the flame graph in headless Chromium, so a person can check what users see.

By default it runs a small profiled pipeline (``tinycnn`` on the CPU, eager, two batch sizes, the digits
dataset) into a throw-away MLflow store, builds the experiment's report, and screenshots:

- ``report_top.png`` (the first screen) and ``report_full.png`` (the whole page) of ``report.html``;
- ``flamegraph.png`` (as a browser shows the SVG), ``flamegraph_zoomed.png`` (after clicking the widest
  frame two levels up, which exercises the embedded zoom script) and ``flamegraph_img.png`` (the SVG in an
  ``<img>`` tag, where scripts do not run, as in the MLflow artifact viewer).

Pass ``--report-html`` and/or ``--flamegraph`` to screenshot existing files instead. Needs Chromium
(Debian: ``apt-get install -y chromium``)::

    .venv/bin/python scripts/screenshots.py --output-dir screenshots
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

logger = logging.getLogger("screenshots")

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WINDOW = (1400, 900)
#: Rough heights (pixels at 1400 px wide) used to size the whole-page screenshot of a report.
PAGE_BASE, ROW_HEIGHT, FIGURE_HEIGHT, MAX_PAGE_HEIGHT = 700, 34, 560, 16000
# Appended to a copy of the flame graph: click the widest frame at depth 2 and hover it, once loaded.
ZOOM_SCRIPT = """<script type="text/ecmascript"><![CDATA[
(function () {
  var frames = Array.prototype.slice.call(document.querySelectorAll("g.f"));
  var level = frames.filter(function (g) { return g.getAttribute("data-d") === "2"; });
  if (!level.length) { level = frames; }
  level.sort(function (a, b) { return parseFloat(b.getAttribute("data-w")) - parseFloat(a.getAttribute("data-w")); });
  level[0].dispatchEvent(new MouseEvent("click"));
  level[0].dispatchEvent(new MouseEvent("mouseover"));
})();
]]></script>
</svg>"""


def find_chromium(explicit: str | None) -> str:
    """The Chromium binary (``--chromium``, else the first on PATH)."""
    for name in (explicit, *CHROMIUM_NAMES):
        if name and (path := shutil.which(name)):
            return path
    sys.exit("screenshots: no Chromium found; install it (Debian: apt-get install -y chromium) or pass --chromium")


def screenshot(chromium: str, target: Path, png: Path, size: tuple[int, int]) -> Path:
    """Screenshot ``target`` (a local file) at ``size`` into ``png`` with headless Chromium."""
    with tempfile.TemporaryDirectory(prefix="chromium_profile_") as profile:
        command = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--screenshot={png}",
            f"--window-size={size[0]},{size[1]}",
            target.resolve().as_uri(),
        ]
        completed = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    if completed.returncode != 0 or not png.is_file():
        raise RuntimeError(f"chromium failed on {target}: {completed.stderr[-2000:]}")
    logger.info("wrote %s", png)
    return png


def page_height(report: Path) -> int:
    """About the height of the whole report page (headless Chromium only captures the window)."""
    text = report.read_text(encoding="utf-8")
    height = PAGE_BASE + ROW_HEIGHT * text.count("<tr") + FIGURE_HEIGHT * text.count("<img")
    return max(WINDOW[1], min(height, MAX_PAGE_HEIGHT))


def make_example(workdir: Path, model: str, image_size: int) -> tuple[Path, Path]:
    """Run a small profiled pipeline into a store under ``workdir``; return (report.html, flamegraph.svg)."""
    from mlperf_track.pipeline.config import PipelineConfig
    from mlperf_track.report.build import report_experiment
    from mlperf_track.spec import TimingConfig
    from mlperf_track.tracking.pipeline_run import run_tracked_pipeline

    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir / 'mlruns.db'}"
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.chdir(workdir)  # MLflow puts a new experiment's artifacts under the working directory
    config = PipelineConfig(
        model=model,
        device="cpu",
        runtimes=("eager", "onnxruntime"),
        precisions=("fp32",),
        batch_sizes=(1, 8),
        image_size=image_size,
        dataset="digits",
        epochs=1,
        num_threads=1,
        profile=True,
        timing=TimingConfig(warmup_iters=2, warmup_s=0.0, min_iters=10, max_iters=200, max_time_s=1.0),
        output_dir=workdir / "cases",
        cache_dir=workdir / "cache",
    )
    outcome = run_tracked_pipeline(config, experiment="screenshots")
    profiled = [case for case in outcome.outcomes if "flamegraph.svg" in case.artifacts]
    if not profiled:
        raise RuntimeError(f"no case produced a flame graph: {[str(case.error) for case in outcome.outcomes]}")
    # The eager case with the largest batch: PyTorch operators all the way down.
    best = max(profiled, key=lambda case: (case.case.runtime == "eager", case.case.batch_size))
    flamegraph = best.artifacts["flamegraph.svg"]
    files, _ = report_experiment("screenshots", workdir / "report", log=True)
    return files["report.html"], flamegraph


def shoot_flamegraph(chromium: str, svg: Path, output_dir: Path, workdir: Path) -> list[Path]:
    """The flame graph as the browser shows it, zoomed by its own script, and inside an ``<img>`` tag."""
    shots = [screenshot(chromium, svg, output_dir / "flamegraph.png", WINDOW)]
    zoomed = workdir / "flamegraph_zoomed.svg"
    zoomed.write_text(svg.read_text(encoding="utf-8").replace("</svg>", ZOOM_SCRIPT), encoding="utf-8")
    shots.append(screenshot(chromium, zoomed, output_dir / "flamegraph_zoomed.png", WINDOW))
    page = workdir / "flamegraph_img.html"
    shutil.copy(svg, workdir / "flamegraph_copy.svg")
    page.write_text(
        '<html><body style="margin:8px"><img src="flamegraph_copy.svg" style="max-width:100%"></body></html>',
        encoding="utf-8",
    )
    shots.append(screenshot(chromium, page, output_dir / "flamegraph_img.png", WINDOW))
    return shots


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", default="screenshots", help="where the PNG files go")
    parser.add_argument("--report-html", default=None, help="screenshot this report instead of making one")
    parser.add_argument("--flamegraph", default=None, help="screenshot this flame graph instead of making one")
    parser.add_argument("--model", default="tinycnn", help="model of the example pipeline")
    parser.add_argument("--image-size", type=int, default=32, help="input size of the example pipeline")
    parser.add_argument("--chromium", default=None, help="Chromium binary")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    chromium = find_chromium(args.chromium)
    output_dir = Path(args.output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    report = Path(args.report_html).resolve() if args.report_html else None
    flamegraph = Path(args.flamegraph).resolve() if args.flamegraph else None
    with tempfile.TemporaryDirectory(prefix="mlperf_track_screenshots_") as tmp:
        workdir = Path(tmp)
        if report is None or flamegraph is None:
            made_report, made_flamegraph = make_example(workdir, args.model, args.image_size)
            report, flamegraph = report or made_report, flamegraph or made_flamegraph
        shots = [
            screenshot(chromium, report, output_dir / "report_top.png", WINDOW),
            screenshot(chromium, report, output_dir / "report_full.png", (WINDOW[0], page_height(report))),
            *shoot_flamegraph(chromium, flamegraph, output_dir, workdir),
        ]
    print("\n".join(str(shot) for shot in shots))
    return 0


if __name__ == "__main__":
    sys.exit(main())
