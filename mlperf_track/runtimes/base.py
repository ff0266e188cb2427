"""The runtime interface: turn a :class:`ModelArtifact` into something the engine can time.

A runtime declares what it can do (:class:`RuntimeCapabilities`); callers ask it, never branch on names.
Members live one per module and are registered by name in :mod:`mlperf_track.runtimes.registry`.
Heavy dependencies are imported inside :meth:`Runtime.prepare`, never at module import.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from mlperf_track.errors import UnsupportedError

if TYPE_CHECKING:
    import torch

    from mlperf_track.models.artifact import ModelArtifact
    from mlperf_track.options import OptionSpec

logger = logging.getLogger(__name__)

#: Precisions that an artifact must already carry (a quantized model); a runtime cannot make them up.
ARTIFACT_PRECISIONS = frozenset({"int8", "fp8"})
#: Tag set on every prepared model of a path that has not yet been proven on its hardware.
EXPERIMENTAL_TAG = "runtime.experimental"
_WARNED: set[tuple[str, str]] = set()
_WORKLOAD_WORDS = {
    "image": "an image model",
    "tokens": "a text encoder",
    "generation": "a text decoder, which generates token by token",
}


def keeps_own_form(artifact: ModelArtifact) -> bool:
    """Whether a runtime must run ``artifact`` as it is: pinned to a device, or quantized (int8/fp8 kernels keep
    their own dtypes and layout). Everything else is moved to the case's device, dtype and memory format."""
    return artifact.device is not None or artifact.precision in ARTIFACT_PRECISIONS


@dataclass(frozen=True)
class RuntimeCapabilities:
    """What a runtime can run.

    Attributes:
        precisions_by_device: For each device (``cpu``, ``cuda``), the precisions it runs there. ``int8``/``fp8``
            are run from an artifact that already carries them (a quantized variant), never made up.
        dynamic_batch: Whether one prepared model serves every batch size.
        channels_last: Whether the runtime honours ``channels_last`` (lays out weights and inputs NHWC). A
            runtime that does not ignores the flag, and a case there is planned and logged without it.
        per_batch_preparation: Whether preparation specialises the model for each requested batch size (a
            static-shape compile per size): its cost grows with the batch sizes requested, and a batch size that
            was not requested would be prepared again at its first call. A caller that measures one batch size
            at a time (the tuner) prepares only that one.
        workloads: What kinds of model it runs (:data:`~mlperf_track.models.artifact.WORKLOADS`): ``image``,
            ``tokens`` (text encoders: int64 ids, dynamic batch and sequence axes), ``generation`` (decoders,
            token by token with a KV cache).
    """

    precisions_by_device: Mapping[str, frozenset[str]]
    dynamic_batch: bool = True
    channels_last: bool = False
    per_batch_preparation: bool = False
    workloads: frozenset[str] = frozenset({"image"})

    @property
    def devices(self) -> frozenset[str]:
        """Devices with at least one precision."""
        return frozenset(device for device, precisions in self.precisions_by_device.items() if precisions)

    def precisions(self, device: str) -> frozenset[str]:
        """Precisions supported on ``device`` (empty when the device is not supported)."""
        return self.precisions_by_device.get(device, frozenset())

    def supports(self, device: str, precision: str) -> bool:
        """Whether ``precision`` runs on ``device``."""
        return precision in self.precisions(device)

    def check(self, runtime: str, device: str, precision: str) -> None:
        """Raise :class:`UnsupportedError` naming what is allowed when the pair is unsupported."""
        if device not in self.devices:
            raise UnsupportedError(
                "device", device, sorted(self.devices), hint=f"the {runtime} runtime does not run on {device}"
            )
        if not self.supports(device, precision):
            raise UnsupportedError(
                "precision",
                precision,
                sorted(self.precisions(device)),
                hint=f"what the {runtime} runtime runs on {device}",
            )


@dataclass(frozen=True)
class PrepareRequest:
    """What the caller wants a runtime to prepare.

    Attributes:
        device: ``cpu`` or ``cuda``.
        precision: The precision to run in.
        batch_sizes: Every batch size the prepared model will be called with (optimisation profiles, CUDA graphs).
        input_shape: One sample's shape: ``(C, H, W)``, or ``(sequence,)`` for a text model.
        channels_last: Use the channels-last memory format where the runtime has one.
        num_threads: CPU threads, or ``None`` for the runtime's default.
        options: Runtime-specific options (``compile_mode``, ``graph_optimization_level``, ...).
        cache_dir: Where exported files and engines may be cached, or ``None`` for a temporary directory.
        max_sequence: For a decoder, the longest sequence (prompt plus new tokens) any call will hold: it sizes a
            static KV cache; ``None`` otherwise.
    """

    device: str
    precision: str
    batch_sizes: tuple[int, ...]
    input_shape: tuple[int, ...]
    channels_last: bool = False
    num_threads: int | None = None
    options: Mapping[str, str] = field(default_factory=dict)
    cache_dir: Path | None = None
    max_sequence: int | None = None


class PreparedModel(ABC):
    """A model prepared by a runtime, ready to be timed.

    The engine times ``prepared(inputs)`` where ``inputs = prepared.make_input(batch_size)``; input creation
    and host-device copies stay outside the timed region. ``__call__`` may return before a GPU finishes:
    the engine synchronises.
    """

    #: ``cpu`` or ``cuda``.
    device: str
    #: Effective settings worth recording as MLflow tags (``precision.cudnn_allow_tf32``, ``ort.providers``).
    tags: dict[str, str]

    @abstractmethod
    def make_input(self, batch_size: int, seed: int = 0) -> Any:
        """A synthetic input batch in the runtime's native form, already where the runtime reads it."""

    @abstractmethod
    def __call__(self, inputs: Any) -> Any:
        """Run one batch produced by :meth:`make_input`."""

    @abstractmethod
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Run a float32 NCHW CPU batch and return float32 logits on the CPU (accuracy, conformance)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (sessions, engines, GPU memory)."""


class Runtime(ABC):
    """A way of running a model (eager PyTorch, torch.compile, ONNX Runtime, TensorRT, OpenVINO)."""

    #: Registry name, also the ``runtime`` param in MLflow.
    name: ClassVar[str]
    #: The pip extra that installs this runtime's dependencies, or ``None`` when torch suffices.
    extra: ClassVar[str | None] = None
    #: The ``--option`` keys this runtime reads (checked up front by :func:`mlperf_track.options.check_options`).
    accepted_options: ClassVar[tuple[OptionSpec, ...]] = ()
    #: Devices on which this runtime's code has never run against real hardware: results there are tagged
    #: ``runtime.experimental=true`` and the first use per process logs a warning. ``benchmarks/gpu_check.py``
    #: is the check that lets a device leave this set.
    experimental_devices: ClassVar[frozenset[str]] = frozenset()

    @abstractmethod
    def capabilities(self) -> RuntimeCapabilities:
        """What this runtime can run on this machine (may depend on installed providers and GPUs)."""

    def unavailable_reason(self) -> str | None:
        """``None`` when the runtime can be used here, else why not (e.g. the missing extra)."""
        return None

    def option_unsupported_reason(self, device: str, key: str, value: str) -> str | None:
        """``None`` when option ``key=value`` (a declared, valid value) runs on ``device``, else why not.

        The declaration (:attr:`accepted_options`) says which values exist; this says which of them a device can
        run (CUDA graphs need a GPU), so a tuner never proposes one that would fail.
        """
        return None

    @abstractmethod
    def prepare(self, artifact: ModelArtifact, request: PrepareRequest) -> PreparedModel:
        """Prepare ``artifact`` (export/compile/build: the time this takes is ``startup/prepare_s``)."""

    def honours_channels_last(self, artifact: ModelArtifact) -> bool:
        """Whether ``channels_last`` changes how this runtime runs ``artifact`` (a quantized artifact keeps its own
        layout, and a runtime without the capability ignores the flag)."""
        return self.capabilities().channels_last and not keeps_own_form(artifact)

    def experimental_tags(self, device: str) -> dict[str, str]:
        """``{"runtime.experimental": "true"}`` on an unproven device (warning once per process), else ``{}``."""
        if device not in self.experimental_devices:
            return {}
        if (self.name, device) not in _WARNED:
            _WARNED.add((self.name, device))
            logger.warning(
                "the %s runtime on %s has not yet been verified on real hardware (benchmarks/gpu_check.py does "
                "that); its results are tagged %s=true",
                self.name,
                device,
                EXPERIMENTAL_TAG,
            )
        return {EXPERIMENTAL_TAG: "true"}

    def check_workload(self, workload: str) -> None:
        """Raise a one-line :class:`UnsupportedError` when this runtime cannot run ``workload`` models."""
        allowed = self.capabilities().workloads
        if workload not in allowed:
            raise UnsupportedError(
                "runtime",
                self.name,
                hint=f"the {self.name} runtime runs {', '.join(sorted(allowed)) or 'nothing here'} models, "
                f"not {workload} ({_WORKLOAD_WORDS.get(workload, workload)})",
            )

    def check(self, device: str, precision: str) -> None:
        """Raise a clear error when this runtime cannot run ``precision`` on ``device`` here."""
        reason = self.unavailable_reason()
        if reason is not None:
            raise UnsupportedError("runtime", self.name, hint=reason)
        self.capabilities().check(self.name, device, precision)
