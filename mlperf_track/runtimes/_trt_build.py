"""Building TensorRT engines from ONNX, and their on-disk cache.

Written against the TensorRT 10 and 11 Python API: ``trt.Builder``, a network filled by ``trt.OnnxParser``,
``IBuilderConfig.set_memory_pool_limit(MemoryPoolType.WORKSPACE, ...)``, one optimisation profile over the
batch range, ``build_serialized_network``. TensorRT 10 has builder precision flags (weak typing); TensorRT 11
removed them: networks are strongly typed, so the ONNX graph must already carry the precision (fp16/bf16
casts, or explicit Q/DQ nodes for int8/fp8).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mlperf_track.errors import ExportError

logger = logging.getLogger(__name__)

#: Builder flags that enable each precision under weak typing (TensorRT 10).
WEAK_TYPING_FLAGS = {"fp16": ("FP16",), "bf16": ("BF16",), "int8": ("INT8",), "fp8": ("FP8",)}


def trt_major(version: str) -> int:
    """Major version from ``tensorrt.__version__`` (``"10.13.0.35"`` -> 10)."""
    return int(version.split(".", maxsplit=1)[0])


@dataclass(frozen=True)
class EngineSpec:
    """Everything that determines a built engine; its hash names the cache file.

    Attributes:
        onnx_digest: SHA-256 of the ONNX file the engine is built from.
        precision: The case precision.
        min_batch: Smallest batch size of the optimisation profile.
        opt_batch: The batch size kernels are tuned for.
        max_batch: Largest batch size of the profile.
        input_shape: One sample's shape.
        trt_version: ``tensorrt.__version__``.
        gpu_name: ``torch.cuda.get_device_name()`` (engines are specific to a GPU model).
        strongly_typed: Whether the network is strongly typed.
        workspace_mb: Builder workspace limit.
    """

    onnx_digest: str
    precision: str
    min_batch: int
    opt_batch: int
    max_batch: int
    input_shape: tuple[int, ...]
    trt_version: str
    gpu_name: str
    strongly_typed: bool
    workspace_mb: int

    def cache_key(self) -> str:
        """A stable hex key: equal specs give equal keys, any changed field gives another."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:24]


def make_logger(trt: Any) -> Any:
    """A ``trt.ILogger`` that forwards to :mod:`logging` and keeps errors for exception messages."""

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                self.errors.append(msg)
                logger.error("TensorRT: %s", msg)
            elif severity == trt.ILogger.Severity.WARNING:
                logger.warning("TensorRT: %s", msg)
            else:
                logger.debug("TensorRT: %s", msg)

    return _Logger()


def _parse(trt: Any, builder: Any, trt_logger: Any, onnx_path: Path, strongly_typed: bool) -> tuple[Any, Any]:
    """The network and its parser (keep the parser alive while the network is used: it owns the weights)."""
    flags = 0
    if strongly_typed and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [parser.get_error(index) for index in range(parser.num_errors)]
        operators = [str(e.node_operator()) for e in errors if hasattr(e, "node_operator") and e.node_operator()]
        operator = operators[0] if operators else None
        details = "; ".join(str(e.desc()) for e in errors) or "no details"
        where = f" at operator {operator}" if operator else ""
        raise ExportError(f"TensorRT's ONNX parser failed on {onnx_path.name}{where}: {details}")
    return network, parser


def _set_precision(trt: Any, config: Any, precision: str, strongly_typed: bool) -> dict[str, str]:
    tags = {}
    if not strongly_typed:
        for name in WEAK_TYPING_FLAGS.get(precision, ()):
            config.set_flag(getattr(trt.BuilderFlag, name))
        tags["tensorrt.builder_flags"] = ",".join(WEAK_TYPING_FLAGS.get(precision, ())) or "none"
    if hasattr(trt.BuilderFlag, "TF32"):
        if precision == "fp32":
            config.clear_flag(trt.BuilderFlag.TF32)
        else:
            config.set_flag(trt.BuilderFlag.TF32)
        tags["tensorrt.tf32"] = str(config.get_flag(trt.BuilderFlag.TF32)).lower()
    else:
        tags["tensorrt.tf32"] = "no TF32 flag in this TensorRT"
    return tags


def build_engine(trt: Any, onnx_path: Path, spec: EngineSpec) -> tuple[bytes, dict[str, str]]:
    """Build a serialized engine for ``spec`` from ``onnx_path``; returns it and the effective settings as tags.

    Raises:
        ExportError: The parser or the builder failed (naming the operator when the parser does).
    """
    trt_logger = make_logger(trt)
    builder = trt.Builder(trt_logger)
    network, _parser = _parse(trt, builder, trt_logger, onnx_path, spec.strongly_typed)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, spec.workspace_mb << 20)
    tags = _set_precision(trt, config, spec.precision, spec.strongly_typed)
    graph_input = network.get_input(0)
    profile = builder.create_optimization_profile()
    profile.set_shape(
        graph_input.name,
        (spec.min_batch, *spec.input_shape),
        (spec.opt_batch, *spec.input_shape),
        (spec.max_batch, *spec.input_shape),
    )
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        detail = trt_logger.errors[-1] if trt_logger.errors else "see the TensorRT log"
        raise ExportError(f"TensorRT could not build an engine from {onnx_path.name}: {detail}")
    return bytes(serialized), tags


def cached_engine(trt: Any, onnx_path: Path, spec: EngineSpec, directory: Path) -> tuple[bytes, dict[str, str]]:
    """The serialized engine for ``spec``, from ``directory`` when built before, else built and stored there.

    A JSON file beside each engine keeps its spec and the settings it was built with (reported as tags).
    """
    path = Path(directory) / f"{spec.cache_key()}.engine"
    sidecar = path.with_suffix(".json")
    if path.exists() and sidecar.exists():
        logger.info("reusing TensorRT engine %s", path)
        saved = json.loads(sidecar.read_text())
        tags = {key: str(value) for key, value in saved.items() if key.startswith("tensorrt.")}
        return path.read_bytes(), {**tags, "tensorrt.engine_cached": "true"}
    serialized, tags = build_engine(trt, onnx_path, spec)
    partial = path.with_suffix(".partial")
    partial.write_bytes(serialized)
    sidecar.write_text(json.dumps({**asdict(spec), **tags}, indent=2))
    partial.replace(path)
    return serialized, {**tags, "tensorrt.engine_cached": "false"}
