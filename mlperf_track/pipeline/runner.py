"""The whole pipeline: baseline, variants, then every case, reported to a listener as it ends.

With ``repeats = N > 1`` every case is measured N times in interleaved rounds (case A r1, case B r1, ...,
case A r2, ...), so slow drift of the machine (heat, neighbours, frequency) spreads over all cases instead of
favouring the ones measured first, and the replicates of each case are merged
(:func:`~mlperf_track.engine.result.merge_results`) into one result that carries its between-replicate
spread. Prepared models are kept across rounds on the CPU and re-prepared from the runtimes' disk caches on
a GPU (see :class:`~mlperf_track.pipeline.case_runner.CaseRunner`); start-up metrics come from round 1.

Events: rounds 1..N-1 run without listener events (each replicate is logged at INFO); round N sends
``on_case_start``, measures the last replicate, then ``on_case_end`` with the merged outcome, so a listener
sees one start/end pair per case (MLflow: one child run per case, whose ``samples.csv`` has a ``replicate``
column). On Ctrl-C, cases with at least one finished replicate are still reported, merged from what ran.

With ``pin_cores`` the whole process (every thread) is pinned to those CPUs while cases are measured, and its
affinity restored afterwards; results carry the tag ``engine.pinned_cores``.

Files: a case's files are written in this process's work folder (:mod:`~mlperf_track.pipeline.workdir`); once
the listener has had the case, the folder is published to ``<output_dir>/<case>/`` or deleted
(``PipelineConfig.keep_files``), and ``outcome.artifacts`` says where the files are (empty when deleted).

Resume: ``resumed`` holds the outcomes an earlier run measured, by :func:`~mlperf_track.pipeline.events.case_key`.
Those cases are reported with ``on_case_resumed`` and not measured; variants whose every case is resumed are
not built (the baseline comes from its disk cache, exports from the runtimes' caches).
"""

from __future__ import annotations

import contextlib
import csv
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from mlperf_track.interrupts import release_unwound_frames
from mlperf_track.pipeline.affinity import check_cores, pinned
from mlperf_track.pipeline.config import PipelineConfig
from mlperf_track.pipeline.events import CaseKey, CaseOutcome, PipelineListener, PipelineOutcome, case_key
from mlperf_track.pipeline.options import check_declared_options
from mlperf_track.pipeline.session import BenchmarkSession

if TYPE_CHECKING:
    from collections.abc import Mapping

    from mlperf_track.pipeline.load_stage import LoadStage
    from mlperf_track.spec import CaseSpec

logger = logging.getLogger(__name__)


def run_pipeline(
    config: PipelineConfig,
    listener: PipelineListener | None = None,
    *,
    resumed: Mapping[CaseKey, CaseOutcome] | None = None,
    load: LoadStage | None = None,
) -> PipelineOutcome:
    """Measure every case of ``config``.

    Bad input (unknown model, runtime, variant or dataset; a precision no runtime runs on the device; an
    ``options`` key no selected runtime or variant declares; a core to pin that this process may not use)
    raises before any case runs. A case's own failure is recorded in
    its outcome and the pipeline goes on. On Ctrl-C the listener still receives ``on_pipeline_end`` with
    ``interrupted`` set, then the interrupt is re-raised.

    Args:
        config: What to measure.
        listener: Receives events as they happen (MLflow logging, progress); ``None`` for none.
        resumed: Outcomes of an earlier run by case key: those cases are taken over, not measured.
        load: The load stage (``--scenario``): once every case is measured, one case is served under load
            (:mod:`~mlperf_track.pipeline.load_stage`); its sweep is ``outcome.load``.

    Returns:
        Every case's outcome (merged over replicates): the resumed ones first, then the measured ones in plan order.
    """
    listener = listener or PipelineListener()
    outcome = PipelineOutcome(config=config)
    check_declared_options(config)
    if config.pin_cores is not None:
        check_cores(config.pin_cores, config.num_threads)
    with BenchmarkSession(config) as session:
        rounds = _Rounds(session, listener, outcome)
        try:
            baseline = session.baseline()
            listener.on_baseline_ready(baseline, session.baseline_facts)
            cases = _plan(session, resumed or {})
            logger.info("%d cases on %s: %s", len(cases), session.device, ", ".join(c.name for c in cases))
            listener.on_pipeline_start(config, cases)
            todo = rounds.take_over(cases, resumed or {})
            with pinned(config.pin_cores):
                rounds.run(todo)
                if load is not None:
                    from mlperf_track.pipeline.load_stage import run_load_stage

                    outcome.load = run_load_stage(session, outcome, load)
        except KeyboardInterrupt as interrupt:
            release_unwound_frames(interrupt)  # an interrupted store read must not lock out the writes below
            outcome.interrupted = True
            try:  # an error while closing leaves the interrupt what ends the run
                with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C stops the flushing, not the end
                    rounds.flush()
            except Exception as error:
                logger.warning("while reporting the finished replicates: %s: %s", type(error).__name__, error)
            logger.warning("interrupted after %d cases", len(outcome.outcomes))
            try:
                listener.on_pipeline_end(outcome)
            except Exception as error:
                logger.warning("while ending the interrupted pipeline: %s: %s", type(error).__name__, error)
            raise
    listener.on_pipeline_end(outcome)
    return outcome


def _plan(session: BenchmarkSession, resumed: Mapping[CaseKey, CaseOutcome]) -> list[CaseSpec]:
    """Build the variants that have cases to measure, then plan every case."""
    if not resumed:
        session.build_variants()
        return session.plan()
    declared = session.plan(build=False)
    wanted = {case.variant for case in declared if case_key(case) not in resumed}
    skipped = sorted(set(session.variants) - wanted)
    if skipped:
        logger.info("not building %s: every case of it was measured by the resumed run", ", ".join(skipped))
    session.build_variants(wanted)
    return session.plan(build=False)


class _Rounds:
    """Interleaved replicates of every case, merged and reported once per case."""

    def __init__(self, session: BenchmarkSession, listener: PipelineListener, outcome: PipelineOutcome) -> None:
        self.session = session
        self.listener = listener
        self.outcome = outcome
        self.repeats = session.config.repeats
        self.done: dict[CaseSpec, list[CaseOutcome]] = {}
        self.started: set[CaseSpec] = set()
        self.reported: set[CaseSpec] = set()

    def take_over(self, cases: list[CaseSpec], resumed: Mapping[CaseKey, CaseOutcome]) -> list[CaseSpec]:
        """Report the cases an earlier run measured (``on_case_resumed``); return the cases left to measure."""
        todo = []
        for case in cases:
            earlier = resumed.get(case_key(case))
            if earlier is None:
                todo.append(case)
                continue
            self.outcome.outcomes.append(earlier)
            self.listener.on_case_resumed(earlier)
        if len(todo) < len(cases):
            logger.info("resumed %d of %d cases; %d left to measure", len(cases) - len(todo), len(cases), len(todo))
        return todo

    def run(self, cases: list[CaseSpec]) -> None:
        for replicate in range(1, self.repeats + 1):
            last = replicate == self.repeats
            for case in cases:
                earlier = self.done.setdefault(case, [])
                if last:
                    self._start(case)
                if not (earlier and earlier[0].result is None):  # a case that failed is not tried again
                    earlier.append(self._measure(case, replicate))
                if last:
                    self._report(case)

    def _start(self, case: CaseSpec) -> None:
        if case not in self.started:
            self.started.add(case)
            self.listener.on_case_start(case)

    def _measure(self, case: CaseSpec, replicate: int) -> CaseOutcome:
        outcome = self.session.run_case(case)
        if self.session.config.pin_cores is not None and outcome.result is not None:
            cores = ",".join(map(str, self.session.config.pin_cores))
            outcome.result = outcome.result.with_tags({"engine.pinned_cores": cores})
            if "result.json" in outcome.artifacts:  # keep the file the same as the result
                outcome.result.write_json(outcome.artifacts["result.json"])
        if self.repeats > 1:
            state = "failed" if outcome.result is None else "done"
            logger.info("replicate %d/%d of %s %s", replicate, self.repeats, case.name, state)
        return outcome

    def _report(self, case: CaseSpec) -> None:
        if case in self.reported:
            return
        outcomes = self.done.get(case, [])
        folder = self.session.files.case_dir(outcomes[-1].case.name) if len(outcomes) > 1 else None
        merged = merge_outcomes(outcomes, self.session.config, folder)
        if merged is None:
            return
        self.reported.add(case)
        self.outcome.outcomes.append(merged)
        try:
            self.listener.on_case_end(merged)
        except BaseException:
            self._settle_files(merged, keep=True)  # the listener may not have logged them: keep the only copy
            raise
        self._settle_files(merged, keep=self.session.keeps_files)

    def _settle_files(self, outcome: CaseOutcome, *, keep: bool) -> None:
        """Publish the reported case's folder to ``<output_dir>/<case>/``, or delete it (its files were logged)."""
        files, name = self.session.files, outcome.case.name
        if keep:
            outcome.artifacts = files.publish(name, outcome.artifacts)
        else:
            files.discard(name)
            outcome.artifacts = {}

    def flush(self) -> None:
        """After an interruption: report every case that has a finished replicate and was not reported."""
        for case, outcomes in self.done.items():
            if case not in self.reported and outcomes:
                self._start(case)
                self._report(case)


def merge_outcomes(
    outcomes: list[CaseOutcome], config: PipelineConfig, folder: Path | None = None
) -> CaseOutcome | None:
    """One outcome from a case's replicates: merged results, or the first failure when none succeeded.

    A replicate that failed after others succeeded leaves a warning on the merged result. The merged files are
    written next to the replicates' files, else in ``folder`` (else ``<output_dir>/<case>/``).
    """
    if not outcomes:
        return None
    if len(outcomes) == 1:
        return outcomes[0]
    from mlperf_track.engine.result import merge_results

    good = [o for o in outcomes if o.result is not None]
    if not good:
        return outcomes[0]
    results = [o.result for o in good if o.result is not None]
    merged = merge_results(results, config.timing)
    failed = [o for o in outcomes if o.result is None]
    if failed:
        first = failed[0].error
        merged = merged.with_warnings(
            f"{len(failed)} of {len(outcomes)} replicates failed ({type(first).__name__}: {first}); "
            f"merged the other {len(good)}"
        )
    artifacts = {**good[0].artifacts, **good[-1].artifacts}
    folder = _case_folder(artifacts, folder or config.output_dir / merged.case.name)
    artifacts["samples.csv"] = write_replicate_samples(merged.replicates, folder / "samples.csv")
    artifacts["result.json"] = merged.write_json(folder / "result.json")
    return CaseOutcome(case=merged.case, result=merged, artifacts=artifacts)


def _case_folder(artifacts: dict[str, Path], fallback: Path) -> Path:
    existing = artifacts.get("result.json") or artifacts.get("samples.csv")
    folder = Path(existing).parent if existing is not None else fallback
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_replicate_samples(replicates: list[tuple[float, ...]], path: Path) -> Path:
    """``iteration,latency_ms,replicate`` rows (replicates numbered from 1) and return ``path``."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["iteration", "latency_ms", "replicate"])
        iteration = 0
        for number, samples in enumerate(replicates, start=1):
            for value in samples:
                writer.writerow([iteration, value, number])
                iteration += 1
    return path
