"""Find and replace the classification head of a model (for fine-tuning on a dataset with other classes).

Supported layouts, tried in order (these cover every torchvision classification family):

- ``.fc`` is a ``Linear`` (ResNet, ResNeXt, RegNet, GoogLeNet, Inception, ShuffleNet, tinycnn);
- ``.heads.head`` is a ``Linear`` (ViT);
- ``.head`` is a ``Linear`` (Swin);
- ``.classifier`` is a ``Linear`` (DenseNet) or a ``Sequential`` whose last ``Linear`` or ``Conv2d`` makes the
  logits (MobileNet, EfficientNet, VGG, AlexNet, ConvNeXt, MNASNet, MaxViT, SqueezeNet).

Auxiliary heads that exist only in training mode (Inception's ``AuxLogits.fc``, GoogLeNet's ``aux1.fc2`` and
``aux2.fc2``) are replaced too, so that a fine-tuning loop in training mode sees consistent outputs.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from mlperf_track.errors import ModelLoadError

logger = logging.getLogger(__name__)

_HEAD_PATHS = ("fc", "heads.head", "head", "classifier")
_AUX_PATHS = ("AuxLogits.fc", "aux1.fc2", "aux2.fc2")


def _get(module: nn.Module, path: str) -> nn.Module | None:
    current: nn.Module | None = module
    for part in path.split("."):
        current = getattr(current, part, None)
        if not isinstance(current, nn.Module):
            return None
    return current


def _is_logits_layer(layer: nn.Module) -> bool:
    return isinstance(layer, nn.Linear) or (isinstance(layer, nn.Conv2d) and layer.kernel_size == (1, 1))


def _layer_name(layer: nn.Module) -> str:
    # TorchScript modules keep the Python class name in ``original_name``.
    return str(getattr(layer, "original_name", type(layer).__name__))


def find_classifier(module: nn.Module) -> tuple[str, nn.Module] | None:
    """Locate the layer that produces the logits.

    Args:
        module: A classification model.

    Returns:
        ``(qualified_name, layer)`` of the final ``Linear`` (or 1x1 ``Conv2d`` for SqueezeNet), or ``None``
        when the model has none of the supported layouts.
    """
    for path in _HEAD_PATHS:
        layer = _get(module, path)
        if layer is None:
            continue
        if _is_logits_layer(layer):
            return path, layer
        if isinstance(layer, nn.Sequential):
            for index in range(len(layer) - 1, -1, -1):
                if _is_logits_layer(layer[index]):
                    return f"{path}.{index}", layer[index]
    return None


def classifier_out_features(module: nn.Module) -> int | None:
    """Number of classes the model predicts, when its head can be found (also works on TorchScript modules).

    Falls back to the last ``Linear`` among the named modules, for models with other layouts.
    """
    found = find_classifier(module)
    if found is not None:
        return _out_features(found[1])
    last: int | None = None
    for _, layer in module.named_modules():
        if _layer_name(layer) == "Linear":
            weight = getattr(layer, "weight", None)
            if weight is not None and weight.dim() == 2:
                last = int(weight.shape[0])
    return last


def _out_features(layer: nn.Module) -> int:
    weight = layer.weight
    assert isinstance(weight, torch.Tensor)
    return int(weight.shape[0])


def _new_layer(old: nn.Module, num_classes: int) -> nn.Module:
    weight = old.weight
    assert isinstance(weight, torch.Tensor)
    has_bias = getattr(old, "bias", None) is not None
    if isinstance(old, nn.Linear):
        return nn.Linear(old.in_features, num_classes, bias=has_bias, device=weight.device, dtype=weight.dtype)
    assert isinstance(old, nn.Conv2d)
    return nn.Conv2d(
        old.in_channels, num_classes, kernel_size=1, bias=has_bias, device=weight.device, dtype=weight.dtype
    )


def _set(module: nn.Module, path: str, layer: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = _get(module, parent_path) if parent_path else module
    assert parent is not None
    setattr(parent, name, layer)


def replace_classifier(module: nn.Module, num_classes: int) -> nn.Module:
    """Give ``module`` a freshly initialised head with ``num_classes`` outputs, in place.

    Args:
        module: A classification model with one of the supported layouts (see the module docstring).
        num_classes: Outputs of the new head.

    Returns:
        The same module object, unchanged when its head already has ``num_classes`` outputs.

    Raises:
        ModelLoadError: The model has no recognisable classification head.
    """
    found = find_classifier(module)
    if found is None:
        raise ModelLoadError(
            f"cannot find the classification head of {type(module).__name__}: expected a Linear at .fc, "
            ".heads.head, .head or .classifier (or a Sequential .classifier ending in one)"
        )
    path, layer = found
    if _out_features(layer) == num_classes:
        return module
    logger.info("replacing head %s (%d outputs) with %d outputs", path, _out_features(layer), num_classes)
    _set(module, path, _new_layer(layer, num_classes))
    for aux_path in _AUX_PATHS:
        aux = _get(module, aux_path)
        if aux is not None and _is_logits_layer(aux):
            _set(module, aux_path, _new_layer(aux, num_classes))
    return module
