"""torchvision classification models by name, with weights from a file or the local torch hub cache.

Nothing is ever downloaded. Weights come from, in order:

1. the file given as ``weights=`` (a state_dict, a nested training checkpoint, or a full pickled model), or the
   cached file of the weights enum member ``weights=`` names (``IMAGENET1K_V2``);
2. the torch hub cache, ``torch.hub.get_dir()/checkpoints/<file name of a torchvision weights URL>``
   (the ``DEFAULT`` weights first, then the others of the model's weights enum);
3. otherwise a seeded random initialisation, recorded as ``weights="random"`` with a logged warning.
"""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path
from typing import Any

from torch import nn

from mlperf_track.errors import ConfigError
from mlperf_track.models.base import LoadedModel, ModelSource
from mlperf_track.models.heads import classifier_out_features
from mlperf_track.models.weights import apply_weights, check_weights_path, seeded_init
from mlperf_track.spec import check_choice

logger = logging.getLogger(__name__)

_PREFIX = "torchvision:"
_FALLBACK_IMAGE_SIZE = 224


@functools.cache
def torchvision_model_names() -> tuple[str, ...]:
    """Names of torchvision's classification models (``resnet18``, ``vit_b_16``, ...), sorted."""
    import torchvision

    return tuple(sorted(torchvision.models.list_models(module=torchvision.models)))


def _weights_members(name: str) -> list[Any]:
    """The model's weights enum members, ``DEFAULT`` first; empty when torchvision has none."""
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(name)
    except (ValueError, KeyError):
        return []
    members = list(enum)
    default = enum.DEFAULT
    return [default, *(member for member in members if member is not default)]


def cached_weights_path(member: Any) -> Path:
    """Where torch hub keeps the file of a torchvision weights enum member (it may not exist)."""
    import torch

    file_name = str(member.url).rsplit("/", 1)[-1]
    return Path(torch.hub.get_dir()) / "checkpoints" / file_name


def _crop_size(member: Any) -> int | None:
    crop = getattr(member.transforms, "keywords", {}).get("crop_size")
    if isinstance(crop, int):
        return crop
    if isinstance(crop, list | tuple) and crop:
        return int(crop[0])
    return None


class TorchvisionSource(ModelSource):
    """Every classification model of ``torchvision.models``, addressed by name (``resnet18``)."""

    name = "torchvision"

    def matches(self, ref: str) -> bool:
        """Whether ``ref`` is a torchvision model name (optionally prefixed ``torchvision:``)."""
        return ref.removeprefix(_PREFIX) in torchvision_model_names()

    def known_names(self) -> list[str]:
        """All torchvision classification model names."""
        return list(torchvision_model_names())

    def load(self, ref: str, *, weights: str | None = None) -> LoadedModel:
        """Build the model with ``weights=None`` and load its weights (see the module docstring).

        ``weights`` may also name a member of the model's torchvision weights enum (``IMAGENET1K_V2``,
        ``IMAGENET1K_SWAG_E2E_V1``) whose file is in the torch hub cache.

        Raises:
            ConfigError: Unknown name, ``weights`` is neither an existing file nor a cached weights name.
            ModelLoadError: The weights file does not fit the architecture.
        """
        start = time.perf_counter()
        name = check_choice("model", ref.removeprefix(_PREFIX), torchvision_model_names())
        members = _weights_members(name)
        image_size = _crop_size(members[0]) if members else None
        weights_path = None
        if weights is not None:
            named = _named_member(name, weights, members)
            if named is not None:
                members = [named]
            else:
                weights_path = check_weights_path(weights)
        tags: dict[str, str] = {}
        if weights_path is not None:
            module = apply_weights(_build_random(name), weights_path)
            origin = f"file:{weights_path}"
        else:
            module, origin, member = _build_from_cache(name, members)
            if member is not None:
                image_size = _crop_size(member) or image_size
                tags["weights.enum"] = str(member)
        module = module.eval().float().cpu()
        fixed = getattr(module, "image_size", None)
        if isinstance(fixed, int):
            # ViT's positional embedding fixes the input resolution.
            tags["model.fixed_image_size"] = str(fixed)
            image_size = fixed
        return LoadedModel(
            module=module,
            name=name,
            source=self.name,
            load_s=time.perf_counter() - start,
            weights=origin,
            num_classes=classifier_out_features(module),
            default_image_size=image_size or _FALLBACK_IMAGE_SIZE,
            tags=tags,
        )


def _named_member(name: str, weights: str, members: list[Any]) -> Any:
    """The weights enum member called ``weights`` (when no file of that name exists), checked to be cached."""
    member = next((member for member in members if member.name == weights), None)
    if member is None or Path(weights).expanduser().exists():
        return None
    path = cached_weights_path(member)
    if not path.is_file():
        raise ConfigError(
            "weights",
            weights,
            f"an existing file, or a {name} weights name whose file is in the torch hub cache",
            hint=f"nothing is downloaded: place {path.name} in {path.parent}",
        )
    return member


def _build_random(name: str) -> nn.Module:
    import torchvision

    with seeded_init():
        return torchvision.models.get_model(name, weights=None)


def _build_from_cache(name: str, members: list[Any]) -> tuple[nn.Module, str, Any]:
    """Build with the first weights found in the torch hub cache, else randomly: ``(module, origin, member)``."""
    import torchvision

    for member in members:
        path = cached_weights_path(member)
        if path.is_file():
            # The builder applies weight-specific constructor arguments (transform_input for Inception and
            # GoogLeNet, image_size for ViT SWAG weights) that a bare load_state_dict would miss. It reads the
            # cached file in place: torch.hub only downloads when that file is absent, and it was just found.
            return torchvision.models.get_model(name, weights=member), f"torch-cache:{path}", member
    expected = cached_weights_path(members[0]) if members else None
    logger.warning(
        "no weights for %s: pass weights=FILE%s; using a seeded random initialisation",
        name,
        f" or place {expected.name} in {expected.parent}" if expected else "",
    )
    return _build_random(name), "random", None
