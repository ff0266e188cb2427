"""What the mlperf_track run-context provider adds to ``mlflow.start_run`` in a script that never uses it.

Once mlperf_track is installed, MLflow loads its provider (entry point ``mlflow.run_context_provider``) in every
process that imports mlflow, and asks it for tags on every ``mlflow.start_run``. This script starts fresh
Python processes that do what an unrelated script does (``import mlflow``, two ``start_run``/``end_run``) with
the provider on and off (``MLPERF_TRACK_CONTEXT=0``), and prints the medians, the difference, and whether the
provider imported torch (it must not: that opens no CUDA context, but costs seconds and memory).

Each process gets its own copy of one SQLite store whose tables were created beforehand, so the first
``start_run`` does not include MLflow's schema migrations (the same for both modes anyway). Besides the
on/off difference, which machine load blurs by tens of milliseconds, each process times the provider itself:
the import of its module and its ``in_context``/``tags`` calls inside each ``start_run``. The budget is checked
against that direct figure; the difference is printed beside it.

Usage (the lead re-measures on a quiet machine)::

    PYTHONPATH=$PWD python benchmarks/context_provider.py --repeats 15

Exit status 1 when the provider imports torch or adds more than ``--budget-ms`` to the first ``start_run``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENV_VAR = "MLPERF_TRACK_CONTEXT"

CHILD = textwrap.dedent(
    """
    import json, sys, time
    # Standard-library modules that mlflow imports anyway: not the provider's cost.
    import functools, importlib.util, logging, os, pathlib, platform, re, typing
    store = sys.argv[1]
    start = time.perf_counter()
    import mlperf_track.tracking.context as context  # what MLflow's entry point loads, timed on its own
    provider_imported = time.perf_counter()
    import mlflow
    imported = time.perf_counter()
    from mlflow.tracking.context.registry import _run_context_provider_registry as registry
    spent = [0.0]
    for provider in registry:
        if isinstance(provider, context.MlperfTrackRunContextProvider):
            for name in ("in_context", "tags"):
                def timed(method=getattr(provider, name)):
                    before = time.perf_counter()
                    try:
                        return method()
                    finally:
                        spent[0] += time.perf_counter() - before
                setattr(provider, name, timed)
    mlflow.set_tracking_uri("sqlite:///" + store)
    times, provider_times = [], []
    for _ in range(2):
        spent[0] = 0.0
        before = time.perf_counter()
        with mlflow.start_run() as run:
            pass
        times.append((time.perf_counter() - before) * 1e3)
        provider_times.append(spent[0] * 1e3)
    tags = mlflow.get_run(run.info.run_id).data.tags
    print(json.dumps({
        "provider_import_ms": (provider_imported - start) * 1e3,
        "import_ms": (imported - provider_imported) * 1e3,
        "first_ms": times[0],
        "second_ms": times[1],
        "provider_first_ms": provider_times[0],
        "provider_second_ms": provider_times[1],
        "torch": "torch" in sys.modules,
        "registered": any(isinstance(p, context.MlperfTrackRunContextProvider) for p in registry),
        "tagged": "hw.cpu" in tags,
    }))
    """
)


def _environment(enabled: bool) -> dict[str, str]:
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    # an unrelated script: no experiment or tracking settings of the calling shell
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env["PYTHONPATH"] = path
    env.pop(ENV_VAR, None)
    if not enabled:
        env[ENV_VAR] = "0"
    env.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return env


def _child(store: Path, enabled: bool) -> dict[str, float | bool]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(store)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=_environment(enabled),
    )
    if done.returncode != 0:
        raise SystemExit(f"child failed:\n{done.stderr[-3000:]}")
    result: dict[str, float | bool] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _template(folder: Path) -> Path:
    """A store whose tables exist (created by one throw-away child)."""
    template = folder / "template.db"
    _child(template, enabled=False)
    return template


def measure(repeats: int) -> dict[str, list[dict[str, float | bool]]]:
    """Run ``repeats`` children per mode, interleaved (so machine load drifts affect both alike)."""
    results: dict[str, list[dict[str, float | bool]]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory(prefix="mlperf_track-context-") as tmp:
        folder = Path(tmp)
        template = _template(folder)
        for index in range(repeats):
            for mode in ("on", "off"):
                store = folder / f"{mode}-{index}.db"
                shutil.copy(template, store)
                results[mode].append(_child(store, enabled=mode == "on"))
    return results


def _median(rows: list[dict[str, float | bool]], key: str) -> float:
    return statistics.median(float(row[key]) for row in rows)


def report(results: dict[str, list[dict[str, float | bool]]], budget_ms: float) -> int:
    """Print the table and the verdict; return the exit status."""
    print(f"{'plugin':<8}{'import mlflow ms':>18}{'1st start_run ms':>18}{'2nd start_run ms':>18}  torch  tags")
    for mode, rows in results.items():
        torch = "yes" if any(row["torch"] for row in rows) else "no"
        tagged = "yes" if all(row["tagged"] for row in rows) else "no"
        print(
            f"{mode:<8}{_median(rows, 'import_ms'):>18.1f}{_median(rows, 'first_ms'):>18.1f}"
            f"{_median(rows, 'second_ms'):>18.1f}  {torch:<5}  {tagged}"
        )
    on = results["on"]
    added_first = _median(on, "first_ms") - _median(results["off"], "first_ms")
    added_second = _median(on, "second_ms") - _median(results["off"], "second_ms")
    own_first = _median(on, "provider_import_ms") + _median(on, "provider_first_ms")
    print(
        f"on - off (median of {len(on)} fresh processes each): first start_run {added_first:+.1f} ms, "
        f"second {added_second:+.1f} ms"
    )
    print(
        f"the provider's own time: import of its modules {_median(on, 'provider_import_ms'):.1f} ms, inside the first "
        f"start_run {_median(on, 'provider_first_ms'):.1f} ms, inside the second "
        f"{_median(on, 'provider_second_ms'):.2f} ms; first-run total {own_first:.1f} ms (budget {budget_ms:g} ms)"
    )
    failures = []
    if any(row["torch"] for row in on):
        failures.append("the provider imported torch")
    if not all(row["registered"] and row["tagged"] for row in on):
        failures.append("the provider was not registered (is mlperf-track installed: pip install -e .?)")
    if any(row["tagged"] for row in results["off"]):
        failures.append(f"{ENV_VAR}=0 did not turn it off")
    if own_first > budget_ms:
        failures.append(f"it costs {own_first:.1f} ms on the first start_run")
    for failure in failures:
        print(f"FAIL: {failure}")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="fresh processes per mode (default 7)")
    parser.add_argument("--budget-ms", type=float, default=50.0, help="allowed cost on the first start_run")
    args = parser.parse_args(argv)
    return report(measure(args.repeats), args.budget_ms)


if __name__ == "__main__":
    sys.exit(main())
