"""The one place dataset sources are registered and dataset references resolved.

A reference is ``scheme`` or ``scheme:argument``: ``digits``, ``synthetic``, ``imagefolder:/data/pets``,
``torchvision:CIFAR10:/data/cifar``. The scheme picks the :class:`~mlperf_track.data.base.DatasetSource`; the
rest (which may itself contain colons) is its argument.

Example::

    splits = load_dataset("digits", image_size=32, seed=0)
    image, label = splits.val[0]   # the evaluation split: float32 (3, 32, 32), int
"""

from __future__ import annotations

import threading

from mlperf_track.data.base import DatasetSource, DatasetSplits
from mlperf_track.errors import ConfigError
from mlperf_track.spec import check_positive_int, closest_matches

_lock = threading.Lock()
_sources: dict[str, DatasetSource] = {}

#: How each built-in scheme is written, for error messages.
_FORMS = {
    "digits": "digits",
    "synthetic": "synthetic",
    "imagefolder": "imagefolder:<path>",
    "torchvision": "torchvision:<Name>:<root>",
}


def _ensure_builtins() -> None:
    with _lock:
        if _sources:
            return
        from mlperf_track.data.digits import DigitsSource
        from mlperf_track.data.imagefolder import ImageFolderSource
        from mlperf_track.data.synthetic import SyntheticSource
        from mlperf_track.data.torchvision_datasets import TorchvisionDatasetSource

        for source in (DigitsSource(), SyntheticSource(), ImageFolderSource(), TorchvisionDatasetSource()):
            _sources[source.scheme] = source


def register_dataset_source(source: DatasetSource) -> None:
    """Add a dataset source under its ``scheme`` (replacing one with the same scheme)."""
    _ensure_builtins()
    with _lock:
        _sources[source.scheme] = source


def dataset_schemes() -> list[str]:
    """The registered schemes (``digits``, ``imagefolder``, ``synthetic``, ``torchvision``, ...), sorted."""
    _ensure_builtins()
    with _lock:
        return sorted(_sources)


def load_dataset(ref: str, *, image_size: int, seed: int = 0) -> DatasetSplits:
    """Load a dataset by reference.

    Args:
        ref: ``digits``, ``synthetic``, ``imagefolder:<path>`` or ``torchvision:<Name>:<root>``.
        image_size: Height and width ``S`` of the images, which are ``(3, S, S)`` float32 tensors normalised with
            the ImageNet mean and std.
        seed: Seed of the splits a dataset does not bring itself (train / holdout / evaluation).

    Returns:
        The splits; ``train``, ``holdout``, ``val`` and ``num_classes`` are ``None`` for ``synthetic``. A source
        that gives no holdout gets one cut from its training split (:func:`~mlperf_track.data.common.with_holdout`).

    Raises:
        ConfigError: Unknown scheme (the message lists the schemes), bad argument or bad image size.
        DataError: The dataset is missing, empty or malformed.
    """
    check_positive_int("image_size", image_size)
    scheme, separator, argument = ref.strip().partition(":")
    schemes = dataset_schemes()
    if scheme not in schemes:
        matches = closest_matches(scheme, schemes)
        raise ConfigError(
            "dataset",
            ref,
            [_FORMS.get(name, f"{name}[:<argument>]") for name in schemes],
            f"did you mean {', '.join(matches)}?" if matches else None,
        )
    with _lock:
        source = _sources[scheme]
    splits = source.load(argument if separator else None, image_size=image_size, seed=seed)
    from mlperf_track.data.common import with_holdout

    return with_holdout(splits, seed) if splits.has_labels else splits


def check_dataset(ref: str) -> None:
    """Check a reference before any work starts: a known scheme, and what its source checks without loading.

    A source may define ``check(argument)`` (the imagefolder source checks the folder and refuses files that
    are not images); the others are checked when they load.

    Raises:
        ConfigError: Unknown scheme (the message lists the schemes), or a bad argument.
        DataError: What the source's check finds (a missing folder).
    """
    scheme, separator, argument = ref.strip().partition(":")
    schemes = dataset_schemes()
    if scheme not in schemes:
        matches = closest_matches(scheme, schemes)
        raise ConfigError(
            "--dataset",
            ref,
            [_FORMS.get(name, f"{name}[:<argument>]") for name in schemes],
            f"did you mean {', '.join(matches)}?" if matches else None,
        )
    with _lock:
        source = _sources[scheme]
    check = getattr(source, "check", None)
    if callable(check):
        check(argument if separator else None)
