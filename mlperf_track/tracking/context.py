"""Hardware and software tags for every run, as an MLflow run context provider.

MLflow calls registered providers (entry point group ``mlflow.run_context_provider``) whenever a run is created
through the fluent API (``mlflow.start_run``), so once mlperf_track is installed this code runs in *every*
process that starts a run, including users' scripts that never use mlperf_track. It therefore has manners:

* it imports neither torch nor CUDA: the facts come from ``/proc`` and, when an NVIDIA driver is present and
  pynvml importable, from NVML (which never creates a CUDA context); see
  :func:`mlperf_track.engine.environment.host_tags`;
* it runs no subprocess: the mlperf_track git commit is read from the checkout's ``.git`` files;
* the facts are gathered once per process, and a failure yields fewer tags, never an exception;
* this module does not import mlflow: MLflow loads it while ``import mlflow`` registers its providers, and a
  module that imported mlflow itself would be found half-initialised when it is imported first (as the CLI's
  tracking modules do), which loses the provider with a warning. MLflow's registry only calls
  ``in_context()`` and ``tags()``, the whole of ``RunContextProvider``'s interface, which the class provides;
* ``MLPERF_TRACK_CONTEXT=0`` (or ``false``/``no``/``off``) turns it off: :meth:`in_context` says no and MLflow
  skips it. ``benchmarks/context_provider.py`` measures what it adds to the first ``start_run``.

``mlflow run`` creates its run outside the fluent API: tag that one with :func:`hardware_software_tags`
explicitly (``run_tracked_pipeline`` does).
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

#: Tag with the git commit of the mlperf_track source tree, when it is a git checkout.
GIT_COMMIT_TAG = "sw.mlperf_track_git_commit"
#: Environment variable that turns the provider off (``0``, ``false``, ``no``, ``off``).
ENABLE_ENV = "MLPERF_TRACK_CONTEXT"
_OFF = frozenset({"0", "false", "no", "off"})


def provider_enabled() -> bool:
    """Whether ``MLPERF_TRACK_CONTEXT`` leaves the provider on (it is on unless set to 0/false/no/off)."""
    return os.environ.get(ENABLE_ENV, "1").strip().lower() not in _OFF


def _git_dir(checkout: Path) -> Path | None:
    """The git directory of ``checkout``: ``.git`` itself, or where a ``.git`` file (worktree) points."""
    dot_git = checkout / ".git"
    if dot_git.is_dir():
        return dot_git
    if dot_git.is_file():
        text = dot_git.read_text(encoding="utf-8", errors="replace").strip()
        if text.startswith("gitdir:"):
            target = Path(text.removeprefix("gitdir:").strip())
            return target if target.is_absolute() else (checkout / target).resolve()
    return None


def _resolve_ref(git_dir: Path, ref: str) -> str | None:
    """The commit a ref names: its loose file (here or in the common dir of a worktree), else packed-refs."""
    common = git_dir
    commondir = git_dir / "commondir"
    if commondir.is_file():
        common = (git_dir / commondir.read_text(encoding="utf-8").strip()).resolve()
    for folder in dict.fromkeys((git_dir, common)):
        loose = folder / ref
        if loose.is_file():
            return loose.read_text(encoding="utf-8").strip() or None
    packed = common / "packed-refs"
    if packed.is_file():
        for line in packed.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1] == ref:
                return parts[0]
    return None


def read_git_commit(checkout: Path) -> str | None:
    """The commit checked out in ``checkout``, read from its ``.git`` files (no ``git`` process); else ``None``."""
    try:
        git_dir = _git_dir(checkout)
        if git_dir is None:
            return None
        head = (git_dir / "HEAD").read_text(encoding="utf-8").strip()
        commit = _resolve_ref(git_dir, head.removeprefix("ref:").strip()) if head.startswith("ref:") else head
    except OSError:
        return None
    if commit and len(commit) in (40, 64) and all(char in "0123456789abcdef" for char in commit):
        return commit
    return None


def _package_git_commit() -> str | None:
    """The commit of the checkout mlperf_track is imported from (``None`` for an installed wheel)."""
    return read_git_commit(Path(__file__).resolve().parents[2])


@functools.cache
def hardware_software_tags() -> dict[str, str]:
    """``hw.*`` and ``sw.*`` tags of this machine and process (computed once, never raises, never imports torch).

    Returns:
        :func:`~mlperf_track.engine.environment.host_tags` (CPU, GPU from NVML, Python, torch and CUDA
        versions, mlperf_track version) plus the mlperf_track git commit when known.
    """
    tags: dict[str, str] = {}
    try:
        from mlperf_track.engine.environment import host_tags

        tags.update(host_tags())
    except Exception as error:  # a provider must never break run creation
        logger.debug("host tags unavailable: %s", error)
    commit = _package_git_commit()
    if commit:
        tags[GIT_COMMIT_TAG] = commit
    return {key: str(value) for key, value in tags.items()}


class MlperfTrackRunContextProvider:
    """Adds :func:`hardware_software_tags` to every run created with ``mlflow.start_run``.

    Implements MLflow's ``RunContextProvider`` interface (``in_context``, ``tags``) without importing mlflow
    (see the module docstring).
    """

    def in_context(self) -> bool:
        """Applies unless ``MLPERF_TRACK_CONTEXT`` turns it off (an environment lookup, nothing more)."""
        return provider_enabled()

    def tags(self) -> dict[str, str]:
        """The cached hardware and software tags (a copy, so callers may change it)."""
        try:
            return dict(hardware_software_tags())
        except Exception:  # defensive: MLflow only logs a warning, but tags must not break run creation
            return {}
