"""``quantized_int8_nncf``: OpenVINO int8 through NNCF post-training quantization, run by the openvino runtime.

The fp32 model is exported to ONNX (the same exporter as ``quantized_int8_ort``), then NNCF's
``nncf.quantize`` (ONNX backend, the ``performance`` preset: symmetric int8 weights and activations, as the
OpenVINO CPU plugin's int8 kernels want) inserts QuantizeLinear/DequantizeLinear pairs calibrated on training
images, and applies NNCF's fast bias correction. The artifact is that Q/DQ ONNX file, pinned to ``openvino`` and
``int8``: the CPU plugin turns the Q/DQ pairs into int8 kernels (the runtime reads the file as its other int8
artifacts, and checks the precision it reports). Measured on this project's 2-core CPU, resnet18 at 64 px, batch
16: about 2.3x the OpenVINO fp32 throughput.

The quantized file is cached on disk (:mod:`~mlperf_track.variants.quantized_file_cache`): a second run does
not calibrate again.

Why here and not in the runtime: quantization needs calibration data (the dataset's training split), which
belongs to the variants layer; a runtime only runs what it is given.
"""

from __future__ import annotations

import logging
import tempfile
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from mlperf_track.errors import ExportError, MissingDependencyError
from mlperf_track.models.artifact import ModelArtifact
from mlperf_track.variants.base import Variant, VariantContext
from mlperf_track.variants.calibration import CALIBRATION_SAMPLES_OPTION, calibration_batches, calibration_samples
from mlperf_track.variants.common import derive
from mlperf_track.variants.memo import memoized
from mlperf_track.variants.quantize_ort import INPUT_NAME, OPSET, baseline_onnx
from mlperf_track.variants.quantized_file_cache import cached_quantization

logger = logging.getLogger(__name__)

#: Packages the recipe imports (NNCF's ONNX backend collects statistics with onnxruntime).
_PACKAGES = ("nncf", "openvino", "onnx", "onnxscript", "onnxruntime")


def quantize_with_nncf(fp32_path: Path, output: Path, batches: list[Any]) -> Path:
    """NNCF post-training int8 quantization of an ONNX file, calibrated on ``batches`` (torch tensors)."""
    import nncf
    import onnx

    model = onnx.load(str(fp32_path))
    dataset = nncf.Dataset(batches, lambda images: {INPUT_NAME: images.numpy()})
    try:
        quantized = nncf.quantize(
            model, dataset, preset=nncf.QuantizationPreset.PERFORMANCE, subset_size=max(1, len(batches))
        )
    except Exception as error:  # NNCF raises many types
        raise ExportError(f"NNCF quantization of {fp32_path.name} failed: {error}") from error
    onnx.save(quantized, str(output))
    return output


class NncfInt8Variant(Variant):
    """OpenVINO int8 from NNCF post-training quantization; the artifact is a Q/DQ ONNX file pinned to ``openvino``.

    Options:
        calibration_samples: Training images used for calibration (default 256).
    """

    name = "quantized_int8_nncf"
    accepted_options = (CALIBRATION_SAMPLES_OPTION,)
    extra = "openvino"
    pinned_precision = "int8"
    pinned_runtime = "openvino"

    def unavailable_reason(self, device: str) -> str | None:
        """The OpenVINO CPU plugin only; needs nncf, openvino and the ONNX tools."""
        if device != "cpu":
            return f"the openvino runtime runs on the CPU only, not on {device}"
        for package in _PACKAGES:
            if find_spec(package) is None:
                return f"needs {package}: pip install 'mlperf-track[openvino]'"
        return None

    @memoized
    def build(self, baseline: ModelArtifact, context: VariantContext) -> ModelArtifact:
        """Export the baseline, quantize it with NNCF, return the Q/DQ file (``module`` is ``None``)."""
        if find_spec("nncf") is None:
            raise MissingDependencyError("nncf", "openvino", "NNCF int8 quantization")
        samples = calibration_samples(context)
        work_dir = context.work_dir or Path(tempfile.mkdtemp(prefix="mlperf_track-nncf-"))
        work_dir.mkdir(parents=True, exist_ok=True)
        fp32_path = baseline_onnx(baseline, context, self.name)
        batches, source = calibration_batches(context, baseline.input_shape, samples)

        def quantize(output: Path) -> Path:
            logger.info("NNCF int8: calibrating %s on %d %s images", baseline.name, samples, source)
            return quantize_with_nncf(fp32_path, output, batches)

        output, cache_tags = cached_quantization(
            self.name, fp32_path, context, samples, packages=_PACKAGES, quantize=quantize, work_dir=work_dir
        )
        tags = {
            "quant.method": "nncf.quantize (ONNX backend, performance preset, fast bias correction), Q/DQ",
            "quant.weights": "int8 per-channel symmetric",
            "quant.activations": "int8 per-tensor symmetric",
            "quant.calibration_samples": str(samples),
            "quant.calibration_data": source,
            "onnx.opset": str(OPSET),
            **cache_tags,
        }
        return derive(
            baseline, self.name, None, tags, onnx_path=output, precision="int8", runtime="openvino", device="cpu"
        )
