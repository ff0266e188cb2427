"""``quantized_int8_ort``: ONNX Runtime static int8 quantization in QDQ format with per-channel weights.

The fp32 model is exported with the torch.export-based ONNX exporter (the TorchScript one is deprecated in
torch 2.14), weights kept inside the file (``quant_pre_process`` cannot follow external data), then
``onnxruntime.quantization.quantize_static`` inserts QuantizeLinear/DequantizeLinear pairs: int8 symmetric
per-channel weights (an ``axis`` on each weight's DequantizeLinear) and uint8 activations calibrated with
MinMax on training images. U8S8 is ORT's recommended format on x86 CPUs with VNNI. The quantized file is cached
on disk (:mod:`~mlperf_track.variants.quantized_file_cache`): a second run does not calibrate again.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mlperf_track.errors import ExportError, MissingDependencyError
from mlperf_track.models.artifact import ModelArtifact
from mlperf_track.variants.base import Variant, VariantContext
from mlperf_track.variants.calibration import CALIBRATION_SAMPLES_OPTION, calibration_batches, calibration_samples
from mlperf_track.variants.common import copy_module, derive, example_input
from mlperf_track.variants.memo import memoized
from mlperf_track.variants.quantized_file_cache import cached_quantization

logger = logging.getLogger(__name__)

#: Opset of the exported model (QDQ per-channel needs >= 13).
OPSET = 18
INPUT_NAME = "input"
#: Packages whose versions change the quantized file.
_PACKAGES = ("onnxruntime", "onnx")
#: Loggers of the dynamo exporter that report every optimizer pass at INFO.
_CHATTY_LOGGERS = ("onnxscript", "onnx_ir")


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in _CHATTY_LOGGERS]
    levels = [item.level for item in loggers]
    for item in loggers:
        item.setLevel(max(item.getEffectiveLevel(), logging.WARNING))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for item, level in zip(loggers, levels, strict=True):
            item.setLevel(level)


def baseline_onnx(baseline: ModelArtifact, context: VariantContext, recipe: str) -> Path:
    """The baseline's float32 ONNX file, which the int8 recipes quantize.

    With ``context.onnx_exporter`` (the pipeline gives the onnxruntime/openvino runtimes' cached exporter: the
    same opset and dynamic batch axis, keyed by the module's digest and shape) the baseline is exported once per
    machine, not once by each recipe and each runtime on every run (three exports of resnet50 per pipeline run,
    10-40 s each on two cores). Without one it is exported into the work directory.
    """
    if context.onnx_exporter is not None and baseline.module is not None:
        module = baseline.module.eval()  # the exporter leaves a float32 module untouched
        return context.onnx_exporter(module, baseline.input_shape, OPSET, baseline.name)
    work_dir = context.work_dir or Path(tempfile.mkdtemp(prefix=f"mlperf_track-{recipe}-"))
    return export_onnx(copy_module(baseline, recipe), example_input(baseline, 2), work_dir / f"{recipe}-fp32.onnx")


def export_onnx(module: nn.Module, example: torch.Tensor, path: Path) -> Path:
    """Export ``module`` to ``path`` as a single ONNX file with a dynamic batch dimension.

    Raises:
        ExportError: The exporter failed (the message names the first problem it reported).
    """
    batch = torch.export.Dim("batch", min=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with torch.no_grad(), _quiet_exporter():
            torch.onnx.export(
                module.eval(),
                (example,),
                str(path),
                input_names=[INPUT_NAME],
                output_names=["logits"],
                dynamic_shapes=({0: batch},),
                opset_version=OPSET,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
    except Exception as error:  # the exporter raises many types
        raise ExportError(f"ONNX export of {type(module).__name__} failed: {error}") from error
    return path


def quantize_qdq(fp32_path: Path, output: Path, batches: list[torch.Tensor]) -> Path:
    """Static QDQ int8 quantization of an ONNX file (per-channel weights, MinMax calibration on ``batches``)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._items = iter([{INPUT_NAME: images.numpy()} for images in batches])

        def get_next(self) -> dict[str, Any] | None:
            return next(self._items, None)

    preprocessed = output.with_name(output.stem + "-pre.onnx")  # next to the output: the source may be shared
    try:
        quant_pre_process(str(fp32_path), str(preprocessed), skip_symbolic_shape=True)
    except Exception as error:  # optional step (shape inference + folding); quantization works without it
        logger.warning("onnxruntime quant_pre_process failed (%s); quantizing the exported model as is", error)
        preprocessed = fp32_path
    quantize_static(
        str(preprocessed),
        str(output),
        _Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )
    return output


class OrtInt8Variant(Variant):
    """ONNX Runtime static int8 (QDQ, per-channel); the artifact is an ONNX file pinned to ``onnxruntime``.

    Options:
        calibration_samples: Training images used for calibration (default 256).
    """

    name = "quantized_int8_ort"
    accepted_options = (CALIBRATION_SAMPLES_OPTION,)
    extra = "onnx"
    pinned_precision = "int8"
    pinned_runtime = "onnxruntime"

    def unavailable_reason(self, device: str) -> str | None:
        """CPU only (the CUDA provider has no int8 QDQ kernels; TensorRT is the GPU path); needs onnxruntime."""
        if device != "cpu":
            return f"ONNX Runtime QDQ int8 runs on its CPU provider only, not on {device}"
        for package in ("onnxruntime", "onnx", "onnxscript"):
            if find_spec(package) is None:
                return f"needs {package}: pip install 'mlperf-track[onnx]'"
        return None

    @memoized
    def build(self, baseline: ModelArtifact, context: VariantContext) -> ModelArtifact:
        """Export the baseline, quantize it, return the QDQ file (``module`` is ``None``)."""
        if find_spec("onnxruntime") is None:
            raise MissingDependencyError("onnxruntime", "onnx", "ONNX Runtime int8 quantization")
        samples = calibration_samples(context)
        work_dir = context.work_dir or Path(tempfile.mkdtemp(prefix="mlperf_track-ort-"))
        work_dir.mkdir(parents=True, exist_ok=True)
        fp32_path = baseline_onnx(baseline, context, self.name)
        batches, source = calibration_batches(context, baseline.input_shape, samples)

        def quantize(output: Path) -> Path:
            logger.info("ORT int8: calibrating %s on %d %s images", baseline.name, samples, source)
            return quantize_qdq(fp32_path, output, batches)

        output, cache_tags = cached_quantization(
            self.name, fp32_path, context, samples, packages=_PACKAGES, quantize=quantize, work_dir=work_dir
        )
        tags = {
            "quant.method": "onnxruntime quantize_static, QDQ",
            "quant.weights": "int8 per-channel symmetric",
            "quant.activations": "uint8 per-tensor affine (MinMax)",
            "quant.calibration_samples": str(samples),
            "quant.calibration_data": source,
            "onnx.opset": str(OPSET),
            **cache_tags,
        }
        return derive(
            baseline, self.name, None, tags, onnx_path=output, precision="int8", runtime="onnxruntime", device="cpu"
        )
