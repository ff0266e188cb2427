"""The prepared model of the onnxruntime runtime: numpy in and out on CPU, IO binding of torch tensors on CUDA.

On CUDA the session computes on its own stream (see :mod:`mlperf_track.runtimes.ort`); every call makes that
stream wait for the caller's current stream (the inputs are ready), runs without ORT's host synchronisation,
then makes the caller's stream wait for it, so work queued after the call, such as the engine's end event,
starts only when the session's kernels are done.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mlperf_track.runtimes._common import chunked_predict, synthetic_batch
from mlperf_track.runtimes.base import PreparedModel

if TYPE_CHECKING:
    from mlperf_track.runtimes.base import PrepareRequest

#: ONNX Runtime's element type strings (``NodeArg.type``) and their torch dtypes.
ORT_DTYPES = {
    "tensor(float)": torch.float32,
    "tensor(float16)": torch.float16,
    "tensor(bfloat16)": torch.bfloat16,
    "tensor(int64)": torch.int64,
}
PREDICT_CHUNK = 64


def _numpy_dtype(dtype: torch.dtype) -> Any:
    return torch.empty((), dtype=dtype).numpy().dtype


class OrtPreparedModel(PreparedModel):
    """An ``onnxruntime.InferenceSession`` ready to time.

    On CPU, :meth:`make_input` returns a numpy array and :meth:`__call__` returns the logits array. On CUDA,
    inputs are torch CUDA tensors bound (with preallocated outputs) through IO binding, so no host copy is
    timed; :meth:`__call__` returns the output tensor.
    """

    def __init__(
        self,
        session: Any,
        request: PrepareRequest,
        tags: dict[str, str],
        on_close: Callable[[], None] | None = None,
        stream: Any = None,
        *,
        vocab_size: int | None = None,
    ) -> None:
        self.device = request.device
        self._vocab_size = vocab_size
        self.tags = tags
        self._session: Any = session
        self._on_close = on_close
        self._stream: Any = stream
        self._run_options: Any = None
        if stream is not None:
            import onnxruntime as ort

            self._run_options = ort.RunOptions()
            self._run_options.add_run_config_entry("disable_synchronize_execution_providers", "1")
        graph_input = session.get_inputs()[0]
        self._input_name = str(graph_input.name)
        self._output_name = str(session.get_outputs()[0].name)
        self._dtype = ORT_DTYPES.get(str(graph_input.type), torch.float32)
        self._input_shape = request.input_shape
        self._outputs: dict[int, torch.Tensor] = {}
        self._last: tuple[tuple[int, int], Any, torch.Tensor] | None = None
        self._num_classes: int | None = None
        self.tags["runtime.input_dtype"] = str(self._dtype).removeprefix("torch.")

    def make_input(self, batch_size: int, seed: int = 0) -> Any:
        """A seeded batch: a numpy array on CPU, a torch CUDA tensor on GPU, in the graph's input dtype (token ids
        for a text model)."""
        batch = synthetic_batch(batch_size, self._input_shape, seed, self._dtype, self._vocab_size)
        if self.device == "cpu":
            return batch.numpy()
        on_device = batch.to("cuda").contiguous()
        torch.cuda.synchronize()
        return on_device

    def _session_or_raise(self) -> Any:
        if self._session is None:
            raise RuntimeError("this prepared model was closed")
        return self._session

    def __call__(self, inputs: Any) -> Any:
        """Run one batch from :meth:`make_input`."""
        session = self._session_or_raise()
        if self.device == "cpu":
            return session.run([self._output_name], {self._input_name: inputs})[0]
        binding, output = self._binding(session, inputs)
        if self._stream is None:
            session.run_with_iobinding(binding)
            return output
        caller = torch.cuda.current_stream()
        self._stream.wait_stream(caller)
        session.run_with_iobinding(binding, self._run_options)
        caller.wait_stream(self._stream)
        return output

    def _binding(self, session: Any, inputs: torch.Tensor) -> tuple[Any, torch.Tensor]:
        """The IO binding for this input buffer (kept while the same buffer comes back, as in a timed loop)."""
        key = (inputs.data_ptr(), int(inputs.shape[0]))
        if self._last is not None and self._last[0] == key:
            return self._last[1], self._last[2]
        device_id = inputs.device.index or 0
        batch_size = int(inputs.shape[0])
        if batch_size not in self._outputs:
            shape = self._output_shape(inputs)
            self._outputs[batch_size] = torch.empty(shape, dtype=self._output_dtype(), device=inputs.device)
        output = self._outputs[batch_size]
        binding = session.io_binding()
        binding.bind_input(
            self._input_name, "cuda", device_id, _numpy_dtype(inputs.dtype), tuple(inputs.shape), inputs.data_ptr()
        )
        binding.bind_output(
            self._output_name, "cuda", device_id, _numpy_dtype(output.dtype), tuple(output.shape), output.data_ptr()
        )
        self._last = (key, binding, output)
        return binding, output

    def _output_dtype(self) -> torch.dtype:
        return ORT_DTYPES.get(str(self._session_or_raise().get_outputs()[0].type), torch.float32)

    def _output_shape(self, inputs: torch.Tensor) -> tuple[int, ...]:
        if self._num_classes is None:
            declared = self._session_or_raise().get_outputs()[0].shape
            if declared and isinstance(declared[-1], int):
                self._num_classes = int(declared[-1])
            else:  # a symbolic class count: learn it from one unbound run of this very batch
                result = self._session_or_raise().run([self._output_name], {self._input_name: inputs.cpu().numpy()})[0]
                self._num_classes = int(np.asarray(result).shape[-1])
        return (int(inputs.shape[0]), self._num_classes)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Float32 CPU logits for a float32 CPU batch of any size."""

        def run(part: torch.Tensor) -> torch.Tensor:
            session = self._session_or_raise()
            array = part.to(self._dtype).numpy()
            result = session.run([self._output_name], {self._input_name: array})[0]
            return torch.from_numpy(np.asarray(result, dtype=np.float32))

        return chunked_predict(run, images, PREDICT_CHUNK)

    def close(self) -> None:
        """Release the session, the bound buffers and the temporary files."""
        self._outputs.clear()
        self._last = None
        self._session = None
        if self._stream is not None:
            self._stream.synchronize()
            self._stream = None
        if self._on_close is not None:
            self._on_close()
            self._on_close = None
