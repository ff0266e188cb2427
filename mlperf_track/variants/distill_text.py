"""``distilled_shallow``: a text model with fewer transformer layers, trained to imitate the baseline.

The student is the teacher with only some of its blocks: ``student_layers`` of them (default half), evenly
spaced and copied with their weights (DistilBERT's initialisation: "taking one layer out of two"), so it
starts close to the teacher; embeddings and head are copied too. It is then trained on the training split with
the Hinton loss (:func:`mlperf_track.training.distill.hinton_loss`) against the teacher's logits, per token for
a decoder, per sequence for an encoder, until its holdout loss (the task's own loss) stops improving.

Options: ``student_layers`` (default: half the teacher's, at least 1), ``temperature`` (default 2),
``alpha`` (weight of the soft targets, default 0.5), and the ``train_*`` options of the baseline.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from mlperf_track.errors import ConfigError, DataError, UnsupportedError
from mlperf_track.models.artifact import ModelArtifact
from mlperf_track.models.text import hf_config_of
from mlperf_track.options import OptionSpec
from mlperf_track.training.distill import hinton_loss
from mlperf_track.training.text import classification_loss, language_model_loss, train_text_model
from mlperf_track.variants.base import Variant, VariantContext
from mlperf_track.variants.common import copy_module, count_params, derive
from mlperf_track.variants.memo import memoized
from mlperf_track.variants.options import option_float, option_int
from mlperf_track.variants.text_baseline import TEXT_TRAIN_OPTIONS, text_train_config

logger = logging.getLogger(__name__)

DEFAULT_TEMPERATURE = 2.0
DEFAULT_ALPHA = 0.5
_LAYER_COUNTS = ("num_hidden_layers", "n_layer", "num_layers")


def transformer_blocks(module: nn.Module) -> nn.ModuleList:
    """The model's list of transformer blocks (the ``ModuleList`` as long as the config's layer count).

    Raises:
        UnsupportedError: No such list (not a transformers model).
    """
    return _blocks_owner(module)[2]


def _blocks_owner(module: nn.Module) -> tuple[nn.Module, str, nn.ModuleList]:
    """``(parent, attribute, blocks)`` of the model's list of transformer blocks."""
    config = hf_config_of(module)
    count = next(
        (getattr(config, name) for name in _LAYER_COUNTS if isinstance(getattr(config, name, None), int)), None
    )
    for parent in module.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.ModuleList) and count is not None and len(child) == count:
                return parent, name, child
    raise UnsupportedError("variant", "distilled_shallow", hint="the model has no list of transformer blocks to thin")


def keep_layers(module: nn.Module, count: int) -> list[int]:
    """Keep ``count`` evenly spaced blocks of ``module`` in place (config and cache layer indices updated)."""
    parent, attribute, blocks = _blocks_owner(module)
    total = len(blocks)
    if not 1 <= count < total:
        raise ConfigError("student_layers", count, f"an integer in [1, {total - 1}] (the teacher has {total})")
    kept = sorted({round(index * (total - 1) / max(count - 1, 1)) for index in range(count)}) if count > 1 else [0]
    new_blocks = [blocks[index] for index in kept]
    for position, block in enumerate(new_blocks):
        for child in block.modules():
            if hasattr(child, "layer_idx"):
                child.layer_idx = position  # type: ignore[assignment]  # caches are indexed by it
    setattr(parent, attribute, nn.ModuleList(new_blocks))
    config = hf_config_of(module)
    for name in _LAYER_COUNTS:
        if isinstance(getattr(config, name, None), int):
            setattr(config, name, count)
    layer_types = getattr(config, "layer_types", None)
    if isinstance(layer_types, list) and len(layer_types) == total:
        config.layer_types = [layer_types[index] for index in kept]
    return kept


class ShallowDistilledVariant(Variant):
    """Half the transformer blocks (by default), distilled from the baseline's logits."""

    name = "distilled_shallow"
    trains = True
    workloads = frozenset({"tokens", "generation"})
    accepted_options = (
        OptionSpec(
            "student_layers", "transformer blocks the student keeps", "int", low=1, default="half the teacher's"
        ),
        OptionSpec("temperature", "softmax temperature", "float", low=0, default=str(DEFAULT_TEMPERATURE)),
        OptionSpec(
            "alpha", "weight of the soft-target loss", "float", low=0, high=1, closed=True, default=str(DEFAULT_ALPHA)
        ),
        *TEXT_TRAIN_OPTIONS,
    )

    @memoized
    def build(self, baseline: ModelArtifact, context: VariantContext) -> ModelArtifact:
        """Thin a copy of the baseline and train it on the teacher's logits.

        Raises:
            DataError: The dataset has no training and holdout splits (``synthetic``).
            ConfigError: A bad option.
        """
        data = context.data
        train, holdout = data.train, getattr(data, "holdout", None)
        if train is None or holdout is None:
            raise DataError(
                f"distilled_shallow needs a text dataset with training and holdout splits, not {data.name!r}"
            )
        teacher = copy_module(baseline, self.name).eval()
        student = copy_module(baseline, self.name)
        total = len(transformer_blocks(student))
        count = option_int(context.options, "student_layers", max(total // 2, 1), minimum=1)
        kept = keep_layers(student, count)
        temperature = option_float(context.options, "temperature", DEFAULT_TEMPERATURE, low=0.0)
        alpha = option_float(context.options, "alpha", DEFAULT_ALPHA)
        if not 0 <= alpha <= 1:
            raise ConfigError("alpha", context.options["alpha"], "a number in [0, 1]")
        decoder = baseline.workload == "generation"
        teacher.to(context.device)

        def loss(module: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            if not module.training:  # holdout: the task's own loss
                return (language_model_loss if decoder else classification_loss)(module, inputs, targets)
            with torch.no_grad():
                teacher_logits = teacher(inputs).float()
            logits = module(inputs).float()
            width = logits.shape[-1]
            return hinton_loss(
                logits.reshape(-1, width),
                teacher_logits.reshape(-1, width),
                targets.reshape(-1),
                temperature=temperature,
                alpha=alpha,
            )

        config = text_train_config(context.options, context.seed)
        result = train_text_model(
            student, train, holdout, config, loss_fn=loss, device=context.device, description=self.name
        )
        teacher.cpu()
        tags = {
            "distill.student_layers": str(count),
            "distill.teacher_layers": str(total),
            "distill.kept_layers": ",".join(map(str, kept)),
            "distill.student_params": str(count_params(student)),
            "distill.teacher_params": str(count_params(teacher)),
            "distill.temperature": f"{temperature:g}",
            "distill.alpha": f"{alpha:g}",
            "distill.train_steps": str(result.steps),
            "distill.stop_reason": result.stop_reason,
            "distill.train_s": f"{result.seconds:.2f}",
        }
        return derive(baseline, self.name, student.eval(), tags)
