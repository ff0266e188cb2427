"""The run context provider: machine facts on every fluent run, cached, cheap, harmless, and switchable off."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mlperf_track.tracking import context
from mlperf_track.tracking.context import (
    ENABLE_ENV,
    MlperfTrackRunContextProvider,
    hardware_software_tags,
    read_git_commit,
)

REPO = Path(__file__).resolve().parents[2]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _installed() -> bool:
    try:
        importlib.metadata.distribution("mlperf-track")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    import os

    inherited = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    environment = {**inherited, "PYTHONPATH": str(REPO), **env}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=environment,
    )


def test_tags_hold_hardware_and_software_facts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENABLE_ENV, raising=False)
    tags = MlperfTrackRunContextProvider().tags()
    for key in ("hw.cpu", "hw.cpu_cores", "hw.gpu", "sw.torch", "sw.cuda", "sw.python", "sw.mlperf_track"):
        assert tags.get(key), key
    assert all(isinstance(value, str) for value in tags.values())
    assert MlperfTrackRunContextProvider().in_context()
    import torch

    assert tags["sw.torch"] == torch.__version__  # read from torch's version.py, not from an imported torch
    assert tags["sw.cuda"] == (torch.version.cuda or "none")


@pytest.mark.parametrize("value", ["0", "false", "No", " off "])
def test_the_environment_variable_turns_it_off(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(ENABLE_ENV, value)
    assert not MlperfTrackRunContextProvider().in_context()
    monkeypatch.setenv(ENABLE_ENV, "1")
    assert MlperfTrackRunContextProvider().in_context()


def test_tags_are_cached_and_copied() -> None:
    first = MlperfTrackRunContextProvider().tags()
    first["hw.cpu"] = "changed"
    assert MlperfTrackRunContextProvider().tags()["hw.cpu"] != "changed"
    assert hardware_software_tags() is hardware_software_tags()


def test_never_raises_when_the_facts_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlperf_track.engine import environment

    def broken() -> dict[str, str]:
        raise RuntimeError("no facts today")

    hardware_software_tags.cache_clear()
    monkeypatch.setattr(environment, "host_tags", broken)
    try:
        tags = MlperfTrackRunContextProvider().tags()
        assert "hw.cpu" not in tags
    finally:
        hardware_software_tags.cache_clear()


def _repo(root: Path, head: str) -> Path:
    git = root / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text(head + "\n")
    return git


def test_git_commit_from_a_loose_ref_packed_refs_and_a_detached_head(tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    (_repo(loose, "ref: refs/heads/main") / "refs" / "heads" / "main").write_text(COMMIT + "\n")
    assert read_git_commit(loose) == COMMIT
    packed = tmp_path / "packed"
    _repo(packed, "ref: refs/heads/dev").joinpath("packed-refs").write_text(
        f"# pack-refs with: peeled fully-peeled sorted\n{'f' * 40} refs/heads/main\n{COMMIT} refs/heads/dev\n"
    )
    assert read_git_commit(packed) == COMMIT
    detached = tmp_path / "detached"
    _repo(detached, COMMIT)
    assert read_git_commit(detached) == COMMIT
    assert read_git_commit(tmp_path / "nothing") is None
    broken = tmp_path / "broken"
    _repo(broken, "ref: refs/heads/missing")
    assert read_git_commit(broken) is None


def test_git_commit_of_a_worktree(tmp_path: Path) -> None:
    main = tmp_path / "main"
    common = _repo(main, "ref: refs/heads/main")
    (common / "refs" / "heads" / "feature").write_text(COMMIT + "\n")
    private = common / "worktrees" / "feature"
    private.mkdir(parents=True)
    (private / "HEAD").write_text("ref: refs/heads/feature\n")
    (private / "commondir").write_text("../..\n")
    checkout = tmp_path / "feature"
    checkout.mkdir()
    (checkout / ".git").write_text(f"gitdir: {private}\n")
    assert read_git_commit(checkout) == COMMIT


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="needs git and a checkout")
def test_the_commit_matches_git_rev_parse() -> None:
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(done.stderr.strip())
    assert context._package_git_commit() == done.stdout.strip()


def test_tags_import_no_torch_and_start_no_process() -> None:
    done = _run_python(
        """
        import subprocess, sys
        def refuse(*args, **kwargs):
            raise AssertionError(f"the provider started a process: {args}")
        subprocess.Popen = refuse
        from mlperf_track.tracking.context import MlperfTrackRunContextProvider
        tags = MlperfTrackRunContextProvider().tags()
        assert tags["hw.cpu"] and tags["sw.torch"], tags
        heavy = sorted(name for name in ("torch", "mlflow", "numpy") if name in sys.modules)
        assert not heavy, heavy
        """
    )
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.skipif(not _installed(), reason="mlperf-track is not installed (pip install -e .)")
def test_importing_the_provider_before_mlflow_keeps_it_registered(tmp_path: Path) -> None:
    done = _run_python(
        f"""
        import sys, warnings
        warnings.filterwarnings("error", message=".*context provider.*")
        import mlperf_track.tracking.context
        import mlflow
        mlflow.set_tracking_uri("sqlite:///{tmp_path / "order.db"}")
        with mlflow.start_run() as run:
            pass
        tags = mlflow.get_run(run.info.run_id).data.tags
        assert "hw.cpu" in tags and "sw.torch" in tags, sorted(tags)
        assert "torch" not in sys.modules
        """
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_fluent_runs_get_the_tags_unless_turned_off(tracking: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow
    from mlflow.tracking.context.registry import _run_context_provider_registry

    registry = _run_context_provider_registry._registry
    added = not any(isinstance(p, MlperfTrackRunContextProvider) for p in registry)
    if added:  # the entry point is only active once the package is installed
        _run_context_provider_registry.register(MlperfTrackRunContextProvider)
    try:
        monkeypatch.delenv(ENABLE_ENV, raising=False)
        with mlflow.start_run() as run:
            pass
        monkeypatch.setenv(ENABLE_ENV, "0")
        with mlflow.start_run() as quiet:
            pass
    finally:
        if added:
            registry[:] = [p for p in registry if not isinstance(p, MlperfTrackRunContextProvider)]
    tags = mlflow.get_run(run.info.run_id).data.tags
    assert tags["sw.torch"] == hardware_software_tags()["sw.torch"]
    assert "hw.cpu" in tags
    assert "hw.cpu" not in mlflow.get_run(quiet.info.run_id).data.tags
