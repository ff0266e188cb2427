"""Text generation for the eager and compile runtimes: the dynamic-cache ``generate`` path and a static-cache
decode loop that ``torch.compile`` captures.

- **Dynamic cache** (eager): ``model.generate`` with greedy decoding, a ``DynamicCache`` that grows by one
  position per token, and ``min_new_tokens = max_new_tokens`` (every call makes exactly ``output_len``
  tokens, as vLLM's benchmarks' ``ignore_eos``). A streamer hands every new token to the engine's
  ``on_token``; transformers moves each token to the host before that (``put(tokens.cpu())``), so the token
  exists when it is timed. Option ``decode_loop=forward`` runs a plain loop over ``model.forward`` with the same
  cache instead, without ``generate``'s own per-token work (logits processors, stopping criteria).
- **Static cache** (compile): the recipe of the transformers docs ("LLM inference optimization"): a
  ``StaticCache`` of ``max_cache_len`` positions allocated once, the prompt's prefill run eagerly, then a
  compiled one-token decode step (``torch.compile(..., fullgraph=True)``, ``reduce-overhead`` CUDA graphs on a
  GPU) called ``output_len - 1`` times. Every batch size is compiled in ``prepare`` (``startup/prepare_s``).

Both are greedy (argmax), so for the same weights they produce the same tokens. The KV cache's size after a
call is read from its tensors (:func:`cache_bytes`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from mlperf_track.runtimes._common import synthetic_batch
from mlperf_track.runtimes.base import PreparedModel, PrepareRequest
from mlperf_track.spec import check_choice

logger = logging.getLogger(__name__)

DECODE_LOOPS = ("generate", "forward")


def cache_bytes(cache: Any) -> int | None:
    """Bytes held by a transformers cache's key and value tensors (``None`` when it has none)."""
    layers = getattr(cache, "layers", None)
    if not layers:
        return None
    total = 0
    for layer in layers:
        for name in ("keys", "values"):
            tensor = getattr(layer, name, None)
            if isinstance(tensor, torch.Tensor):
                total += tensor.numel() * tensor.element_size()
    return total or None


class _TokenStreamer:
    """A ``generate`` streamer that reports each new token (its first ``put`` is the prompt, not a token)."""

    def __init__(self, on_token: Callable[[], None]) -> None:
        self.on_token = on_token
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.on_token()

    def end(self) -> None:
        """Nothing to flush."""


def decode_loop_option(options: Mapping[str, str]) -> str:
    """The ``decode_loop`` option (``generate`` or ``forward``; default ``generate``)."""
    return check_choice("option decode_loop", str(options.get("decode_loop", "generate")), DECODE_LOOPS)


def _argmax_last(logits: torch.Tensor) -> torch.Tensor:
    return logits[:, -1].argmax(dim=-1, keepdim=True)


class GenerationPreparedModel(PreparedModel):
    """A decoder ready to generate: :meth:`generation_run` makes the engine's ``run(on_token)``.

    ``make_input`` gives a prompt ``(batch, prompt_len)`` of token ids; ``__call__`` runs one forward pass
    over it (the prefill, no cache); ``predict`` gives next-token logits for perplexity.

    Args:
        lm: The placed ``CausalLanguageModel`` (its ``.model`` generates).
        request: What was prepared (``input_shape`` is ``(prompt_len,)``).
        vocab_size: Prompts draw token ids below it.
        tags: Effective settings.
        static: Use the static-cache compiled decode (else the dynamic cache).
        compile_options: ``torch.compile`` keyword arguments for the decode step (static only).
        decode_loop: ``generate`` or ``forward`` (dynamic cache only).
        on_close: Extra clean-up.
    """

    def __init__(
        self,
        lm: nn.Module,
        request: PrepareRequest,
        vocab_size: int,
        tags: dict[str, str],
        *,
        static: bool = False,
        compile_options: dict[str, Any] | None = None,
        decode_loop: str = "generate",
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.device = request.device
        self.tags = tags
        self._lm: nn.Module | None = lm
        self._model: Any = lm.model
        self._prompt_len = request.input_shape[0]
        self._max_cache_len = request.max_sequence or self._prompt_len
        self._vocab_size = vocab_size
        self._static = static
        self._decode_loop = decode_loop
        self._caches: dict[int, Any] = {}
        self._last_cache: Any = None
        self._on_close = on_close
        self._step: Callable[[torch.Tensor, Any], torch.Tensor] = self._decode_step
        if static:
            self._step = torch.compile(self._decode_step, fullgraph=True, **(compile_options or {}))

    def _require(self) -> Any:
        if self._lm is None:
            raise RuntimeError("this prepared model was closed")
        return self._model

    def make_input(self, batch_size: int, seed: int = 0) -> torch.Tensor:
        """A seeded prompt of ``prompt_len`` token ids per sequence, on the device."""
        ids = synthetic_batch(batch_size, (self._prompt_len,), seed, vocab_size=self._vocab_size)
        return ids.to(self.device)

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        """One forward pass over the prompt without a cache; returns the logits."""
        assert self._lm is not None, "this prepared model was closed"
        with torch.inference_mode():
            return self._lm(inputs)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Next-token logits ``(batch, seq, vocab)`` as float32 on the CPU, for ids ``(batch, seq)``."""
        assert self._lm is not None, "this prepared model was closed"
        with torch.inference_mode():
            return self._lm(images.to(self.device)).float().cpu()

    # -- generation ---------------------------------------------------------------------------------------

    def _decode_step(self, token: torch.Tensor, cache: Any) -> torch.Tensor:
        return _argmax_last(self._model(input_ids=token, cache=cache, use_cache=True, return_dict=False)[0])

    def _static_cache(self, batch_size: int) -> Any:
        from transformers import StaticCache

        if batch_size not in self._caches:
            self._caches[batch_size] = StaticCache(config=self._model.config, max_cache_len=self._max_cache_len)
        return self._caches[batch_size]

    def generation_run(self, prompt: torch.Tensor, output_len: int) -> Callable[[Callable[[], None]], object]:
        """``run(on_token)`` generating ``output_len`` tokens after ``prompt`` (see the module docstring)."""
        model = self._require()
        if self._static:
            return lambda on_token: self._run_static(model, prompt, output_len, on_token)
        if self._decode_loop == "forward":
            return lambda on_token: self._run_forward_loop(model, prompt, output_len, on_token)
        return lambda on_token: self._run_generate(model, prompt, output_len, on_token)

    def _run_generate(
        self, model: Any, prompt: torch.Tensor, output_len: int, on_token: Callable[[], None]
    ) -> torch.Tensor:
        with torch.inference_mode():
            output = model.generate(
                prompt,
                attention_mask=torch.ones_like(prompt),
                max_new_tokens=output_len,
                min_new_tokens=output_len,
                do_sample=False,
                num_beams=1,
                pad_token_id=model.config.pad_token_id if model.config.pad_token_id is not None else 0,
                streamer=_TokenStreamer(on_token),
                return_dict_in_generate=True,
            )
        self._last_cache = getattr(output, "cache", None) or getattr(output, "past_key_values", None)
        return output.sequences[:, prompt.shape[1] :]

    def _run_forward_loop(
        self, model: Any, prompt: torch.Tensor, output_len: int, on_token: Callable[[], None]
    ) -> torch.Tensor:
        from transformers import DynamicCache

        cache = DynamicCache(config=model.config)
        return self._loop(model, prompt, output_len, on_token, cache=cache, step=self._decode_step)

    def _run_static(
        self, model: Any, prompt: torch.Tensor, output_len: int, on_token: Callable[[], None]
    ) -> torch.Tensor:
        cache = self._static_cache(int(prompt.shape[0]))
        return self._loop(model, prompt, output_len, on_token, cache=cache, step=self._step)

    def _loop(
        self,
        model: Any,
        prompt: torch.Tensor,
        output_len: int,
        on_token: Callable[[], None],
        *,
        cache: Any,
        step: Callable[[torch.Tensor, Any], torch.Tensor],
    ) -> torch.Tensor:
        """Prefill, then ``output_len - 1`` decode steps; ``on_token`` after each new token."""
        with torch.inference_mode():
            if self._static:
                cache.reset()  # zeroes the static buffers in place (inference tensors: inside inference mode)
            token = _argmax_last(model(input_ids=prompt, cache=cache, use_cache=True, return_dict=False)[0])
            tokens = [token]
            on_token()
            for _ in range(output_len - 1):
                token = step(token.clone(), cache)  # clone: a CUDA-graph step's output buffer is reused
                tokens.append(token)
                on_token()
        self._last_cache = cache
        return torch.cat(tokens, dim=1)

    def generate_tokens(self, prompt: torch.Tensor, output_len: int) -> torch.Tensor:
        """The ``(batch, output_len)`` tokens one call generates, on the CPU (for checks; not timed)."""
        result = self.generation_run(prompt, output_len)(lambda: None)
        assert isinstance(result, torch.Tensor)
        return result.cpu()

    def kv_cache_bytes(self) -> int | None:
        """Bytes of the KV cache of the last generation call (``None`` before one ran)."""
        return cache_bytes(self._last_cache) if self._last_cache is not None else None

    def close(self) -> None:
        """Drop the model and caches."""
        self._lm = None
        self._model = None
        self._caches.clear()
        self._last_cache = None
        if self._on_close is not None:
            self._on_close()
            self._on_close = None
        if self.device == "cuda":
            torch.cuda.empty_cache()
