"""The whole pipeline: baseline, variants, then every case, reported to a listener as it ends."""

from __future__ import annotations

import logging

from mlperf_track.pipeline.config import PipelineConfig
from mlperf_track.pipeline.events import PipelineListener, PipelineOutcome
from mlperf_track.pipeline.session import BenchmarkSession

logger = logging.getLogger(__name__)


def run_pipeline(config: PipelineConfig, listener: PipelineListener | None = None) -> PipelineOutcome:
    """Measure every case of ``config``.

    Bad input (unknown model, runtime, variant or dataset; a precision no runtime runs on the device) raises
    before any case runs. A case's own failure is recorded in its outcome and the pipeline goes on. On
    Ctrl-C the listener still receives ``on_pipeline_end`` with ``interrupted`` set, then the interrupt is
    re-raised.

    Args:
        config: What to measure.
        listener: Receives events as they happen (MLflow logging, progress); ``None`` for none.

    Returns:
        Every case's outcome, in the order they ran.
    """
    listener = listener or PipelineListener()
    outcome = PipelineOutcome(config=config)
    with BenchmarkSession(config) as session:
        try:
            baseline = session.baseline()
            listener.on_baseline_ready(baseline, session.baseline_facts)
            session.build_variants()
            cases = session.plan()
            logger.info("%d cases on %s: %s", len(cases), session.device, ", ".join(c.name for c in cases))
            listener.on_pipeline_start(config, cases)
            for case in cases:
                listener.on_case_start(case)
                case_outcome = session.run_case(case)
                outcome.outcomes.append(case_outcome)
                listener.on_case_end(case_outcome)
        except KeyboardInterrupt:
            outcome.interrupted = True
            logger.warning("interrupted after %d cases", len(outcome.outcomes))
            listener.on_pipeline_end(outcome)
            raise
    listener.on_pipeline_end(outcome)
    return outcome
