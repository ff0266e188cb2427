"""What a benchmark session does differently for a text model (``hf:``, ``hf-config:``).

The session stays one path for every model; where a text model needs something else it asks its
:class:`TextWorkload`: the tokenizer and dataset, the trained baseline, the shapes a case sweeps (sequence
lengths for an encoder, prompt x output lengths for a decoder), the input shape and KV-cache length a runtime
prepares for, the generation timing of a decoder case, and the quality of a decoder (perplexity). Bad
lengths are refused here, when the model is loaded and before any training or measuring.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from mlperf_track import metrics as m
from mlperf_track.errors import ConfigError, UnsupportedError

if TYPE_CHECKING:
    import torch

    from mlperf_track.data.text import TextDataset
    from mlperf_track.engine.result import BenchmarkResult
    from mlperf_track.engine.text_quality import LanguageModelReport
    from mlperf_track.models.artifact import ModelArtifact
    from mlperf_track.models.text import LoadedTextModel
    from mlperf_track.pipeline.config import PipelineConfig
    from mlperf_track.runtimes.base import PreparedModel
    from mlperf_track.spec import CaseSpec
    from mlperf_track.variants.baseline import PreparedBaseline

logger = logging.getLogger(__name__)

ENCODER = "encoder"
DECODER = "decoder"


class TextWorkload:
    """The text side of a session for one loaded text model.

    Args:
        config: The pipeline configuration.
        loaded: The loaded text model.
        device: The resolved device.

    Raises:
        ConfigError: A sequence, prompt or output length the model cannot take.
    """

    def __init__(self, config: PipelineConfig, loaded: LoadedTextModel, device: str) -> None:
        self.config = config
        self.loaded = loaded
        self.info = loaded.text
        self.device = device
        self._data: TextDataset | None = None
        self._reference: LanguageModelReport | None = None
        self.check_lengths()

    @property
    def kind(self) -> str:
        """``encoder`` or ``decoder``."""
        return self.info.kind

    @property
    def workload(self) -> str:
        """The runtimes' workload name: ``tokens`` (encoder) or ``generation`` (decoder)."""
        return "generation" if self.kind == DECODER else "tokens"

    def check_lengths(self) -> None:
        """Refuse lengths beyond the model's positions (one line naming the parameter, the value, the limit)."""
        limit = self.info.max_positions
        if self.kind == ENCODER:
            for seq_len in self.config.seq_lens:
                if seq_len > limit:
                    raise ConfigError("seq_len", seq_len, f"at most {limit}, the model's maximum positions")
            return
        for prompt_len in self.config.prompt_lens:
            if prompt_len >= limit:
                raise ConfigError("prompt_len", prompt_len, f"below {limit}, the model's context (maximum positions)")
        longest = max(self.config.prompt_lens) + max(self.config.output_lens)
        if longest > limit:
            raise ConfigError(
                "output_len",
                max(self.config.output_lens),
                f"at most {limit - max(self.config.prompt_lens)}: prompt plus output must fit the model's "
                f"context of {limit} positions",
            )

    def check_runtimes(self, runtimes: list[str], supports: dict[str, bool]) -> list[str]:
        """The requested runtimes that run this workload; none of them is bad input (one line)."""
        usable = [name for name in runtimes if supports[name]]
        skipped = [name for name in runtimes if not supports[name]]
        if not usable:
            raise UnsupportedError(
                "runtime",
                ",".join(runtimes),
                hint=f"none runs a text {self.kind}; use eager or compile"
                + (", onnxruntime or openvino" if self.kind == ENCODER else ""),
            )
        if skipped:
            logger.info("runtimes %s do not run a text %s: skipped", ", ".join(skipped), self.kind)
        return usable

    # -- data and baseline ---------------------------------------------------------------------------------

    @property
    def data(self) -> TextDataset:
        """The tokenized dataset (windows of the quality length), built on first use."""
        if self._data is None:
            from mlperf_track.data.text import QUALITY_SEQ_LEN, load_text_dataset
            from mlperf_track.data.text_tokenizer import corpus_tokenizer, folder_tokenizer

            if self.info.tokenizer_path is not None:
                tokenizer = folder_tokenizer(self.info.tokenizer_path)
            else:
                tokenizer = corpus_tokenizer(
                    self.info.vocab_size, self.config.cache_dir / "text", seed=self.config.seed
                )
            if tokenizer.vocab_size > self.info.vocab_size:
                raise ConfigError(
                    "model",
                    self.config.model,
                    hint=f"its tokenizer has {tokenizer.vocab_size} tokens, more than the model's "
                    f"{self.info.vocab_size}",
                )
            seq_len = min(QUALITY_SEQ_LEN[self.kind], self.info.max_positions - 1)
            self._data = load_text_dataset(
                self.config.dataset, kind=self.kind, tokenizer=tokenizer, seq_len=seq_len, seed=self.config.seed
            )
        return self._data

    def baseline(self) -> PreparedBaseline:
        """The trained (or, on synthetic data, as-loaded) baseline."""
        from mlperf_track.variants.text_baseline import prepare_text_baseline

        return prepare_text_baseline(
            self.loaded,
            self.data,
            device=self.device,
            seed=self.config.seed,
            cache_dir=self.config.cache_dir,
            options=self.config.option_dict,
        )

    # -- planning -------------------------------------------------------------------------------------------

    def shapes(self) -> list[dict[str, int]]:
        """The per-case lengths to sweep: ``seq_len`` (encoder) or ``prompt_len`` x ``output_len`` (decoder)."""
        if self.kind == ENCODER:
            return [{"seq_len": seq_len} for seq_len in self.config.seq_lens]
        return [
            {"prompt_len": prompt, "output_len": output}
            for prompt in self.config.prompt_lens
            for output in self.config.output_lens
        ]

    def input_shape(self, case: CaseSpec) -> tuple[int, ...]:
        """What a runtime prepares for: ``(seq_len,)`` or ``(prompt_len,)``."""
        length = case.seq_len if self.kind == ENCODER else case.prompt_len
        assert length is not None, f"text case {case.name} has no length"
        return (length,)

    def max_sequence(self) -> int | None:
        """A decoder's longest prompt plus output over the grid (sizes static KV caches); ``None`` for encoders."""
        if self.kind == ENCODER:
            return None
        return max(self.config.prompt_lens) + max(self.config.output_lens)

    def example_input(self, case: CaseSpec) -> torch.Tensor:
        """One sequence of token ids of the case's length (for FLOP counting)."""
        import torch

        return torch.zeros((1, *self.input_shape(case)), dtype=torch.int64)

    # -- measuring ------------------------------------------------------------------------------------------

    def per_token_metrics(self, result: BenchmarkResult) -> dict[str, float]:
        """An encoder case's throughput in tokens and its median latency per token."""
        case = result.case
        if self.kind != ENCODER or case.seq_len is None or m.THROUGHPUT not in result.metrics:
            return {}
        tokens = case.batch_size * case.seq_len
        values = {m.TOKENS_PER_S: result.metrics[m.THROUGHPUT] * case.seq_len}
        if m.LATENCY_P50 in result.metrics:
            values[m.LATENCY_P50_PER_TOKEN] = result.metrics[m.LATENCY_P50] / tokens
        return values

    def quality_metrics(self, predict_model: PreparedModel, baseline: ModelArtifact) -> dict[str, float]:
        """A decoder's perplexity, next-token accuracy and, against the baseline, the delta and agreement."""
        from mlperf_track.engine.text_quality import evaluate_language_model, language_model_metrics

        data = self.data
        if self.kind != DECODER or data.val is None:
            return {}
        if self._reference is None:
            import torch

            module = baseline.module
            assert module is not None

            def predict(ids: torch.Tensor) -> torch.Tensor:
                with torch.inference_mode():
                    return module(ids).float()

            self._reference = evaluate_language_model(predict, data.val)
        report = evaluate_language_model(predict_model.predict, data.val)
        return language_model_metrics(report, self._reference)
