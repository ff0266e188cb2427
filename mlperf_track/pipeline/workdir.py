"""This process's own folder for per-case files: two processes in one output folder never share a file.

Every :class:`~mlperf_track.pipeline.session.BenchmarkSession` writes its per-case files (raw samples, result
JSON, profiler output) and its variants' files under ``<output-dir>/.work/<host>-<pid>-<random>/``, a folder
``mkdtemp`` creates atomically for this process alone, and the MLflow listener logs them from there. Before
this, every process wrote ``<output-dir>/<case>/`` directly, and a run could log another process's
``result.json`` (issue 14).

When a case has been reported, its folder is either *published* to ``<output-dir>/<case>/`` (kept files:
``bench``, or ``--keep-files``), by renaming the whole folder into place so that a reader always sees one
process's complete set (the last process to publish a case wins), or *discarded* (its files are logged). The
work folder itself is removed when the session closes. A process killed with ``kill -9`` leaves its folder
behind: ``owner.json`` names the process (:mod:`mlperf_track.liveness`), and :func:`remove_orphans`
(``mlperf-track runs cleanup``) removes the folders of processes that are gone.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from mlperf_track.liveness import ProcessIdentity, is_alive

logger = logging.getLogger(__name__)

#: The folder under ``<output-dir>`` that holds every process's work folder.
WORK_ROOT = ".work"
OWNER_FILE = "owner.json"
_PUBLISH_ATTEMPTS = 5


class WorkDir:
    """A private folder under ``output_dir/.work`` (created on first use) and the case folders in it.

    Args:
        output_dir: The user's output folder (``--output-dir``).
    """

    def __init__(self, output_dir: Path) -> None:
        self.output_dir = Path(output_dir)
        self._root: Path | None = None

    @property
    def root(self) -> Path:
        """The private folder, created (with its ``owner.json``) on first use."""
        if self._root is None:
            base = self.output_dir / WORK_ROOT
            base.mkdir(parents=True, exist_ok=True)
            owner = ProcessIdentity.current()
            root = Path(tempfile.mkdtemp(prefix=f"{owner.host}-{owner.pid}-", dir=base))
            (root / OWNER_FILE).write_text(json.dumps(owner.to_dict()), encoding="utf-8")
            self._root = root
        return self._root

    def case_dir(self, name: str) -> Path:
        """The folder of case ``name`` (created)."""
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def variant_dir(self, name: str) -> Path:
        """Where variant ``name`` may write its files (not created: the recipe decides)."""
        return self.root / "variants" / name

    def publish(self, name: str, artifacts: dict[str, Path]) -> dict[str, Path]:
        """Move case ``name``'s folder to ``<output-dir>/<name>/`` (replacing an older one); return the new paths.

        The folder moves with one rename, so ``<output-dir>/<name>/`` always holds the files of one process.
        Where another process publishes the same case at the same moment, the last rename wins.
        """
        source = self.root / name
        target = self.output_dir / name
        if not source.is_dir():
            return artifacts
        for _ in range(_PUBLISH_ATTEMPTS):
            old = self._move_aside(target)
            try:
                os.rename(source, target)
            except OSError as error:
                if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                continue  # another process published this case between the two renames: try again
            finally:
                if old is not None:
                    shutil.rmtree(old, ignore_errors=True)
            return {key: _moved(path, source, target) for key, path in artifacts.items()}
        logger.warning("could not publish %s to %s (other processes kept replacing it)", name, target)
        return artifacts

    def _move_aside(self, target: Path) -> Path | None:
        """Rename an existing ``target`` into this work folder (to delete it); ``None`` when there is none."""
        if not target.exists():
            return None
        holder = Path(tempfile.mkdtemp(prefix="replaced-", dir=self.root))
        with contextlib.suppress(FileNotFoundError):  # another process moved it first
            os.rename(target, holder / "old")
        return holder

    def discard(self, name: str) -> None:
        """Delete case ``name``'s folder (its files were logged)."""
        if self._root is not None:
            shutil.rmtree(self._root / name, ignore_errors=True)

    def close(self) -> None:
        """Delete the whole work folder (published cases have moved out of it already)."""
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            with contextlib.suppress(OSError):  # the shared .work folder goes when it is empty
                self._root.parent.rmdir()
            self._root = None


def _moved(path: Path, source: Path, target: Path) -> Path:
    try:
        return target / Path(path).relative_to(source)
    except ValueError:
        return path


def remove_orphans(output_dir: Path) -> list[Path]:
    """Delete the work folders under ``output_dir`` whose process is gone (on this host); return them.

    Folders of processes on other hosts (a shared file system) and folders without a readable owner are kept.
    """
    removed: list[Path] = []
    base = Path(output_dir) / WORK_ROOT
    if not base.is_dir():
        return removed
    for folder in sorted(base.iterdir()):
        try:
            owner = ProcessIdentity.from_dict(json.loads((folder / OWNER_FILE).read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
        if owner is not None and is_alive(owner) is False:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    with contextlib.suppress(OSError):
        base.rmdir()
    return removed
