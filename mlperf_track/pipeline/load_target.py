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
from typing import Any, Protocol

from mlperf_track.engine.load.ledger import InferenceFn
from mlperf_track.secrets import mask_url

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

    @property
    def name(self) -> str:
        """The model reference."""
        return self.model

    @contextlib.contextmanager
    def open(self, max_batch_size: int) -> Iterator[OpenTarget]:
        """Load, prepare and warm nothing yet: yield a callable that runs a slice of one synthetic batch."""
        from mlperf_track.engine.device import synchronize
        from mlperf_track.engine.precision import precision_settings
        from mlperf_track.pipeline.config import PipelineConfig
        from mlperf_track.pipeline.session import BenchmarkSession
        from mlperf_track.runtimes.base import PrepareRequest

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
            **extra,
        )
        with BenchmarkSession(config) as session, precision_settings(self.precision, session.device) as tags:
            artifact = session.baseline()
            runtime = session.runtime(self.runtime)
            runtime.check(session.device, self.precision)
            request = PrepareRequest(
                device=session.device,
                precision=self.precision,
                batch_sizes=config.batch_sizes,
                input_shape=artifact.input_shape,
                channels_last=self.channels_last,
                options=dict(self.options),
                cache_dir=config.cache_dir / "runtimes",
            )
            prepared = runtime.prepare(artifact, request)
            device = session.device
            full = prepared.make_input(max_batch_size, seed=self.seed)

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
