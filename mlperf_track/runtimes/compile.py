"""The compile runtime: ``torch.compile`` with the inductor backend.

Compilation happens in :meth:`CompileRuntime.prepare`, by calling the compiled model on every requested batch
size (three times in the CUDA-graph modes, so the graphs are recorded), so it counts as ``startup/prepare_s``
and never leaks into the timed loop. Shapes are specialised per batch size by default (the fastest code);
``compile_dynamic=true`` compiles one dynamic-shape graph instead.

Options:
    compile_mode: ``default``, ``reduce-overhead`` (CUDA graphs, GPU only), ``max-autotune`` (with CUDA graphs
        on GPU), ``max-autotune-no-cudagraphs``.
    compile_dynamic: ``false`` (default) or ``true``.
    inductor_freezing: ``auto`` (default: on for quantized artifacts, which need it to lower int8 kernels on
        CPU), ``true`` or ``false``.

A text decoder runs the static-cache decode loop of :mod:`~mlperf_track.runtimes._generation`: its one-token
decode step is compiled (``fullgraph=True``; default mode ``reduce-overhead`` on a GPU, as the transformers
docs' recipe) for every batch size during ``prepare``, with a two-token generation per batch size.

int8 runs PT2E-quantized artifacts (``artifact.runtime == "compile"``, exported with a dynamic batch axis).

Inductor caches compiled graphs on disk (the FX graph cache and the AOTAutograd cache, under
``TORCHINDUCTOR_CACHE_DIR``), so a second run of the same case prepares in a fraction of the time. Whether this
preparation hit those caches is recorded (``runtime.inductor_cache`` = ``cold``/``warm``/``mixed``/
``bypass``/``unused``, with the hit and miss counts), so a cold and a warm ``startup/prepare_s`` are never
compared as if alike.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, ClassVar

import torch

from mlperf_track.errors import MlperfTrackError, UnsupportedError
from mlperf_track.options import OptionSpec
from mlperf_track.runtimes._common import ARTIFACT_PRECISIONS, check_artifact, check_batch_sizes, option, vocab_of
from mlperf_track.runtimes._generation import GenerationPreparedModel
from mlperf_track.runtimes._torch import (
    TorchPreparedModel,
    compute_dtype,
    place_module,
    placement,
    require_module,
    torch_capabilities,
)
from mlperf_track.runtimes.base import PreparedModel, Runtime, RuntimeCapabilities
from mlperf_track.runtimes.onnx_export import export_error

if TYPE_CHECKING:
    from mlperf_track.models.artifact import ModelArtifact
    from mlperf_track.runtimes.base import PrepareRequest

logger = logging.getLogger(__name__)

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
#: Modes that capture CUDA graphs on a GPU (inductor's ``triton.cudagraphs``).
CUDA_GRAPH_MODES = frozenset({"reduce-overhead", "max-autotune"})
#: Calls per batch size in prepare: CUDA graph trees warm up on the first call and record on the next.
_GRAPH_CALLS = 3


#: Inductor/AOTAutograd counters that say whether compiled graphs came from the on-disk caches.
_CACHE_COUNTERS = {
    "hit": (("inductor", "fxgraph_cache_hit"), ("aot_autograd", "autograd_cache_hit")),
    "miss": (("inductor", "fxgraph_cache_miss"), ("aot_autograd", "autograd_cache_miss")),
    "bypass": (("inductor", "fxgraph_cache_bypass"), ("aot_autograd", "autograd_cache_bypass")),
}


def cache_counts() -> dict[str, int]:
    """Hits, misses and bypasses of Inductor's FX graph cache and the AOTAutograd cache so far in this process."""
    from torch._dynamo.utils import counters

    return {kind: sum(int(counters[group][name]) for group, name in keys) for kind, keys in _CACHE_COUNTERS.items()}


def cache_tags(before: dict[str, int], after: dict[str, int]) -> dict[str, str]:
    """Tags saying whether a compilation between two :func:`cache_counts` readings hit the on-disk caches."""
    from torch._inductor import config as inductor_config

    delta = {kind: after[kind] - before[kind] for kind in after}
    if delta["hit"] and delta["miss"]:
        state = "mixed"
    elif delta["hit"]:
        state = "warm"
    elif delta["miss"]:
        state = "cold"
    else:
        state = "bypass" if delta["bypass"] else "unused"
    enabled = bool(inductor_config.fx_graph_cache) and not bool(getattr(inductor_config, "force_disable_caches", False))
    return {
        "runtime.inductor_cache": state,
        "runtime.inductor_cache_hits": str(delta["hit"]),
        "runtime.inductor_cache_misses": str(delta["miss"]),
        "runtime.inductor_fx_graph_cache": "enabled" if enabled else "disabled",
    }


def _reset_compiler() -> None:
    # torch.compile caches compiled code on the module class's forward: without a reset, later cases with
    # other dtypes or shapes pile up entries until the recompile limit silently falls back to eager.
    torch._dynamo.reset()


class CompileRuntime(Runtime):
    """``torch.compile`` (inductor) on CPU (C++/OpenMP code) and CUDA (Triton kernels)."""

    name: ClassVar[str] = "compile"
    accepted_options: ClassVar[tuple[OptionSpec, ...]] = (
        OptionSpec(
            "compile_mode",
            "torch.compile mode",
            choices=COMPILE_MODES,
            default="default",
            searched=("default", "reduce-overhead", "max-autotune"),
        ),
        OptionSpec(
            "compile_dynamic",
            "one dynamic-shape graph for every batch size",
            choices=("false", "true"),
            default="false",
        ),
        OptionSpec("inductor_freezing", "inductor freezing", choices=("auto", "true", "false"), default="auto"),
    )
    experimental_devices: ClassVar[frozenset[str]] = frozenset({"cuda"})

    def capabilities(self) -> RuntimeCapabilities:
        """The same precisions as eager: inductor compiles whatever torch runs, one static-shape graph per
        requested batch size (``per_batch_preparation``; ``compile_dynamic=true`` compiles one graph instead)."""
        return dataclasses.replace(torch_capabilities(), per_batch_preparation=True)

    def option_unsupported_reason(self, device: str, key: str, value: str) -> str | None:
        """``compile_mode=reduce-overhead`` captures CUDA graphs: a GPU only."""
        if key == "compile_mode" and value == "reduce-overhead" and device != "cuda":
            return "CUDA graphs need a GPU"
        return None

    def prepare(self, artifact: ModelArtifact, request: PrepareRequest) -> PreparedModel:
        """Compile a placed copy of the module and run it once per batch size (the compile itself)."""
        self.check(request.device, request.precision)
        self.check_workload(artifact.workload)
        check_artifact(self.name, artifact, request.precision, request.device)
        batch_sizes = check_batch_sizes(request.batch_sizes)
        module = require_module(self.name, artifact)
        generation = artifact.workload == "generation"
        default_mode = "reduce-overhead" if generation and request.device == "cuda" else "default"
        mode = option(request, "compile_mode", COMPILE_MODES, default_mode)
        reason = self.option_unsupported_reason(request.device, "compile_mode", mode)
        if reason is not None:
            allowed = [
                name
                for name in COMPILE_MODES
                if not self.option_unsupported_reason(request.device, "compile_mode", name)
            ]
            raise UnsupportedError("option compile_mode", mode, allowed, hint=reason)
        dynamic = option(request, "compile_dynamic", ("false", "true"), "false") == "true"
        quantized = artifact.precision in ARTIFACT_PRECISIONS
        freezing_option = option(request, "inductor_freezing", ("auto", "true", "false"), "auto")
        freezing = quantized if freezing_option == "auto" else freezing_option == "true"
        target = placement(artifact, request)
        dtype = compute_dtype(request.precision)
        placed = place_module(module, target)
        tags = {
            "runtime.compile_mode": mode,
            "runtime.compile_backend": "inductor",
            "runtime.compile_dynamic": str(dynamic).lower(),
            "runtime.inductor_freezing": str(freezing).lower(),
            "runtime.cuda_graphs": str(request.device == "cuda" and mode in CUDA_GRAPH_MODES).lower(),
            "runtime.compiled_batch_sizes": ",".join(str(size) for size in batch_sizes),
            "runtime.dtype": str(dtype).removeprefix("torch."),
            "runtime.channels_last": str(target.channels_last).lower(),
            **self.experimental_tags(request.device),
        }
        if generation:
            return _prepare_static_generation(artifact, request, placed.eval(), tags, mode=mode, freezing=freezing)
        compiled = torch.compile(placed, mode=mode, backend="inductor", dynamic=dynamic)
        prepared = TorchPreparedModel(
            compiled,
            request,
            dtype,
            tags,
            channels_last=target.channels_last,
            pad_predict=not dynamic,
            on_close=_reset_compiler,
            vocab_size=vocab_of(artifact),
        )
        calls = _GRAPH_CALLS if request.device == "cuda" and mode in CUDA_GRAPH_MODES else 1
        limit = max(int(torch._dynamo.config.recompile_limit), len(batch_sizes) + 2)
        counts = cache_counts()
        try:
            with (
                torch._dynamo.config.patch(recompile_limit=limit, fail_on_recompile_limit_hit=True),
                torch._inductor.config.patch(freezing=freezing),
            ):
                for batch_size in batch_sizes:
                    inputs = prepared.make_input(batch_size)
                    for _ in range(calls):
                        prepared(inputs)
                if request.device == "cuda":
                    torch.cuda.synchronize()
        except MlperfTrackError:
            prepared.close()
            raise
        except Exception as error:
            prepared.close()
            raise export_error(f"torch.compile (mode {mode}) of {artifact.name!r}", error) from error
        tags.update(cache_tags(counts, cache_counts()))
        logger.debug("compiled %s (%s) for batch sizes %s: %s", artifact.name, mode, batch_sizes, tags)
        return prepared


#: New tokens of the generation that compiles the decode step for one batch size (two decode steps: the first
#: compiles, the second shows the graph is reused).
_COMPILE_TOKENS = 3


def _prepare_static_generation(
    artifact: ModelArtifact,
    request: PrepareRequest,
    module: torch.nn.Module,
    tags: dict[str, str],
    *,
    mode: str,
    freezing: bool,
) -> PreparedModel:
    """The static-cache generator with its decode step compiled for every batch size (here, as startup)."""
    assert artifact.tokens is not None
    tags.update(
        {
            "runtime.kv_cache": f"static (StaticCache, {request.max_sequence} positions)",
            "runtime.decode_loop": "forward",
        }
    )
    prepared = GenerationPreparedModel(
        module,
        request,
        artifact.tokens.vocab_size,
        tags,
        static=True,
        compile_options={"mode": mode, "backend": "inductor", "dynamic": False},
        on_close=_reset_compiler,
    )
    limit = max(int(torch._dynamo.config.recompile_limit), len(request.batch_sizes) + 2)
    counts = cache_counts()
    try:
        with (
            torch._dynamo.config.patch(recompile_limit=limit, fail_on_recompile_limit_hit=True),
            torch._inductor.config.patch(freezing=freezing),
        ):
            prompt_len = request.input_shape[0]
            tokens = min(_COMPILE_TOKENS, (request.max_sequence or prompt_len) - prompt_len)
            for batch_size in request.batch_sizes if tokens >= 2 else ():  # one token: no decode step to compile
                prepared.generate_tokens(prepared.make_input(batch_size), tokens)
            if request.device == "cuda":
                torch.cuda.synchronize()
    except MlperfTrackError:
        prepared.close()
        raise
    except Exception as error:
        prepared.close()
        raise export_error(f"torch.compile (mode {mode}) of {artifact.name!r}'s decode step", error) from error
    tags.update(cache_tags(counts, cache_counts()))
    return prepared
