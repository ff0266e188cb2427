"""The openvino runtime: OpenVINO's CPU plugin, reading the shared ONNX export (or converting from torch.export).

The CPU plugin's ``INFERENCE_PRECISION_HINT`` defaults to bf16 on CPUs with bf16 units, and it quietly maps
hints the CPU lacks (f16 without fp16 units) to bf16, so every case pins the hint and reads it back: a
precision the compiled model does not report is refused, never mislabelled.

Options:
    performance_hint: ``latency`` (default) or ``throughput`` (more streams; a single synchronous request, as
        the engine times it, then uses fewer threads per stream).
    openvino_frontend: ``onnx`` (default: the export shared with onnxruntime) or ``torch`` (``torch.export``
        then ``openvino.convert_model``).
    onnx_opset, onnx_exporter: see :mod:`mlperf_track.runtimes.onnx_export`.

int8 runs the artifact's Q/DQ ONNX file, which the CPU plugin executes with int8 kernels. Quantizing here
(NNCF) would need calibration data, which belongs to the variants layer, not to a runtime.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from mlperf_track.errors import MlperfTrackError, UnsupportedError
from mlperf_track.options import OptionSpec
from mlperf_track.runtimes._common import (
    WorkDir,
    check_artifact,
    check_batch_sizes,
    import_optional,
    missing_reason,
    option,
    vocab_of,
)
from mlperf_track.runtimes._ov_model import OpenVinoPreparedModel
from mlperf_track.runtimes.base import PreparedModel, Runtime, RuntimeCapabilities
from mlperf_track.runtimes.onnx_export import (
    EXPORT_OPTIONS,
    MAX_BATCH,
    TOKEN_EXAMPLE_LEN,
    export_error,
    export_settings,
    typed_onnx,
)

if TYPE_CHECKING:
    from mlperf_track.models.artifact import ModelArtifact
    from mlperf_track.runtimes.base import PrepareRequest

logger = logging.getLogger(__name__)

_PURPOSE = "the openvino runtime"
#: INFERENCE_PRECISION_HINT per precision (int8 graphs keep their non-quantized parts in f32).
PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}
PERFORMANCE_HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT"}
#: Properties read back from the compiled model and recorded as tags.
_READ_BACK = {
    "openvino.inference_precision": "INFERENCE_PRECISION_HINT",
    "openvino.performance_hint": "PERFORMANCE_HINT",
    "openvino.num_threads": "INFERENCE_NUM_THREADS",
    "openvino.num_streams": "NUM_STREAMS",
    "openvino.execution_mode": "EXECUTION_MODE_HINT",
    "openvino.optimal_infer_requests": "OPTIMAL_NUMBER_OF_INFER_REQUESTS",
}


@functools.lru_cache(maxsize=1)
def _cpu_capabilities() -> frozenset[str]:
    """The CPU plugin's OPTIMIZATION_CAPABILITIES (``FP32``, ``BF16``, ``FP16``, ``INT8``, ...)."""
    ov = import_optional("openvino", "openvino", _PURPOSE)
    return frozenset(str(item) for item in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def _property_text(value: Any) -> str:
    """A property value as a tag: element types as ``f32``/``bf16``, enums by name, the rest as text."""
    if hasattr(value, "get_type_name"):
        return str(value.get_type_name())
    if isinstance(getattr(value, "name", None), str):
        return str(value.name)
    return str(value)


class OpenVinoRuntime(Runtime):
    """OpenVINO on the CPU."""

    name: ClassVar[str] = "openvino"
    extra: ClassVar[str | None] = "openvino"
    accepted_options: ClassVar[tuple[OptionSpec, ...]] = (
        OptionSpec(
            "openvino_frontend", "read the ONNX export or the torch module", choices=("onnx", "torch"), default="onnx"
        ),
        OptionSpec(
            "performance_hint",
            "OpenVINO PERFORMANCE_HINT",
            choices=tuple(PERFORMANCE_HINTS),
            default="latency",
            searched=tuple(PERFORMANCE_HINTS),
        ),
        *EXPORT_OPTIONS,
    )

    def unavailable_reason(self) -> str | None:
        """Why openvino cannot be imported here, or ``None``."""
        return missing_reason("openvino", "openvino", _PURPOSE)

    def capabilities(self) -> RuntimeCapabilities:
        """fp32 and Q/DQ int8 on CPU, plus bf16/fp16 where the CPU has the units (per the CPU plugin)."""
        if self.unavailable_reason() is not None:
            return RuntimeCapabilities({})
        units = _cpu_capabilities()
        precisions = {"fp32", "int8"}
        precisions |= {name for name, unit in (("bf16", "BF16"), ("fp16", "FP16")) if unit in units}
        return RuntimeCapabilities({"cpu": frozenset(precisions)}, workloads=frozenset({"image", "tokens"}))

    def _read_model(self, artifact: ModelArtifact, request: PrepareRequest, work: WorkDir) -> tuple[Any, str]:
        ov = import_optional("openvino", "openvino", _PURPOSE)
        frontend = option(request, "openvino_frontend", ("onnx", "torch"), "onnx")
        if request.precision == "int8":
            if artifact.onnx_path is None:
                raise UnsupportedError("precision", "int8", hint="openvino runs int8 from a Q/DQ ONNX artifact")
            return ov.Core().read_model(str(artifact.onnx_path)), "artifact"
        if frontend == "torch" and artifact.module is not None:
            axes: dict[int, Any] = {0: torch.export.Dim("batch", min=1, max=MAX_BATCH)}
            if artifact.tokens is not None:
                axes[1] = torch.export.Dim("sequence", min=2, max=artifact.tokens.max_positions)
                example = torch.zeros((2, min(TOKEN_EXAMPLE_LEN, artifact.tokens.max_positions)), dtype=torch.int64)
            else:
                example = torch.zeros((2, *artifact.input_shape))
            try:
                program = torch.export.export(artifact.module, (example,), dynamic_shapes=(axes,))
                return ov.convert_model(program), "torch.export"
            except Exception as error:
                raise export_error(f"openvino conversion of {artifact.name!r} from torch.export", error) from error
        opset, exporter = export_settings(request.options)
        path = typed_onnx(artifact, "fp32", work.sub("onnx"), opset=opset, exporter=exporter)
        return ov.Core().read_model(str(path)), "onnx"

    def prepare(self, artifact: ModelArtifact, request: PrepareRequest) -> PreparedModel:
        """Read or convert the model, fix its sample shape, compile it with pinned properties, read them back."""
        ov = import_optional("openvino", "openvino", _PURPOSE)
        self.check(request.device, request.precision)
        self.check_workload(artifact.workload)
        check_artifact(self.name, artifact, request.precision, request.device)
        check_batch_sizes(request.batch_sizes)
        hint = option(request, "performance_hint", tuple(PERFORMANCE_HINTS), "latency")
        work = WorkDir(request.cache_dir, self.name)
        try:
            model, source = self._read_model(artifact, request, work)
            # A text model keeps its sequence axis dynamic (one compiled model for every length).
            sample = [-1] if artifact.tokens is not None else list(request.input_shape)
            model.reshape({model.inputs[0]: ov.PartialShape([-1, *sample])})
            config: dict[str, Any] = {
                "INFERENCE_PRECISION_HINT": PRECISION_HINTS[request.precision],
                "PERFORMANCE_HINT": PERFORMANCE_HINTS[hint],
            }
            if request.num_threads is not None:
                config["INFERENCE_NUM_THREADS"] = request.num_threads
            compiled = ov.Core().compile_model(model, "CPU", config)
            tags = {key: _property_text(compiled.get_property(prop)) for key, prop in _READ_BACK.items()}
            self._check_precision(request.precision, tags["openvino.inference_precision"])
        except Exception as error:
            work.cleanup()
            if isinstance(error, MlperfTrackError):
                raise
            raise export_error(f"openvino compilation of {artifact.name!r}", error) from error
        tags.update({"openvino.source": source, "sw.openvino": str(ov.get_version())})
        logger.debug("openvino compiled %s: %s", artifact.name, tags)
        return OpenVinoPreparedModel(compiled, request, tags, on_close=work.cleanup, vocab_size=vocab_of(artifact))

    @staticmethod
    def _check_precision(precision: str, effective: str) -> None:
        if effective != PRECISION_HINTS[precision]:
            raise UnsupportedError(
                "precision",
                precision,
                hint=f"the OpenVINO CPU plugin runs it as {effective} on this CPU, not {PRECISION_HINTS[precision]}",
            )
