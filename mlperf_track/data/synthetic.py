"""``synthetic``: no data at all; performance runs make random inputs of the configured shape themselves."""

from __future__ import annotations

from mlperf_track.data.base import DatasetSource, DatasetSplits
from mlperf_track.errors import ConfigError


class SyntheticSource(DatasetSource):
    """Performance only: no labels, no splits, so accuracy is not measured."""

    scheme = "synthetic"

    def load(self, argument: str | None, *, image_size: int, seed: int = 0) -> DatasetSplits:
        """Return splits with ``num_classes``, ``train`` and ``val`` all ``None``.

        Raises:
            ConfigError: An argument was given (``synthetic`` takes none).
        """
        if argument:
            raise ConfigError("dataset", f"synthetic:{argument}", "synthetic (it takes no argument)")
        return DatasetSplits(
            name=self.scheme,
            image_size=image_size,
            tags={"dataset.note": "synthetic inputs: performance only, no accuracy"},
        )
