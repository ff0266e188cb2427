"""Per-case files (kept, deleted, never shared) and resumed pipelines (taken-over cases are not measured)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_pipeline_runner import Recorder, tiny_config

from mlperf_track.pipeline import CaseOutcome, run_pipeline
from mlperf_track.pipeline.events import case_key
from mlperf_track.pipeline.workdir import WORK_ROOT


class ResumeRecorder(Recorder):
    def on_case_resumed(self, outcome: CaseOutcome) -> None:
        self.events.append(f"resumed:{outcome.case.name}")


def test_kept_files_are_published_per_case_and_the_work_folder_goes(tmp_path: Path) -> None:
    outcome = run_pipeline(tiny_config(tmp_path))  # keep_files=None: nothing logs them, so they are kept
    out = tmp_path / "out"
    for case_outcome in outcome.outcomes:
        folder = out / case_outcome.case.name
        assert case_outcome.artifacts["samples.csv"] == folder / "samples.csv"
        saved = json.loads((folder / "result.json").read_text(encoding="utf-8"))
        assert saved["case"]["batch_size"] == case_outcome.case.batch_size
    assert not (out / WORK_ROOT).exists()


def test_files_not_kept_are_deleted_once_reported(tmp_path: Path) -> None:
    seen: list[bool] = []

    class Check(Recorder):
        def on_case_end(self, outcome: CaseOutcome) -> None:  # the listener still finds the files
            seen.append(all(path.is_file() for path in outcome.artifacts.values()) and bool(outcome.artifacts))

    outcome = run_pipeline(tiny_config(tmp_path, keep_files=False), Check())
    assert seen == [True, True]
    assert all(case_outcome.artifacts == {} for case_outcome in outcome.outcomes)
    out = tmp_path / "out"
    assert not out.exists() or not [path for path in out.iterdir() if path.name != "logs"]


def test_resumed_cases_are_taken_over_and_not_measured(tmp_path: Path) -> None:
    first = run_pipeline(tiny_config(tmp_path, batch_sizes=(1, 2, 4)))
    done = {case_key(item.case): item for item in first.outcomes[:2]}
    recorder = ResumeRecorder()
    second = run_pipeline(tiny_config(tmp_path, batch_sizes=(1, 2, 4)), recorder, resumed=done)
    names = [item.case.name for item in first.outcomes]
    assert [event for event in recorder.events if event.startswith(("resumed:", "case:"))] == [
        f"resumed:{names[0]}",
        f"resumed:{names[1]}",
        f"case:{names[2]}",
    ]
    assert [item.result for item in second.outcomes[:2]] == [item.result for item in first.outcomes[:2]]
    assert len(second.results) == 3


def test_a_variant_whose_cases_are_all_resumed_is_not_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlperf_track.variants.quantize_dynamic import DynamicInt8Variant

    config = tiny_config(tmp_path, batch_sizes=(1,), variants=("quantized_int8_dynamic",))
    first = run_pipeline(config)
    variant_outcomes = [item for item in first.outcomes if item.case.variant == "quantized_int8_dynamic"]
    assert variant_outcomes and all(item.ok for item in variant_outcomes)
    builds: list[str] = []
    original = DynamicInt8Variant.build

    def counting(self: DynamicInt8Variant, *args: Any, **kwargs: Any) -> Any:
        builds.append(self.name)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(DynamicInt8Variant, "build", counting)
    recorder = ResumeRecorder()
    second = run_pipeline(config, recorder, resumed={case_key(item.case): item for item in variant_outcomes})
    measured = [event for event in recorder.events if event.startswith("case:")]
    assert measured and all("quantized" not in event for event in measured)
    assert builds == []
    assert {item.case.name for item in second.outcomes} == {item.case.name for item in first.outcomes}
