"""Hardware and software tags for every run, as an MLflow run context provider.

MLflow calls registered providers (entry point group ``mlflow.run_context_provider``) whenever a run is
created through the fluent API (``mlflow.start_run``), so every run started in a process where mlperf_track
is installed carries the machine's facts. MLflow loads this module while ``import mlflow`` runs, so it imports
nothing heavy at module level; the facts are gathered once per process, on first use, and a failure yields
fewer tags, never an exception. ``mlflow run`` creates its run outside the fluent API: tag that one with
:func:`hardware_software_tags` explicitly (``run_tracked_pipeline`` does).
"""

from __future__ import annotations

import functools
import logging
import subprocess
from pathlib import Path

from mlflow.tracking.context.abstract_context import RunContextProvider

logger = logging.getLogger(__name__)

#: Tag with the git commit of the mlperf_track source tree, when it is a git checkout.
GIT_COMMIT_TAG = "sw.mlperf_track_git_commit"


def _package_git_commit() -> str | None:
    """The commit of the checkout mlperf_track is imported from (``None`` for an installed wheel)."""
    package_dir = Path(__file__).resolve().parents[1]
    if not (package_dir.parent / ".git").exists():
        return None
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=package_dir.parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = completed.stdout.strip()
    return commit if completed.returncode == 0 and commit else None


@functools.cache
def hardware_software_tags() -> dict[str, str]:
    """``hw.*`` and ``sw.*`` tags of this machine and process (computed once, never raises).

    Returns:
        The engine's environment tags (CPU model and cores, GPU name, driver, CUDA, torch, Python,
        mlperf_track version) plus the mlperf_track git commit when known.
    """
    tags: dict[str, str] = {}
    try:
        from mlperf_track.engine.environment import environment_tags

        tags.update(environment_tags())
    except Exception as error:  # a provider must never break run creation
        logger.debug("environment tags unavailable: %s", error)
    commit = _package_git_commit()
    if commit:
        tags[GIT_COMMIT_TAG] = commit
    return {key: str(value) for key, value in tags.items()}


class MlperfTrackRunContextProvider(RunContextProvider):
    """Adds :func:`hardware_software_tags` to every run created with ``mlflow.start_run``."""

    def in_context(self) -> bool:
        """Always applies: the facts describe the machine, whatever the run does."""
        return True

    def tags(self) -> dict[str, str]:
        """The cached hardware and software tags (a copy, so callers may change it)."""
        try:
            return dict(hardware_software_tags())
        except Exception:  # defensive: MLflow only logs a warning, but tags must not break run creation
            return {}
