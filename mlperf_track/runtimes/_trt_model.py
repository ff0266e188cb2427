"""The prepared model of the tensorrt runtime: named-tensor execution (``execute_async_v3``) on torch CUDA memory.

Each call enqueues the engine on a dedicated torch CUDA stream, never on the legacy default stream (where
``enqueueV3`` adds its own synchronisation and TensorRT warns): the stream first waits for the caller's current
stream (the inputs are ready), and the caller's stream then waits for it, so work queued after the call, such
as the engine's end event or a copy of the output, runs only once the engine is done.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from mlperf_track.errors import ConfigError, MeasurementError
from mlperf_track.runtimes._common import chunked_predict, synthetic_batch
from mlperf_track.runtimes.base import PreparedModel

if TYPE_CHECKING:
    from mlperf_track.runtimes.base import PrepareRequest


def torch_dtype(trt: Any, dtype: Any) -> torch.dtype:
    """The torch dtype of a ``trt.DataType``."""
    table = {
        "FLOAT": torch.float32,
        "HALF": torch.float16,
        "BF16": torch.bfloat16,
        "INT8": torch.int8,
        "UINT8": torch.uint8,
        "INT32": torch.int32,
        "INT64": torch.int64,
        "BOOL": torch.bool,
        "FP8": torch.float8_e4m3fn,
    }
    for name, torch_type in table.items():
        if getattr(trt.DataType, name, None) == dtype:
            return torch_type
    raise MeasurementError(f"TensorRT tensor type {dtype} has no torch equivalent")


class TensorRtPreparedModel(PreparedModel):
    """A deserialized engine and one execution context.

    Inputs are torch CUDA tensors; outputs are preallocated torch CUDA tensors per batch size; every call
    enqueues on the model's own stream, joined to the caller's current stream on both sides (module docstring).

    Args:
        trt: The imported ``tensorrt`` module.
        runtime_and_engine: The ``trt.Runtime`` and the ``ICudaEngine`` it deserialized (kept together: the
            runtime must outlive its engines).
        request: What was prepared (its batch sizes bound the optimisation profile).
        tags: Effective settings.
        on_close: Extra clean-up (temporary files).
    """

    def __init__(
        self,
        trt: Any,
        runtime_and_engine: tuple[Any, Any],
        request: PrepareRequest,
        tags: dict[str, str],
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.device = "cuda"
        self.tags = tags
        self._runtime: Any = runtime_and_engine[0]
        engine = runtime_and_engine[1]
        self._engine: Any = engine
        self._context: Any = engine.create_execution_context()
        self._on_close = on_close
        names = [engine.get_tensor_name(index) for index in range(engine.num_io_tensors)]
        inputs = [name for name in names if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT]
        if len(inputs) != 1:
            raise ConfigError("model inputs", len(inputs), "exactly one image input")
        self._input = inputs[0]
        self._outputs = [name for name in names if name != self._input]
        self._dtypes = {name: torch_dtype(trt, engine.get_tensor_dtype(name)) for name in names}
        self._input_shape = request.input_shape
        self._min_batch, self._max_batch = min(request.batch_sizes), max(request.batch_sizes)
        self._buffers: dict[int, dict[str, torch.Tensor]] = {}
        self._bound: tuple[int, int] | None = None
        self._stream: torch.cuda.Stream | None = torch.cuda.Stream()

    def _check_batch(self, batch_size: int) -> None:
        if not self._min_batch <= batch_size <= self._max_batch:
            raise ConfigError(
                "batch_size",
                batch_size,
                f"a size in the engine's profile [{self._min_batch}, {self._max_batch}]",
                hint="prepare the model with every batch size it will run",
            )

    def make_input(self, batch_size: int, seed: int = 0) -> torch.Tensor:
        """A seeded batch on the GPU in the engine's input dtype."""
        self._check_batch(batch_size)
        batch = synthetic_batch(batch_size, self._input_shape, seed, self._dtypes[self._input]).to("cuda")
        torch.cuda.synchronize()
        return batch.contiguous()

    def _context_or_raise(self) -> Any:
        if self._context is None:
            raise RuntimeError("this prepared model was closed")
        return self._context

    def _bind(self, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        context = self._context_or_raise()
        batch_size = int(inputs.shape[0])
        if self._bound == (batch_size, inputs.data_ptr()):
            return self._buffers[batch_size]
        self._check_batch(batch_size)
        context.set_input_shape(self._input, tuple(inputs.shape))
        context.set_tensor_address(self._input, inputs.data_ptr())
        if batch_size not in self._buffers:
            self._buffers[batch_size] = {
                name: torch.empty(tuple(context.get_tensor_shape(name)), dtype=self._dtypes[name], device="cuda")
                for name in self._outputs
            }
        for name, buffer in self._buffers[batch_size].items():
            context.set_tensor_address(name, buffer.data_ptr())
        self._bound = (batch_size, inputs.data_ptr())
        return self._buffers[batch_size]

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        """Enqueue one batch on the model's stream, joined to the caller's; returns the first output buffer."""
        outputs = self._bind(inputs)
        context = self._context_or_raise()
        assert self._stream is not None
        caller = torch.cuda.current_stream()
        self._stream.wait_stream(caller)
        if not context.execute_async_v3(self._stream.cuda_stream):
            raise MeasurementError("TensorRT execute_async_v3 failed (see the TensorRT log)")
        caller.wait_stream(self._stream)
        return outputs[self._outputs[0]]

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Float32 CPU logits, in chunks that fit the profile (the last one zero-padded up to its minimum)."""

        def run(part: torch.Tensor) -> torch.Tensor:
            device_part = part.to(device="cuda", dtype=self._dtypes[self._input]).contiguous()
            output = self(device_part).clone()
            torch.cuda.synchronize()
            return output

        return chunked_predict(run, images, self._max_batch, pad_to=self._min_batch)

    def close(self) -> None:
        """Release the execution context, the engine, the buffers and the temporary files."""
        if self._stream is not None:
            self._stream.synchronize()
            self._stream = None
        self._buffers.clear()
        self._bound = None
        self._context = None
        self._engine = None
        self._runtime = None
        if self._on_close is not None:
            self._on_close()
            self._on_close = None
        torch.cuda.empty_cache()
