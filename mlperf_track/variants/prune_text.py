"""``pruned_mlp_channels``: remove whole channels of every transformer block's MLP with torch-pruning.

The MLP's expansion layers (``c_fc`` in GPT-2, ``intermediate.dense`` in BERT, ``gate_proj``/``up_proj`` in
Llama: every ``nn.Linear`` from the hidden size to the MLP's width) are the roots; torch-pruning traces the
model and removes ``ratio`` of their output channels, ranked by the L1 norm of each coupled group (the
channel's row in the expansion and its column in the projection back), together with those columns. Attention
heads, embeddings and the hidden size stay whole, so the KV cache and the tokenizer are unchanged: the model
gets physically smaller and faster in the MLP, which holds about two thirds of a block's weights. A recovery
training on the dataset follows (the baseline's ``train_*`` options), when the dataset has a training split.

Options: ``ratio`` (fraction of MLP channels to remove, in (0, 1), default 0.5), ``fine_tune_epochs=0`` to skip
the recovery training.
"""

from __future__ import annotations

import logging
import warnings

import torch
from torch import nn

from mlperf_track.errors import ExportError, MissingDependencyError, UnsupportedError
from mlperf_track.models.artifact import ModelArtifact
from mlperf_track.models.text import hf_config_of
from mlperf_track.training.text import classification_loss, language_model_loss, train_text_model
from mlperf_track.variants.base import Variant, VariantContext
from mlperf_track.variants.common import copy_module, count_params, derive
from mlperf_track.variants.memo import memoized
from mlperf_track.variants.prune_common import PRUNING_OPTIONS, pruning_ratio
from mlperf_track.variants.text_baseline import TEXT_TRAIN_OPTIONS, text_train_config

logger = logging.getLogger(__name__)

_WIDTHS = ("intermediate_size", "n_inner")


def mlp_width(module: nn.Module) -> tuple[int, int]:
    """``(hidden size, MLP width)`` from the model's config (GPT-2's ``n_inner=None`` means 4 x hidden)."""
    config = hf_config_of(module)
    hidden = int(getattr(config, "hidden_size", 0) or 0)
    width = next((getattr(config, name) for name in _WIDTHS if isinstance(getattr(config, name, None), int)), None)
    if not hidden:
        raise UnsupportedError("variant", "pruned_mlp_channels", hint="the model's config has no hidden size")
    return hidden, int(width or 4 * hidden)


def prune_mlp_channels(module: nn.Module, example: torch.Tensor, ratio: float) -> int:
    """Remove ``ratio`` of the MLP channels of every block of ``module`` in place; return the new MLP width.

    Raises:
        MissingDependencyError: torch-pruning is not installed.
        UnsupportedError: No MLP expansion layer was found.
        ExportError: torch-pruning cannot trace the model.
    """
    try:
        import torch_pruning as tp
    except ImportError as error:
        raise MissingDependencyError("torch_pruning", "prune", "MLP channel pruning") from error
    hidden, width = mlp_width(module)
    linears = [layer for layer in module.modules() if isinstance(layer, nn.Linear)]
    roots = [layer for layer in linears if layer.in_features == hidden and layer.out_features == width]
    if not roots:
        raise UnsupportedError("variant", "pruned_mlp_channels", hint=f"no Linear {hidden} -> {width} (MLP) layers")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # norms' weights it could prune: the hidden size stays
            pruner = tp.pruner.MetaPruner(
                module,
                example_inputs=example,
                importance=tp.importance.GroupMagnitudeImportance(p=1),
                pruning_ratio=ratio,
                ignored_layers=[layer for layer in linears if not any(layer is root for root in roots)],
                root_module_types=[nn.Linear],
            )
            pruner.step()
    except Exception as error:  # tracing failures surface as many types
        raise ExportError(f"torch-pruning cannot prune the MLPs of {type(module).__name__}: {error}") from error
    new_width = roots[0].out_features
    config = hf_config_of(module)
    for name in _WIDTHS:
        if isinstance(getattr(config, name, None), int) or (name == "n_inner" and hasattr(config, "n_inner")):
            setattr(config, name, new_width)
    return new_width


class PrunedMlpVariant(Variant):
    """Remove ``ratio`` of every MLP's channels (L1 group magnitude), then train to recover."""

    name = "pruned_mlp_channels"
    trains = True
    extra = "prune"
    workloads = frozenset({"tokens", "generation"})
    accepted_options = (*PRUNING_OPTIONS, *TEXT_TRAIN_OPTIONS)

    def unavailable_reason(self, device: str) -> str | None:
        """Needs torch-pruning."""
        from importlib.util import find_spec

        return None if find_spec("torch_pruning") else "needs torch-pruning: pip install 'mlperf-track[prune]'"

    @memoized
    def build(self, baseline: ModelArtifact, context: VariantContext) -> ModelArtifact:
        """Prune a copy of the baseline's MLPs and train it on the dataset when it has a training split."""
        ratio = pruning_ratio(context)
        module = copy_module(baseline, self.name)
        params_before, (_, width_before) = count_params(module), mlp_width(module)
        vocab = baseline.tokens.vocab_size if baseline.tokens is not None else 2
        example = torch.randint(0, vocab, (1, 16), generator=torch.Generator().manual_seed(context.seed))
        width_after = prune_mlp_channels(module, example, ratio)
        data = context.data
        holdout = getattr(data, "holdout", None)
        recovery = "none (no training split)"
        if context.options.get("fine_tune_epochs") == "0":
            recovery = "none (fine_tune_epochs=0)"
        elif data.train is not None and holdout is not None:
            loss = language_model_loss if baseline.workload == "generation" else classification_loss
            config = text_train_config(context.options, context.seed)
            result = train_text_model(
                module, data.train, holdout, config, loss_fn=loss, device=context.device, description=self.name
            )
            recovery = f"{result.steps} steps, {result.seconds:.1f} s, stopped at {result.stop_reason}"
        tags = {
            "prune.method": "MLP channel pruning (torch-pruning MetaPruner, group L1 magnitude)",
            "prune.ratio": f"{ratio:g}",
            "prune.mlp_width_before": str(width_before),
            "prune.mlp_width_after": str(width_after),
            "prune.params_before": str(params_before),
            "prune.params_after": str(count_params(module)),
            "prune.fine_tune": recovery,
        }
        return derive(baseline, self.name, module.eval(), tags)
