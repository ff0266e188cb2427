"""The variant interface: a named recipe that turns the baseline model into another form.

Members live one per module and are registered by name in :mod:`mlperf_track.variants.registry`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from mlperf_track.models.artifact import OnnxExporter

if TYPE_CHECKING:
    from mlperf_track.data.base import DatasetSplits
    from mlperf_track.models.artifact import ModelArtifact
    from mlperf_track.options import OptionSpec


@dataclass(frozen=True)
class VariantContext:
    """Everything a recipe may use besides the baseline itself.

    Attributes:
        device: ``cpu`` or ``cuda``: where the variant will run.
        data: The dataset (train split for calibration, distillation and fine-tuning).
        image_size: Input resolution.
        seed: Seed for every random choice.
        epochs: Epochs for any (re)training the recipe does, or ``None``: until its holdout top-1 stops improving.
        options: Recipe parameters as given by the user (``ratio``, ``temperature``, ``student``, ...).
        work_dir: A directory for files the recipe writes (ONNX models, checkpoints).
        cache_dir: Root of the on-disk cache: recipes that train keep their weights under
            ``cache_dir/variants`` (:mod:`~mlperf_track.variants.variant_cache`), and the static int8 recipes their
            calibrated result (:mod:`~mlperf_track.variants.quantized_file_cache`,
            :mod:`~mlperf_track.variants.pt2e_cache`); ``None``: nothing is cached.
        onnx_exporter: The ONNX runtimes' own cached float32 exporter, given by the pipeline (which knows both
            layers), so recipes that quantize an ONNX file reuse the runtimes' export instead of making their own;
            ``None``: the recipe exports into ``work_dir``.
        train_precision: ``fp32`` or ``bf16``: the precision of any (re)training (mixed precision, see
            :class:`~mlperf_track.training.config.TrainConfig`); the pipeline resolves ``auto`` for the device.
    """

    device: str
    data: DatasetSplits
    image_size: int
    seed: int = 0
    epochs: int | None = 1
    options: Mapping[str, str] = field(default_factory=dict)
    work_dir: Path | None = None
    cache_dir: Path | None = None
    onnx_exporter: OnnxExporter | None = None
    train_precision: str = "fp32"


class Variant(ABC):
    """A recipe producing a variant of the baseline (quantized, pruned, distilled, ...)."""

    #: Registry name; becomes the ``variant`` param in MLflow.
    name: ClassVar[str]
    #: The pip extra its dependencies come from, or ``None``.
    extra: ClassVar[str | None] = None
    #: The ``--option`` keys this recipe reads (checked up front by :func:`mlperf_track.options.check_options`).
    accepted_options: ClassVar[tuple[OptionSpec, ...]] = ()
    #: The precision every artifact of this recipe is fixed to (``int8``, ``fp16``), or ``None``: known before
    #: anything is built, so a plan can be checked up front (the conformance suite checks the artifacts agree).
    pinned_precision: ClassVar[str | None] = None
    #: The runtime every artifact of this recipe needs, or ``None``.
    pinned_runtime: ClassVar[str | None] = None
    #: The kinds of model the recipe applies to (:data:`~mlperf_track.models.artifact.WORKLOADS`): a group
    #: leaves out the recipes that do not apply, naming one of them explicitly is refused.
    workloads: ClassVar[frozenset[str]] = frozenset({"image"})
    #: Whether a build trains the model (pruning's recovery, distillation: tens of seconds) rather than calibrate
    #: or convert it (seconds): the tuner's cost model learns the build times of the two kinds apart.
    trains: ClassVar[bool] = False

    def unavailable_reason(self, device: str) -> str | None:
        """``None`` when the recipe can run for ``device`` here, else why not."""
        return None

    @abstractmethod
    def build(self, baseline: ModelArtifact, context: VariantContext) -> ModelArtifact:
        """Return the variant. The baseline artifact must not be modified (deep-copy first).

        Build on the CPU (:func:`~mlperf_track.variants.common.copy_module`); the runtime moves the artifact
        to the case's device unless the artifact says it must stay put (``ModelArtifact.device``, e.g. a PT2E
        int8 graph with x86 kernels).
        """
