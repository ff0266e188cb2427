"""Dataset references: schemes, synthetic data, and reference errors."""

from __future__ import annotations

import pytest

from mlperf_track.data.base import DatasetSource, DatasetSplits
from mlperf_track.data.registry import dataset_schemes, load_dataset, register_dataset_source
from mlperf_track.errors import ConfigError


def test_schemes() -> None:
    assert {"digits", "synthetic", "imagefolder", "torchvision"} <= set(dataset_schemes())


def test_synthetic_has_no_labels() -> None:
    splits = load_dataset("synthetic", image_size=64)

    assert splits.name == "synthetic" and splits.image_size == 64
    assert splits.num_classes is None and splits.train is None and splits.val is None
    assert not splits.has_labels


def test_unknown_scheme_lists_schemes() -> None:
    with pytest.raises(ConfigError, match=r"digits, imagefolder:<path>, synthetic, torchvision:<Name>:<root>") as info:
        load_dataset("cifar:/data", image_size=32)
    assert info.value.parameter == "dataset"
    with pytest.raises(ConfigError, match="did you mean synthetic"):
        load_dataset("synthetc", image_size=32)


@pytest.mark.parametrize("size", [0, -3, 2.5])
def test_bad_image_size(size: object) -> None:
    with pytest.raises(ConfigError, match="image_size"):
        load_dataset("synthetic", image_size=size)  # type: ignore[arg-type]


def test_synthetic_takes_no_argument() -> None:
    with pytest.raises(ConfigError, match="synthetic:x"):
        load_dataset("synthetic:x", image_size=8)


def test_registered_source_receives_argument_with_colons(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlperf_track.data import registry

    monkeypatch.setattr(registry, "_sources", dict(registry._sources))
    seen: list[str | None] = []

    class _Echo(DatasetSource):
        scheme = "echo"

        def load(self, argument: str | None, *, image_size: int, seed: int = 0) -> DatasetSplits:
            seen.append(argument)
            return DatasetSplits(name="echo", image_size=image_size)

    dataset_schemes()
    register_dataset_source(_Echo())
    load_dataset("echo:C:/data:x", image_size=8)
    load_dataset("echo", image_size=8)

    assert seen == ["C:/data:x", None]
    assert "echo" in dataset_schemes()
