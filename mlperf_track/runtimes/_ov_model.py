"""The prepared model of the openvino runtime: one synchronous infer request over shared numpy buffers."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mlperf_track.runtimes._common import chunked_predict, synthetic_batch
from mlperf_track.runtimes.base import PreparedModel

if TYPE_CHECKING:
    from mlperf_track.runtimes.base import PrepareRequest

PREDICT_CHUNK = 64


class OpenVinoPreparedModel(PreparedModel):
    """A compiled OpenVINO model and its infer request.

    :meth:`make_input` returns a float32 numpy array; :meth:`__call__` infers without copying the input or
    the output (``share_inputs``/``share_outputs``) and returns the output tensor's numpy view, which the next
    call overwrites.
    """

    def __init__(
        self,
        compiled: Any,
        request: PrepareRequest,
        tags: dict[str, str],
        on_close: Callable[[], None] | None = None,
        *,
        vocab_size: int | None = None,
    ) -> None:
        self.device = request.device
        self._vocab_size = vocab_size
        self.tags = tags
        self._compiled: Any = compiled
        self._request: Any = compiled.create_infer_request()
        self._input_shape = request.input_shape
        self._on_close = on_close

    def make_input(self, batch_size: int, seed: int = 0) -> np.ndarray:
        """A seeded float32 batch (or int64 token ids) as a numpy array (OpenVINO reads host memory)."""
        return synthetic_batch(batch_size, self._input_shape, seed, vocab_size=self._vocab_size).numpy()

    def _infer_request(self) -> Any:
        if self._request is None:
            raise RuntimeError("this prepared model was closed")
        return self._request

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        """Run one batch; returns the logits as a numpy view of the request's output tensor."""
        request = self._infer_request()
        request.infer({0: inputs}, share_inputs=True, share_outputs=True)
        return request.get_output_tensor(0).data

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Float32 CPU logits for a float32 CPU batch of any size."""

        self._infer_request()  # raises when closed
        # A request of its own: the timed one holds tensors that share the caller's arrays, which cannot grow.
        request = self._compiled.create_infer_request()

        def run(part: torch.Tensor) -> torch.Tensor:
            dtype = np.int64 if self._vocab_size is not None else np.float32
            request.infer({0: np.ascontiguousarray(part.numpy(), dtype=dtype)})
            return torch.from_numpy(np.array(request.get_output_tensor(0).data, dtype=np.float32))

        return chunked_predict(run, images, PREDICT_CHUNK)

    def close(self) -> None:
        """Release the infer request, the compiled model and the temporary files."""
        self._request = None
        self._compiled = None
        if self._on_close is not None:
            self._on_close()
            self._on_close = None
