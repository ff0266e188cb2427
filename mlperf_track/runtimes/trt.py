"""The tensorrt runtime: ONNX -> TensorRT engine (cached on disk) -> ``execute_async_v3`` on torch CUDA memory.

Precision handling follows the TensorRT version: TensorRT 10 builds a weakly typed network from the float32
ONNX graph with builder flags (FP16/BF16/INT8/FP8; TF32 cleared for fp32). TensorRT 11 removed weak typing:
the network is strongly typed and its ONNX graph is already cast to the precision (see
:func:`mlperf_track.runtimes.onnx_export.typed_onnx`). int8 and fp8 always come from the artifact's explicit
Q/DQ ONNX file, so a plan asking TensorRT for int8/fp8 without a variant that produces such a file for the GPU
is refused before any case runs (see :meth:`~mlperf_track.runtimes.base.RuntimeCapabilities` and the session's
precision check). Engines are cached under ``cache_dir/tensorrt`` keyed by the ONNX file's hash, the precision,
the batch range, the TensorRT version and the GPU name; ``runtime.engine_cache`` says ``hit`` or ``built``.
Execution runs on a dedicated CUDA stream (see :mod:`mlperf_track.runtimes._trt_model`).

Options:
    tensorrt_typing: ``auto`` (default: weak on TensorRT 10, strong from 11), ``strong`` or ``weak``.
    workspace_mb: builder workspace limit (default 4096).
    opt_batch: the batch size kernels are tuned for (default: the largest requested).
    onnx_opset, onnx_exporter: see :mod:`mlperf_track.runtimes.onnx_export`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from mlperf_track.errors import ConfigError, ExportError, MlperfTrackError, UnsupportedError
from mlperf_track.models.files import file_digest
from mlperf_track.options import OptionSpec
from mlperf_track.runtimes._common import (
    WorkDir,
    check_artifact,
    check_batch_sizes,
    import_optional,
    int_option,
    missing_reason,
    option,
)
from mlperf_track.runtimes._torch import AMPERE
from mlperf_track.runtimes._trt_build import EngineSpec, cached_engine, make_logger, trt_major
from mlperf_track.runtimes._trt_model import TensorRtPreparedModel
from mlperf_track.runtimes.base import PreparedModel, Runtime, RuntimeCapabilities
from mlperf_track.runtimes.onnx_export import EXPORT_OPTIONS, export_error, export_settings, typed_onnx

if TYPE_CHECKING:
    from pathlib import Path

    from mlperf_track.models.artifact import ModelArtifact
    from mlperf_track.runtimes.base import PrepareRequest

logger = logging.getLogger(__name__)

_PURPOSE = "the tensorrt runtime"
#: Compute capability from which GPUs have FP8 tensor cores (Ada, Hopper).
FP8_CAPABILITY = (8, 9)
DEFAULT_WORKSPACE_MB = 4096


def gpu_precisions(capability: tuple[int, int]) -> frozenset[str]:
    """The precisions TensorRT runs on a GPU of this compute capability."""
    precisions = {"fp32", "fp16", "int8"}
    if capability >= AMPERE:
        precisions |= {"tf32", "bf16"}
    if capability >= FP8_CAPABILITY:
        precisions.add("fp8")
    return frozenset(precisions)


def strongly_typed(version: str, typing_option: str) -> bool:
    """Whether to build a strongly typed network for TensorRT ``version`` and the ``tensorrt_typing`` option."""
    if typing_option == "auto":
        return trt_major(version) >= 11
    if typing_option == "weak" and trt_major(version) >= 11:
        raise UnsupportedError(
            "option tensorrt_typing", "weak", ["auto", "strong"], hint=f"TensorRT {version} removed weak typing"
        )
    return typing_option == "strong"


class TensorRtRuntime(Runtime):
    """NVIDIA TensorRT on a CUDA GPU."""

    name: ClassVar[str] = "tensorrt"
    extra: ClassVar[str | None] = "tensorrt"
    accepted_options: ClassVar[tuple[OptionSpec, ...]] = (
        OptionSpec("tensorrt_typing", "network typing", choices=("auto", "strong", "weak"), default="auto"),
        OptionSpec("workspace_mb", "builder workspace limit in MiB", "int", low=1, default=str(DEFAULT_WORKSPACE_MB)),
        OptionSpec("opt_batch", "batch size the kernels are tuned for", "int", low=1, default="largest batch size"),
        *EXPORT_OPTIONS,
    )
    experimental_devices: ClassVar[frozenset[str]] = frozenset({"cuda"})

    def unavailable_reason(self) -> str | None:
        """Why TensorRT cannot run here: the package is missing, or there is no CUDA GPU."""
        missing = missing_reason("tensorrt", "tensorrt", _PURPOSE) or missing_reason("onnx", "tensorrt", _PURPOSE)
        if missing is not None:
            return missing
        if not torch.cuda.is_available():
            return f"{_PURPOSE} needs a CUDA GPU; torch sees none on this machine"
        return None

    def capabilities(self) -> RuntimeCapabilities:
        """CUDA only: fp32/fp16/int8, tf32/bf16 from Ampere, fp8 from Ada/Hopper (int8/fp8 from Q/DQ artifacts)."""
        if self.unavailable_reason() is not None:
            return RuntimeCapabilities({})
        return RuntimeCapabilities({"cuda": gpu_precisions(torch.cuda.get_device_capability())})

    def _spec(self, trt: Any, onnx_path: Path, request: PrepareRequest, strong: bool) -> EngineSpec:
        sizes = sorted(request.batch_sizes)
        opt_batch = int_option(request.options, "opt_batch", sizes[-1])
        if not sizes[0] <= opt_batch <= sizes[-1]:
            raise ConfigError("option opt_batch", opt_batch, f"a batch size in [{sizes[0]}, {sizes[-1]}]")
        return EngineSpec(
            onnx_digest=file_digest(onnx_path),
            precision=request.precision,
            min_batch=sizes[0],
            opt_batch=opt_batch,
            max_batch=sizes[-1],
            input_shape=request.input_shape,
            trt_version=str(trt.__version__),
            gpu_name=torch.cuda.get_device_name(),
            strongly_typed=strong,
            workspace_mb=int_option(request.options, "workspace_mb", DEFAULT_WORKSPACE_MB),
        )

    def prepare(self, artifact: ModelArtifact, request: PrepareRequest) -> PreparedModel:
        """Type the ONNX graph as needed, build (or load) the engine, and open an execution context."""
        trt = import_optional("tensorrt", "tensorrt", _PURPOSE)
        self.check(request.device, request.precision)
        self.check_workload(artifact.workload)
        check_artifact(self.name, artifact, request.precision, request.device)
        check_batch_sizes(request.batch_sizes)
        typing_option = option(request, "tensorrt_typing", ("auto", "strong", "weak"), "auto")
        strong = strongly_typed(str(trt.__version__), typing_option)
        opset, exporter = export_settings(request.options)
        work = WorkDir(request.cache_dir, self.name)
        try:
            graph_precision = request.precision if strong or request.precision in ("int8", "fp8") else "fp32"
            onnx_path = typed_onnx(artifact, graph_precision, work.sub("onnx"), opset=opset, exporter=exporter)
            spec = self._spec(trt, onnx_path, request, strong)
            serialized, build_tags = cached_engine(trt, onnx_path, spec, work.sub("tensorrt"))
            runtime = trt.Runtime(make_logger(trt))
            engine = runtime.deserialize_cuda_engine(serialized)
            if engine is None:
                raise ExportError(f"TensorRT could not deserialize the engine built for {artifact.name!r}")
        except Exception as error:
            work.cleanup()
            if isinstance(error, MlperfTrackError):
                raise
            raise export_error(f"building a TensorRT engine for {artifact.name!r}", error) from error
        tags = {
            **build_tags,
            "tensorrt.strongly_typed": str(strong).lower(),
            "tensorrt.profile_batches": f"{spec.min_batch}/{spec.opt_batch}/{spec.max_batch}",
            "tensorrt.onnx_file": onnx_path.name,
            "tensorrt.engine_key": spec.cache_key(),
            "sw.tensorrt": str(trt.__version__),
            "runtime.engine_cache": "hit" if build_tags.get("tensorrt.engine_cached") == "true" else "built",
            **self.experimental_tags(request.device),
        }
        return TensorRtPreparedModel(trt, (runtime, engine), request, tags, on_close=work.cleanup)
