"""The onnxruntime runtime: an ONNX export of the module (or the artifact's own ONNX file) in an InferenceSession.

Execution providers: ``CPUExecutionProvider``; with onnxruntime-gpu, ``CUDAExecutionProvider`` (inputs and
outputs bound to torch CUDA tensors through IO binding, TF32 pinned by ``use_tf32``) and
``TensorrtExecutionProvider`` (needed for int8 on GPU: the CUDA provider runs Q/DQ graphs in float).
What runs where is read from ``onnxruntime.get_available_providers()``.

Options:
    execution_provider: ``cpu`` on CPU; ``cuda`` (default) or ``tensorrt`` on GPU (default for int8).
    graph_optimization_level: ``disable``, ``basic``, ``extended``, ``all`` (default).
    onnx_opset, onnx_exporter: see :mod:`mlperf_track.runtimes.onnx_export`.

fp16 (GPU) converts the float32 graph with ``onnxruntime.transformers.float16``; int8 runs the artifact's
Q/DQ ONNX file. fp16 is not offered on CPU: the CPU provider would insert casts and compute in float32.

On a GPU the session computes on a dedicated torch CUDA stream given to the provider as ``user_compute_stream``
(never the legacy default stream), runs without ORT's end-of-run host synchronisation
(``disable_synchronize_execution_providers``, as ``onnxruntime.transformers.io_binding_helper`` does with a
user stream), and each call joins that stream with the caller's current stream on both sides, so the engine's
CUDA events fence exactly the session's work. The TensorRT provider's engine cache is reported as
``runtime.engine_cache`` = ``hit`` or ``built``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
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
from mlperf_track.runtimes._ort_model import OrtPreparedModel
from mlperf_track.runtimes._torch import AMPERE
from mlperf_track.runtimes.base import PreparedModel, Runtime, RuntimeCapabilities
from mlperf_track.runtimes.onnx_export import EXPORT_OPTIONS, convert_fp16, export_error, export_settings, typed_onnx

if TYPE_CHECKING:
    from mlperf_track.models.artifact import ModelArtifact
    from mlperf_track.runtimes.base import PrepareRequest

logger = logging.getLogger(__name__)

GRAPH_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
#: Precisions per provider. TensorRT enables TF32 by default and the provider cannot turn it off: no fp32.
PROVIDER_PRECISIONS = {
    "cpu": frozenset({"fp32", "int8"}),
    "cuda": frozenset({"fp32", "tf32", "fp16"}),
    "tensorrt": frozenset({"tf32", "fp16", "int8"}),
}
_PURPOSE = "the onnxruntime runtime"


@dataclass(frozen=True)
class _Plan:
    provider: str
    model_path: Path
    source: str


class OnnxRuntimeRuntime(Runtime):
    """ONNX Runtime with the CPU, CUDA or TensorRT execution provider."""

    name: ClassVar[str] = "onnxruntime"
    extra: ClassVar[str | None] = "onnx"
    accepted_options: ClassVar[tuple[OptionSpec, ...]] = (
        OptionSpec(
            "execution_provider", "cpu on CPU; cuda or tensorrt on GPU", choices=tuple(PROVIDERS), default="cpu/cuda"
        ),
        OptionSpec(
            "graph_optimization_level",
            "ORT graph optimizations",
            choices=tuple(GRAPH_LEVELS),
            default="all",
            searched=("basic", "extended", "all"),
        ),
        *EXPORT_OPTIONS,
    )
    experimental_devices: ClassVar[frozenset[str]] = frozenset({"cuda"})

    def unavailable_reason(self) -> str | None:
        """Why onnxruntime (or onnx) cannot be imported here, or ``None``."""
        return missing_reason("onnxruntime", "onnx", _PURPOSE) or missing_reason("onnx", "onnx", _PURPOSE)

    def _providers(self) -> list[str]:
        """Provider keys (``cpu``, ``cuda``, ``tensorrt``) usable here."""
        ort = import_optional("onnxruntime", "onnx", _PURPOSE)
        available = set(ort.get_available_providers())
        usable = ["cpu"]
        if torch.cuda.is_available():
            usable += [key for key in ("cuda", "tensorrt") if PROVIDERS[key] in available]
        return usable

    def capabilities(self) -> RuntimeCapabilities:
        """CPU: fp32 and Q/DQ int8. CUDA: what the installed GPU providers run (tf32 from Ampere on)."""
        if self.unavailable_reason() is not None:
            return RuntimeCapabilities({})
        cuda: set[str] = set()
        for key in self._providers():
            if key != "cpu":
                cuda |= PROVIDER_PRECISIONS[key]
        if cuda and torch.cuda.get_device_capability() < AMPERE:
            cuda.discard("tf32")
        return RuntimeCapabilities(
            {"cpu": PROVIDER_PRECISIONS["cpu"], "cuda": frozenset(cuda)}, workloads=frozenset({"image", "tokens"})
        )

    def _choose_provider(self, request: PrepareRequest) -> str:
        if request.device == "cpu":
            return option(request, "execution_provider", ("cpu",), "cpu")
        default = "tensorrt" if request.precision == "int8" else "cuda"
        gpu_providers = [key for key in self._providers() if key != "cpu"]
        provider = option(request, "execution_provider", gpu_providers, default)
        if request.precision not in PROVIDER_PRECISIONS[provider]:
            raise UnsupportedError(
                "precision",
                request.precision,
                sorted(PROVIDER_PRECISIONS[provider]),
                hint=f"what onnxruntime's {PROVIDERS[provider]} runs",
            )
        return provider

    def _plan(self, artifact: ModelArtifact, request: PrepareRequest, work: WorkDir) -> _Plan:
        provider = self._choose_provider(request)
        if request.precision == "int8":
            if artifact.onnx_path is None:
                hint = f"onnxruntime runs int8 from a Q/DQ ONNX file; the artifact {artifact.name!r} has none"
                raise UnsupportedError("precision", "int8", hint=hint)
            return _Plan(provider, Path(artifact.onnx_path), "artifact")
        opset, exporter = export_settings(request.options)
        source = "export" if artifact.module is not None else "artifact"
        path = typed_onnx(artifact, "fp32", work.sub("onnx"), opset=opset, exporter=exporter)
        if request.precision == "fp16" and provider == "cuda":
            path = convert_fp16(path, work.sub("onnx"))
            source += "+onnxruntime.transformers.float16"
        return _Plan(provider, path, source)

    def _provider_list(self, plan: _Plan, request: PrepareRequest, work: WorkDir, stream: Any) -> list[Any]:
        if plan.provider == "cpu":
            return [PROVIDERS["cpu"]]
        device_id = torch.cuda.current_device()
        stream_options = {"has_user_compute_stream": "1", "user_compute_stream": str(stream.cuda_stream)}
        cuda_options = {
            "device_id": str(device_id),
            "use_tf32": "1" if request.precision == "tf32" else "0",
            **stream_options,
        }
        providers: list[Any] = [(PROVIDERS["cuda"], cuda_options), PROVIDERS["cpu"]]
        if plan.provider == "tensorrt":
            sizes = sorted(request.batch_sizes)
            name = _input_name(plan.model_path)
            shape = "x".join(str(dim) for dim in request.input_shape)
            trt_options = {
                "device_id": str(device_id),
                "trt_fp16_enable": str(request.precision == "fp16"),
                "trt_int8_enable": str(request.precision == "int8"),
                "trt_engine_cache_enable": "True",
                "trt_engine_cache_path": str(work.sub("ort-tensorrt")),
                "trt_profile_min_shapes": f"{name}:{sizes[0]}x{shape}",
                "trt_profile_opt_shapes": f"{name}:{sizes[-1]}x{shape}",
                "trt_profile_max_shapes": f"{name}:{sizes[-1]}x{shape}",
                **stream_options,
            }
            providers.insert(0, (PROVIDERS["tensorrt"], trt_options))
        return providers

    def prepare(self, artifact: ModelArtifact, request: PrepareRequest) -> PreparedModel:
        """Export (or reuse) the ONNX file, convert it for fp16, and open a session on the chosen provider."""
        ort = import_optional("onnxruntime", "onnx", _PURPOSE)
        self.check(request.device, request.precision)
        self.check_workload(artifact.workload)
        check_artifact(self.name, artifact, request.precision, request.device)
        check_batch_sizes(request.batch_sizes)
        level = option(request, "graph_optimization_level", tuple(GRAPH_LEVELS), "all")
        work = WorkDir(request.cache_dir, self.name)
        stream = torch.cuda.Stream() if request.device == "cuda" else None
        try:
            plan = self._plan(artifact, request, work)
            session_options = ort.SessionOptions()
            session_options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, GRAPH_LEVELS[level])
            session_options.log_severity_level = 3
            if request.num_threads is not None:
                session_options.intra_op_num_threads = request.num_threads
            providers = self._provider_list(plan, request, work, stream)
            engines_before = _engine_files(work, plan.provider)
            session = ort.InferenceSession(str(plan.model_path), session_options, providers=providers)
            self._check_provider(session, plan.provider)
            engines_after = _engine_files(work, plan.provider)
        except Exception as error:
            work.cleanup()
            if isinstance(error, MlperfTrackError):
                raise
            raise export_error(f"creating an onnxruntime session for {artifact.name!r}", error) from error
        tags = {
            "runtime.providers": ",".join(session.get_providers()),
            "runtime.execution_provider": PROVIDERS[plan.provider],
            "runtime.graph_optimization_level": level,
            "runtime.onnx_source": plan.source,
            "runtime.onnx_file": plan.model_path.name,
            "runtime.intra_op_threads": "default" if request.num_threads is None else str(request.num_threads),
            "runtime.io_binding": str(request.device == "cuda").lower(),
            "sw.onnxruntime": str(ort.__version__),
        }
        if request.device == "cuda":
            tags["runtime.cuda_use_tf32"] = str(request.precision == "tf32").lower()
            tags["runtime.cuda_stream"] = "dedicated (user_compute_stream), joined to the caller's stream"
        if plan.provider == "tensorrt":
            tags["runtime.engine_cache"] = "built" if engines_after - engines_before else "hit"
        tags.update(self.experimental_tags(request.device))
        logger.debug("onnxruntime session for %s on %s", artifact.name, tags["runtime.providers"])
        return OrtPreparedModel(
            session, request, tags, on_close=work.cleanup, stream=stream, vocab_size=vocab_of(artifact)
        )

    @staticmethod
    def _check_provider(session: Any, provider: str) -> None:
        # onnxruntime falls back to the CPU provider with only a log line when a GPU provider cannot load
        # (missing CUDA/cuDNN/TensorRT libraries): that would time the CPU under a GPU label.
        active = session.get_providers()
        if PROVIDERS[provider] not in active:
            raise UnsupportedError(
                "option execution_provider",
                provider,
                active,
                hint=f"onnxruntime could not load {PROVIDERS[provider]} (are its CUDA libraries installed?)",
            )


def _engine_files(work: WorkDir, provider: str) -> set[str]:
    """The TensorRT provider's cached engine files (empty for other providers)."""
    if provider != "tensorrt":
        return set()
    return {path.name for path in work.sub("ort-tensorrt").glob("*.engine")}


def _input_name(path: Path) -> str:
    """The first graph input's name, read without loading the weights."""
    onnx = import_optional("onnx", "onnx", _PURPOSE)
    model = onnx.load(str(path), load_external_data=False)
    initializers = {tensor.name for tensor in model.graph.initializer}
    return next(item.name for item in model.graph.input if item.name not in initializers)
