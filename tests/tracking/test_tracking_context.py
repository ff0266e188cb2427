"""The run context provider: machine facts on every fluent run, cached, never raising."""

from __future__ import annotations

import pytest

from mlperf_track.tracking import context
from mlperf_track.tracking.context import MlperfTrackRunContextProvider, hardware_software_tags


def test_tags_hold_hardware_and_software_facts() -> None:
    tags = MlperfTrackRunContextProvider().tags()
    for key in ("hw.cpu", "hw.cpu_cores", "sw.torch", "sw.python", "sw.mlperf_track"):
        assert tags.get(key), key
    assert all(isinstance(value, str) for value in tags.values())
    assert MlperfTrackRunContextProvider().in_context()


def test_tags_are_cached_and_copied() -> None:
    first = MlperfTrackRunContextProvider().tags()
    first["hw.cpu"] = "changed"
    assert MlperfTrackRunContextProvider().tags()["hw.cpu"] != "changed"
    assert hardware_software_tags() is hardware_software_tags()


def test_never_raises_when_the_engine_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlperf_track.engine import environment

    def broken() -> dict[str, str]:
        raise RuntimeError("no facts today")

    hardware_software_tags.cache_clear()
    monkeypatch.setattr(environment, "environment_tags", broken)
    try:
        tags = MlperfTrackRunContextProvider().tags()
        assert "hw.cpu" not in tags
    finally:
        hardware_software_tags.cache_clear()


def test_git_commit_of_a_checkout() -> None:
    commit = context._package_git_commit()
    assert commit is None or len(commit) == 40


def test_fluent_runs_get_the_tags(tracking: str) -> None:
    import mlflow
    from mlflow.tracking.context.registry import _run_context_provider_registry

    registry = _run_context_provider_registry._registry
    added = not any(isinstance(p, MlperfTrackRunContextProvider) for p in registry)
    if added:  # the entry point is only active once the package is installed
        _run_context_provider_registry.register(MlperfTrackRunContextProvider)
    try:
        with mlflow.start_run() as run:
            pass
    finally:
        if added:
            registry[:] = [p for p in registry if not isinstance(p, MlperfTrackRunContextProvider)]
    tags = mlflow.get_run(run.info.run_id).data.tags
    assert tags["sw.torch"] == hardware_software_tags()["sw.torch"]
    assert "hw.cpu" in tags
