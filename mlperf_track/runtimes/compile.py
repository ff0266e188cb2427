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

int8 runs PT2E-quantized artifacts (``artifact.runtime == "compile"``, exported with a dynamic batch axis).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, ClassVar

import torch

from mlperf_track.errors import MlperfTrackError, UnsupportedError
from mlperf_track.options import OptionSpec
from mlperf_track.runtimes._common import check_artifact, check_batch_sizes, option
from mlperf_track.runtimes._torch import (
    TorchPreparedModel,
    compute_dtype,
    place_module,
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


def _reset_compiler() -> None:
    # torch.compile caches compiled code on the module class's forward: without a reset, later cases with
    # other dtypes or shapes pile up entries until the recompile limit silently falls back to eager.
    torch._dynamo.reset()


class CompileRuntime(Runtime):
    """``torch.compile`` (inductor) on CPU (C++/OpenMP code) and CUDA (Triton kernels)."""

    name: ClassVar[str] = "compile"
    accepted_options: ClassVar[tuple[OptionSpec, ...]] = (
        OptionSpec("compile_mode", "torch.compile mode", choices=COMPILE_MODES, default="default"),
        OptionSpec(
            "compile_dynamic",
            "one dynamic-shape graph for every batch size",
            choices=("false", "true"),
            default="false",
        ),
        OptionSpec("inductor_freezing", "inductor freezing", choices=("auto", "true", "false"), default="auto"),
    )

    def capabilities(self) -> RuntimeCapabilities:
        """The same precisions as eager: inductor compiles whatever torch runs."""
        return torch_capabilities()

    def prepare(self, artifact: ModelArtifact, request: PrepareRequest) -> PreparedModel:
        """Compile a placed copy of the module and run it once per batch size (the compile itself)."""
        self.check(request.device, request.precision)
        check_artifact(self.name, artifact, request.precision)
        batch_sizes = check_batch_sizes(request.batch_sizes)
        module = require_module(self.name, artifact)
        mode = option(request, "compile_mode", COMPILE_MODES, "default")
        if request.device != "cuda" and mode == "reduce-overhead":
            allowed = [name for name in COMPILE_MODES if name != "reduce-overhead"]
            raise UnsupportedError("option compile_mode", mode, allowed, hint="CUDA graphs need a GPU")
        dynamic = option(request, "compile_dynamic", ("false", "true"), "false") == "true"
        quantized = artifact.precision is not None
        freezing_option = option(request, "inductor_freezing", ("auto", "true", "false"), "auto")
        freezing = quantized if freezing_option == "auto" else freezing_option == "true"
        if quantized:
            request = replace(request, channels_last=False)
        dtype = compute_dtype(request.precision)
        placed = place_module(module, request, quantized)
        compiled = torch.compile(placed, mode=mode, backend="inductor", dynamic=dynamic)
        tags = {
            "runtime.compile_mode": mode,
            "runtime.compile_backend": "inductor",
            "runtime.compile_dynamic": str(dynamic).lower(),
            "runtime.inductor_freezing": str(freezing).lower(),
            "runtime.cuda_graphs": str(request.device == "cuda" and mode in CUDA_GRAPH_MODES).lower(),
            "runtime.compiled_batch_sizes": ",".join(str(size) for size in batch_sizes),
            "runtime.dtype": str(dtype).removeprefix("torch."),
            "runtime.channels_last": str(request.channels_last).lower(),
        }
        prepared = TorchPreparedModel(compiled, request, dtype, tags, pad_predict=not dynamic, on_close=_reset_compiler)
        calls = _GRAPH_CALLS if request.device == "cuda" and mode in CUDA_GRAPH_MODES else 1
        limit = max(int(torch._dynamo.config.recompile_limit), len(batch_sizes) + 2)
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
        logger.debug("compiled %s (%s) for batch sizes %s", artifact.name, mode, batch_sizes)
        return prepared
