"""A listener that shows a progress bar over the cases (rich)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from mlperf_track.pipeline.events import CaseOutcome, PipelineListener, PipelineOutcome

if TYPE_CHECKING:
    from mlperf_track.pipeline.config import PipelineConfig
    from mlperf_track.spec import CaseSpec


class ProgressListener(PipelineListener):
    """Shows ``[done/total] case-name`` on stderr while the pipeline runs."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def on_pipeline_start(self, config: PipelineConfig, cases: list[CaseSpec]) -> None:
        self._progress = Progress(
            TextColumn("[bold]measuring"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=self.console,
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task("", total=len(cases))

    def on_case_start(self, case: CaseSpec) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=case.name)

    def on_case_resumed(self, outcome: CaseOutcome) -> None:
        self.on_case_end(outcome)

    def on_case_end(self, outcome: CaseOutcome) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task)

    def on_pipeline_end(self, outcome: PipelineOutcome) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
