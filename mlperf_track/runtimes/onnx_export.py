"""ONNX export shared by the ONNX-consuming runtimes (onnxruntime, openvino, tensorrt).

Exports go through ``torch.onnx.export``. The default is the ``dynamo`` (torch.export-based) exporter, the
maintained path since torch 2.9 (the TorchScript one is deprecated but kept as ``onnx_exporter=torchscript``
for models torch.export cannot capture). Both export torchvision ResNets with a dynamic batch axis on torch
2.14. Files are cached in a directory, keyed by a hash of the model's state and architecture, the input shape,
the dtype, the opset and the exporter, so runtimes and repeated cases reuse one export.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import os
import re
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from mlperf_track.engine.precision import dtype_for
from mlperf_track.errors import ExportError, MlperfTrackError, UnsupportedError
from mlperf_track.models.files import file_digest
from mlperf_track.options import OptionSpec
from mlperf_track.runtimes._common import FLOAT_PRECISIONS, WorkDir, import_optional, int_option
from mlperf_track.spec import check_choice

if TYPE_CHECKING:
    from mlperf_track.models.artifact import ModelArtifact, OnnxExporter, TokenInputs

logger = logging.getLogger(__name__)

#: Name of the exported graph's input and output.
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
#: The opset torch's ONNX function library is written in (others go through the version converter).
DEFAULT_OPSET = 18
EXPORTERS = ("dynamo", "torchscript")
#: The export options every ONNX-based runtime accepts (declared here, read by :func:`export_settings`).
EXPORT_OPTIONS = (
    OptionSpec("onnx_opset", "ONNX opset of the export", "int", low=1, default=str(DEFAULT_OPSET)),
    OptionSpec("onnx_exporter", "torch.onnx exporter", choices=EXPORTERS, default="dynamo"),
)
#: Upper bound of the dynamic batch dimension given to torch.export.
MAX_BATCH = 1 << 16
_CHATTY_LOGGERS = ("onnxscript", "onnx_ir")


def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    if tensor.is_quantized:
        tensor = tensor.int_repr()
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes()


def module_digest(module: torch.nn.Module) -> str:
    """SHA-256 over a module's architecture (its repr and generated code) and its state (names, dtypes, bytes)."""
    digest = hashlib.sha256()
    digest.update(type(module).__qualname__.encode())
    digest.update(repr(module).encode())
    digest.update(str(getattr(module, "code", "")).encode())
    for key, value in module.state_dict().items():
        digest.update(key.encode())
        if isinstance(value, torch.Tensor):
            digest.update(f"{value.dtype}{tuple(value.shape)}".encode())
            digest.update(_tensor_bytes(value))
        else:
            digest.update(repr(value).encode())
    return digest.hexdigest()


_OPERATOR_PATTERNS = (
    re.compile(r"OpOverload\(op='([\w.]+)', overload='(\w+)'\)"),
    re.compile(r"target=torch\.ops\.([\w.]+)"),
    re.compile(r"operator '([\w:.]+)'"),
    re.compile(r"implementation for (\w+)\("),
)


def operator_from_error(error: BaseException) -> str | None:
    """The operator an exporter or runtime names in ``error`` (or its causes), when it names one."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current)
        for pattern in _OPERATOR_PATTERNS:
            match = pattern.search(text)
            if match:
                return ".".join(group for group in match.groups() if group)
        current = current.__cause__ or current.__context__
    return None


def _summary(error: BaseException) -> str:
    """The most specific one-line message in the chain (the root cause, or the error itself)."""
    root = error
    while root.__cause__ is not None:
        root = root.__cause__
    lines = [line.strip() for line in str(root).splitlines() if line.strip()]
    return f"{type(root).__name__}: {lines[0][:300]}" if lines else type(root).__name__


def export_error(what: str, error: BaseException, hint: str | None = None) -> ExportError:
    """An :class:`ExportError` for ``what`` that names the failing operator when the error says which."""
    operator = operator_from_error(error)
    message = f"{what} failed"
    if operator:
        message += f" at operator {operator}"
    message += f" ({_summary(error)})"
    if hint:
        message += f"; {hint}"
    return ExportError(message)


@contextlib.contextmanager
def _quiet_exporter_logs() -> Iterator[None]:
    """Raise the exporter's chatty INFO loggers (onnxscript's optimizer passes) to WARNING for the export."""
    loggers = [logging.getLogger(name) for name in _CHATTY_LOGGERS]
    levels = [item.level for item in loggers]
    for item in loggers:
        item.setLevel(max(item.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for item, level in zip(loggers, levels, strict=True):
            item.setLevel(level)


#: Sequence length of the example a text model is exported with (its sequence axis is dynamic).
TOKEN_EXAMPLE_LEN = 16


def _run_exporter(
    module: torch.nn.Module,
    example: torch.Tensor,
    path: Path,
    opset: int,
    exporter: str,
    *,
    max_positions: int | None = None,
) -> None:
    """Export with a dynamic batch axis, and a dynamic sequence axis (up to ``max_positions``) for token inputs."""
    if exporter == "dynamo":
        # onnxscript's optimizer folds BatchNorm into conv weights in float32 even in a bf16 graph (seen with
        # torch 2.14 / onnxscript 0.7), leaving a Conv with mixed input types: optimise float32 graphs only.
        import_optional("onnxscript", "onnx", "the dynamo ONNX exporter")
        batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
        axes: dict[int, object] = {0: batch}
        if max_positions is not None:
            axes[1] = torch.export.Dim("sequence", min=2, max=max_positions)
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=True,
            dynamic_shapes=(axes,),
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            external_data=False,
            verbose=False,
            optimize=example.dtype == torch.float32,
        )
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is deprecated: chosen on purpose
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=False,
            dynamic_axes={
                INPUT_NAME: {0: "batch", 1: "sequence"} if max_positions is not None else {0: "batch"},
                OUTPUT_NAME: {0: "batch"},
            },
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
        )


def export_settings(options: Mapping[str, str]) -> tuple[int, str]:
    """The ``onnx_opset`` and ``onnx_exporter`` options (defaults: 18, ``dynamo``)."""
    opset = int_option(options, "onnx_opset", DEFAULT_OPSET)
    exporter = check_choice("option onnx_exporter", str(options.get("onnx_exporter", "dynamo")), EXPORTERS)
    return opset, exporter


def export_onnx(
    module: torch.nn.Module,
    input_shape: tuple[int, ...],
    directory: Path,
    *,
    dtype: torch.dtype = torch.float32,
    opset: int = DEFAULT_OPSET,
    exporter: str = "dynamo",
    name: str = "model",
    tokens: TokenInputs | None = None,
) -> Path:
    """Export ``module`` (cast to ``dtype``) to ONNX with a dynamic batch axis, reusing a cached file.

    A text model (``tokens`` given) takes int64 ids ``(batch, sequence)`` with both axes dynamic (the sequence
    up to ``tokens.max_positions``), so one file serves every sequence length; ids are never cast.

    Args:
        module: The model, on CPU, in eval mode. It is not modified (a cast works on a copy).
        input_shape: One sample's shape ``(C, H, W)`` (ignored for a text model: its axes are dynamic).
        directory: Cache directory for the exported files.
        dtype: Weight and input dtype of the exported graph (a strongly typed graph for fp16/bf16).
        opset: ONNX opset.
        exporter: ``dynamo`` or ``torchscript``.
        name: Used in the file name and messages.
        tokens: The token inputs of a text model, or ``None`` for an image model.

    Raises:
        ExportError: The exporter failed; the message names the operator when the exporter does.
    """
    shape_key = f"tokens<={tokens.max_positions}" if tokens is not None else str(tuple(input_shape))
    key = hashlib.sha256(
        f"{module_digest(module)}|{shape_key}|{dtype}|{opset}|{exporter}|{torch.__version__}".encode()
    ).hexdigest()[:20]
    safe_name = re.sub(r"[^\w.-]", "_", name)
    path = Path(directory) / f"{safe_name}-{key}.onnx"
    if path.exists():
        logger.debug("reusing ONNX export %s", path)
        return path
    work = module if _float_dtypes(module) <= {dtype} else _cast_copy(module, dtype)
    if tokens is not None:
        example = torch.zeros((2, min(TOKEN_EXAMPLE_LEN, tokens.max_positions)), dtype=torch.int64)
    else:
        example = torch.zeros((2, *input_shape), dtype=dtype)
    partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.onnx")
    import_optional("onnx", "onnx", "exporting to ONNX")
    try:
        with torch.no_grad(), _quiet_exporter_logs():
            if tokens is None:
                _run_exporter(work, example, partial, opset, exporter)
            else:
                _run_exporter(work, example, partial, opset, exporter, max_positions=tokens.max_positions)
    except Exception as error:
        partial.unlink(missing_ok=True)
        if isinstance(error, MlperfTrackError):
            raise
        other = "torchscript" if exporter == "dynamo" else "dynamo"
        raise export_error(
            f"ONNX export of {name!r} ({exporter} exporter, opset {opset})",
            error,
            hint=f"try option onnx_exporter={other}",
        ) from error
    os.replace(partial, path)  # atomic: a concurrent reader sees no half-written file
    logger.info("exported %s to %s", name, path)
    return path


def _float_dtypes(module: torch.nn.Module) -> set[torch.dtype]:
    """The dtypes of the module's floating-point parameters and buffers (a half-precision variant's are fp16)."""
    tensors = [*module.parameters(), *module.buffers()]
    return {tensor.dtype for tensor in tensors if tensor.is_floating_point()}


def _cast_copy(module: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    return copy.deepcopy(module).to(dtype)


def convert_fp16(source: Path, directory: Path) -> Path:
    """Convert a float32 ONNX file to float16 (inputs and outputs too), reusing a cached result.

    Uses ``onnxruntime.transformers.float16`` (shipped with onnxruntime; it keeps ops that have no fp16
    kernels in float32 and inserts the casts).
    """
    onnx = import_optional("onnx", "onnx", "converting an ONNX model to fp16")
    float16 = import_optional("onnxruntime.transformers.float16", "onnx", "converting an ONNX model to fp16")
    target = Path(directory) / f"{Path(source).stem}-fp16-{file_digest(source)[:12]}.onnx"
    if target.exists():
        return target
    try:
        converted = float16.convert_float_to_float16(onnx.load(str(source)), keep_io_types=False)
    except Exception as error:
        raise export_error(f"fp16 conversion of {source.name}", error) from error
    partial = target.with_name(f"{target.stem}.{os.getpid()}.partial.onnx")
    onnx.save(converted, str(partial))
    os.replace(partial, target)
    return target


def typed_onnx(
    artifact: ModelArtifact,
    precision: str,
    directory: Path,
    *,
    opset: int = DEFAULT_OPSET,
    exporter: str = "dynamo",
) -> Path:
    """An ONNX file whose tensors already carry ``precision`` (for strongly typed TensorRT networks).

    ``int8``/``fp8`` use the artifact's explicit Q/DQ file; float precisions export the module cast to the
    precision's dtype, or convert the artifact's float32 file (fp16 only).

    Raises:
        UnsupportedError: The artifact offers no way to the precision.
    """
    if artifact.onnx_path is not None and (artifact.module is None or precision in ("int8", "fp8")):
        if precision in ("fp32", "tf32", "int8", "fp8"):
            return Path(artifact.onnx_path)
        if precision == "fp16":
            return convert_fp16(Path(artifact.onnx_path), directory)
        raise UnsupportedError(
            "precision", precision, ["fp32", "tf32", "fp16"], hint="what an ONNX-file-only artifact can be typed to"
        )
    dtype = dtype_for(precision)
    if artifact.module is None or dtype is None:
        raise UnsupportedError(
            "precision", precision, FLOAT_PRECISIONS, hint=f"{precision} needs an explicit Q/DQ ONNX artifact"
        )
    return export_onnx(
        artifact.module,
        artifact.input_shape,
        directory,
        dtype=dtype,
        opset=opset,
        exporter=exporter,
        name=artifact.name,
        tokens=artifact.tokens,
    )


def cached_onnx_exporter(runtime_cache_dir: Path) -> OnnxExporter:
    """An exporter into the runtimes' shared ONNX folder under ``runtime_cache_dir`` (what :class:`WorkDir` uses).

    Given to variant recipes by the pipeline (``VariantContext.onnx_exporter``), so a recipe that quantizes the
    baseline's ONNX file and the onnxruntime/openvino runtimes share one export per machine.
    """

    def export(module: torch.nn.Module, input_shape: tuple[int, ...], opset: int, name: str) -> Path:
        directory = WorkDir(runtime_cache_dir, "onnx").sub("onnx")
        return export_onnx(module, input_shape, directory, opset=opset, exporter="dynamo", name=name)

    return export
