"""What a load run drives: a model prepared in this process, an HTTP endpoint, or a synthetic model.

A target is a small frozen, picklable description; :meth:`open` builds the inference callable (loading and
preparing the model, outside any measurement) and closes it afterwards. Being picklable lets a memory-limited
load point rebuild its target inside the child process that the limit applies to.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from mlperf_track.engine.load.ledger import InferenceFn
from mlperf_track.secrets import mask_url

if TYPE_CHECKING:
    from mlperf_track.models.artifact import ModelArtifact
    from mlperf_track.pipeline.session import BenchmarkSession

logger = logging.getLogger(__name__)


@dataclass
class OpenTarget:
    """A built target: the callable under load and facts about it (tags)."""

    infer: InferenceFn
    tags: dict[str, str] = field(default_factory=dict)


class LoadTarget(Protocol):
    """Anything that can be opened into an :class:`OpenTarget`."""

    @property
    def device(self) -> str:
        """``cpu`` or ``cuda``: where the model runs (``cpu`` for an HTTP endpoint: nothing runs here)."""
        ...

    @property
    def name(self) -> str:
        """What is under load (the model reference or the URL), for the ``model`` param."""
        ...

    def open(self, max_batch_size: int) -> contextlib.AbstractContextManager[OpenTarget]:
        """Build the callable for batches of up to ``max_batch_size`` samples."""
        ...


@dataclass(frozen=True)
class ModelTarget:
    """A model loaded and prepared in this process by a runtime (the pipeline's baseline, no fine-tuning).

    Attributes:
        model: Torchvision name, ``tinycnn``, a model file, or a ``models:/`` / ``runs:/`` URI.
        runtime: Runtime name (``eager``, ``compile``, ``onnxruntime``, ...).
        precision: Precision name.
        device: ``cpu`` or ``cuda`` (already resolved).
        image_size: Input height and width.
        weights: Weights file for a torchvision model.
        channels_last: Use the channels-last memory format.
        options: Runtime options as ``(key, value)`` pairs.
        seed: Seed of the synthetic inputs.
        cache_dir: Cache for exports and engines (``None``: the pipeline's default).
        trust_pickle: Allow a model file that runs code when loaded (``--trust-pickle``).
    """

    model: str
    runtime: str = "eager"
    precision: str = "fp32"
    device: str = "cpu"
    image_size: int = 224
    weights: str | None = None
    channels_last: bool = False
    options: tuple[tuple[str, str], ...] = ()
    seed: int = 0
    cache_dir: Path | None = None
    trust_pickle: bool = False

    @property
    def name(self) -> str:
        """The model reference."""
        return self.model

    @contextlib.contextmanager
    def open(self, max_batch_size: int) -> Iterator[OpenTarget]:
        """Load and prepare the model (outside any measurement); yield a callable that runs a slice of one batch."""
        from mlperf_track.pipeline.config import PipelineConfig
        from mlperf_track.pipeline.session import BenchmarkSession

        extra: dict[str, Any] = {"cache_dir": self.cache_dir} if self.cache_dir is not None else {}
        config = PipelineConfig(
            model=self.model,
            weights=self.weights,
            device=self.device,
            runtimes=(self.runtime,),
            precisions=(self.precision,),
            batch_sizes=tuple(sorted({1, max_batch_size})),
            image_size=self.image_size,
            dataset="synthetic",
            epochs=0,
            channels_last=self.channels_last,
            options=self.options,
            seed=self.seed,
            measure_accuracy=False,
            trust_pickle=self.trust_pickle,
            **extra,
        )
        with (
            BenchmarkSession(config) as session,
            open_prepared(session, session.baseline(), self.runtime, self.precision, max_batch_size) as opened,
        ):
            yield opened


@contextlib.contextmanager
def open_prepared(
    session: BenchmarkSession,
    artifact: ModelArtifact,
    runtime_name: str,
    precision: str,
    max_batch_size: int,
    *,
    options: tuple[tuple[str, str], ...] | None = None,
) -> Iterator[OpenTarget]:
    """Prepare ``artifact`` with a runtime of ``session`` and yield a callable that runs a slice of one batch.

    The session's configuration gives the channels-last format, the runtime options, the seed and the cache; the
    batch of ``max_batch_size`` synthetic samples is made once, and each call runs a view of its first samples (no
    copy inside the timed call). ``options`` replaces the configuration's runtime options (a case's own).
    Shared by :class:`ModelTarget` and the pipeline's load stage (:mod:`mlperf_track.pipeline.load_stage`).
    """
    from mlperf_track.engine.device import synchronize
    from mlperf_track.engine.precision import precision_settings
    from mlperf_track.runtimes.base import PrepareRequest

    config = session.config
    with precision_settings(precision, session.device) as tags:
        runtime = session.runtime(runtime_name)
        runtime.check(session.device, precision)
        request = PrepareRequest(
            device=session.device,
            precision=precision,
            batch_sizes=tuple(sorted({1, max_batch_size})),
            input_shape=artifact.input_shape,
            channels_last=config.channels_last,
            options=config.option_dict if options is None else dict(options),
            cache_dir=config.runtime_cache_dir,
        )
        prepared = runtime.prepare(artifact, request)
        device = session.device
        full = prepared.make_input(max_batch_size, seed=config.seed)

        def infer(samples: int) -> None:
            prepared(full[:samples])  # a view: no copy inside the timed call
            synchronize(device)

        try:
            yield OpenTarget(infer, {**tags, **prepared.tags, "load.target": "in_process"})
        finally:
            prepared.close()


@dataclass(frozen=True)
class HttpTarget:
    """An HTTP scoring endpoint on this machine (an MLflow ``models serve`` or any compatible server).

    Attributes:
        url: Server or endpoint URL.
        rows: Sample payloads, one JSON-ready row each.
        timeout_s: Timeout of one request.
        body_format: ``inputs``, ``dataframe_split`` or ``instances``.
        columns: Column names for ``dataframe_split``.
    """

    url: str
    rows: tuple[Any, ...]
    timeout_s: float = 30.0
    body_format: str = "inputs"
    columns: tuple[str, ...] = ()

    @property
    def device(self) -> str:
        """Nothing runs on this machine's accelerator from here."""
        return "cpu"

    @property
    def name(self) -> str:
        """The URL."""
        return self.url

    @contextlib.contextmanager
    def open(self, max_batch_size: int) -> Iterator[OpenTarget]:
        """A keep-alive HTTP client per worker thread."""
        from mlperf_track.engine.load.http import HttpInference

        client = HttpInference(
            self.url, list(self.rows), timeout_s=self.timeout_s, body_format=self.body_format, columns=self.columns
        )
        try:
            yield OpenTarget(
                client, {"load.target": "http", "load.url": mask_url(self.url), "load.body": self.body_format}
            )
        finally:
            client.close()


@dataclass(frozen=True)
class SyntheticTarget:
    """A model with a known service time, ``base_ms + per_sample_ms * n`` (benchmarks and tests)."""

    base_ms: float
    per_sample_ms: float = 0.0

    @property
    def device(self) -> str:
        """It spins on the CPU."""
        return "cpu"

    @property
    def name(self) -> str:
        """``synthetic:<base>+<per sample>ms``."""
        return f"synthetic:{self.base_ms:g}+{self.per_sample_ms:g}ms"

    @contextlib.contextmanager
    def open(self, max_batch_size: int) -> Iterator[OpenTarget]:
        """The spinning model."""
        from mlperf_track.engine.load.synthetic import SyntheticModel

        yield OpenTarget(SyntheticModel(self.base_ms, self.per_sample_ms), {"load.target": "synthetic"})
