"""Distillation: a trained student, the "not smaller" warning, and bad options and data."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torchvision

from mlperf_track.data.base import DatasetSplits
from mlperf_track.errors import ConfigError, DataError
from mlperf_track.models.artifact import ModelArtifact
from mlperf_track.variants.base import VariantContext
from mlperf_track.variants.distill import default_student
from mlperf_track.variants.registry import get_variant


def test_distilled_student_is_a_new_trained_model(
    built_variants: Callable[[str], ModelArtifact], tiny_baseline: ModelArtifact
) -> None:
    artifact = built_variants("distilled")
    assert artifact.module is not None and artifact.module is not tiny_baseline.module
    assert artifact.name == "tinycnn-distilled-tinycnn"
    assert artifact.tags["distill.student"] == "tinycnn" and artifact.tags["distill.teacher"] == "tinycnn"
    # A student as big as its teacher is reported, not hidden.
    assert artifact.tags["distill.student_smaller"] == "false"
    assert artifact.tags["distill.epochs"] == "1" and float(artifact.tags["distill.train_s"]) > 0
    assert artifact.module.fc.out_features == 10  # type: ignore[union-attr]


def test_default_students() -> None:
    assert default_student("resnet50") == "resnet18"
    assert default_student("resnet18") == "mobilenet_v3_small"
    assert default_student("tinycnn") == "mobilenet_v3_small"


def test_smaller_default_student_for_resnet18(make_context: Callable[..., VariantContext]) -> None:
    torch.manual_seed(0)
    teacher = torchvision.models.resnet18(num_classes=10).eval()
    baseline = ModelArtifact(name="resnet18", input_shape=(3, 16, 16), module=teacher, num_classes=10)
    artifact = get_variant("distilled").build(baseline, make_context(distill_epochs="1", temperature="2", alpha="0.5"))
    assert artifact.tags["distill.student"] == "mobilenet_v3_small"
    assert artifact.tags["distill.student_smaller"] == "true"
    assert int(artifact.tags["distill.student_params"]) < int(artifact.tags["distill.teacher_params"])
    assert artifact.tags["distill.temperature"] == "2" and artifact.tags["distill.alpha"] == "0.5"
    assert artifact.module(torch.randn(2, 3, 16, 16)).shape == (2, 10)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"student": "resnet1800"}, "student"),
        ({"alpha": "1.5"}, "alpha"),
        ({"temperature": "0"}, "temperature"),
        ({"distill_epochs": "0"}, "distill_epochs"),
    ],
)
def test_bad_options_are_config_errors(
    options: dict[str, str], field: str, tiny_baseline: ModelArtifact, make_context: Callable[..., VariantContext]
) -> None:
    options = {"student": "tinycnn", **options}
    with pytest.raises(ConfigError) as caught:
        get_variant("distilled").build(tiny_baseline, make_context(**options))
    assert caught.value.parameter == field


def test_distillation_needs_labelled_data(
    tiny_baseline: ModelArtifact, make_context: Callable[..., VariantContext], synthetic_data: DatasetSplits
) -> None:
    with pytest.raises(DataError, match="labelled dataset"):
        get_variant("distilled").build(tiny_baseline, make_context(synthetic_data, student="tinycnn"))
