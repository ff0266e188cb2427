"""Settings, batches, calls and accuracy for :mod:`mlperf_track.tracking.evaluator`."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from mlperf_track import metrics as m
from mlperf_track.errors import ConfigError
from mlperf_track.spec import TimingConfig, check_choice, check_positive_int, parse_int_list

logger = logging.getLogger(__name__)

#: How the model is called: the PyTorch module itself, or pyfunc ``predict``.
CALLS = ("native", "pyfunc")
#: Rows per forward pass when predicting the whole dataset for accuracy.
PREDICT_CHUNK = 256


def quick_timing() -> TimingConfig:
    """Default timing for evaluation: short, since a model is timed at several batch sizes in one call."""
    return TimingConfig(warmup_iters=3, warmup_s=0.1, min_iters=10, max_iters=1000, max_time_s=2.0, target_rel_ci=0.02)


@dataclass(frozen=True)
class EvaluatorSettings:
    """The evaluator's ``evaluator_config``, validated.

    Attributes:
        batch_sizes: Batch sizes to time; the first one's metrics also go under the plain metric names.
        timing: How long to measure each batch size.
        device: ``auto``, ``cpu`` or ``cuda`` for native PyTorch models (pyfunc models run on the CPU).
        call: ``native`` (the ``nn.Module`` when the model has the PyTorch flavour) or ``pyfunc``.
        input_shape: Per-sample input shape for native models fed flat rows; ``None``: from the signature.
        monitors: Run the engine's monitors (memory, CPU utilisation, ...).
        metric_prefix: Prefix of every metric key.
    """

    batch_sizes: tuple[int, ...] = (1, 32)
    timing: TimingConfig = field(default_factory=quick_timing)
    device: str = "auto"
    call: str = "native"
    input_shape: tuple[int, ...] | None = None
    monitors: bool = True
    metric_prefix: str = ""

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> EvaluatorSettings:
        """Parse an ``evaluator_config`` dict.

        Raises:
            ConfigError: An unknown key or a bad value.
        """
        allowed = [item.name for item in fields(cls)]
        values: dict[str, Any] = {}
        for key, value in config.items():
            if key not in allowed:
                raise ConfigError("evaluator_config", key, allowed)
            values[key] = value
        if "batch_sizes" in values:
            values["batch_sizes"] = _batch_sizes(values["batch_sizes"])
        if "timing" in values and not isinstance(values["timing"], TimingConfig):
            timing = values["timing"]
            if not isinstance(timing, Mapping):
                raise ConfigError("timing", timing, "a dict of TimingConfig fields")
            values["timing"] = TimingConfig(**{**quick_timing().to_dict(), **dict(timing)})
        if values.get("input_shape") is not None:
            values["input_shape"] = tuple(check_positive_int("input_shape", int(v)) for v in values["input_shape"])
        settings = cls(**values)
        check_choice("device", settings.device, ("auto", "cpu", "cuda"))
        check_choice("call", settings.call, CALLS)
        return settings

    def resolved_device(self) -> str:
        """``auto`` resolved to ``cuda`` or ``cpu``."""
        from mlperf_track.engine.device import resolve_device

        return resolve_device(self.device)


def _batch_sizes(value: object) -> tuple[int, ...]:
    if isinstance(value, str):
        return parse_int_list("batch_sizes", value)
    if isinstance(value, int):
        return (check_positive_int("batch_sizes", value),)
    if isinstance(value, Sequence) and value:
        return tuple(dict.fromkeys(check_positive_int("batch_sizes", item) for item in value))
    raise ConfigError("batch_sizes", value, "a positive integer or a list of them")


def make_batch(features: Any, batch_size: int) -> Any:
    """The first ``batch_size`` rows of ``features`` (a DataFrame or array), cycling when it is shorter."""
    import numpy as np

    count = len(features)
    if count == 0:
        raise ConfigError("data", "an empty dataset", "at least one row")
    index = np.arange(batch_size) % count
    if hasattr(features, "iloc"):
        return features.iloc[index].reset_index(drop=True)
    return np.asarray(features)[index]


def native_module(model: Any) -> Any:
    """The ``torch.nn.Module`` behind a pyfunc model with the PyTorch flavour, else ``None``."""
    metadata = getattr(model, "metadata", None)
    if metadata is None or "pytorch" not in getattr(metadata, "flavors", {}):
        return None
    try:
        raw = model.get_raw_model()
    except (NotImplementedError, AttributeError):
        return None
    import torch

    return raw if isinstance(raw, torch.nn.Module) else None


def signature_shape(model: Any) -> tuple[int, ...] | None:
    """Per-sample input shape from a tensor signature (``(-1, 3, 32, 32)`` -> ``(3, 32, 32)``), when fixed."""
    signature = getattr(getattr(model, "metadata", None), "signature", None)
    try:
        if signature is not None and signature.inputs is not None and signature.inputs.is_tensor_spec():
            shape = tuple(int(size) for size in signature.inputs.inputs[0].shape[1:])
            return shape if shape and all(size > 0 for size in shape) else None
    except (AttributeError, IndexError, TypeError, ValueError):
        return None
    return None


def to_tensor(batch: Any, shape: tuple[int, ...] | None, device: str) -> Any:
    """Rows as a float32 tensor of ``(rows, *shape)`` on ``device`` (``shape=None`` keeps the row shape)."""
    import numpy as np
    import torch

    array = np.asarray(batch.to_numpy() if hasattr(batch, "to_numpy") else batch, dtype=np.float32)
    if shape is not None:
        try:
            array = array.reshape(len(array), *shape)
        except ValueError:
            raise ConfigError("input_shape", shape, f"a shape that rows of {array.shape[1:]} values fit") from None
    return torch.from_numpy(np.ascontiguousarray(array)).to(device)


def native_caller(
    module: Any, model: Any, device: str, settings: EvaluatorSettings
) -> Callable[[Any], Callable[[], object]]:
    """A factory: rows -> a no-argument call of ``module`` on them (tensor built once, outside the timing)."""
    import torch

    shape = settings.input_shape or signature_shape(model)
    module.to(device)

    def for_batch(batch: Any) -> Callable[[], object]:
        tensor = to_tensor(batch, shape, device)

        def call() -> object:
            with torch.inference_mode():
                return module(tensor)

        return call

    return for_batch


def predict_all(model: Any, module: Any, features: Any, device: str, settings: EvaluatorSettings) -> Any:
    """Outputs for every row as a NumPy array (module in chunks, or pyfunc ``predict``)."""
    import numpy as np
    import torch

    if module is None:
        output = model.predict(features)
        return np.asarray(output.to_numpy() if hasattr(output, "to_numpy") else output)
    shape = settings.input_shape or signature_shape(model)
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(features), PREDICT_CHUNK):
            stop = start + PREDICT_CHUNK
            rows = features.iloc[start:stop] if hasattr(features, "iloc") else features[start:stop]
            chunks.append(module(to_tensor(rows, shape, device)).float().cpu().numpy())
    return np.concatenate(chunks)


def accuracy_metrics(outputs: Any, labels: Any) -> tuple[dict[str, float], dict[str, str]]:
    """Top-1 (and top-5) accuracy as fractions from class labels or per-class scores.

    Scores (two or more columns) are ranked, and labels must then be class indices; one column (or a 1-D
    output) is compared with the labels directly.
    """
    import numpy as np

    scores = np.asarray(outputs)
    truth = np.asarray(labels).ravel()
    if len(scores) != len(truth):
        return {}, {m.ACCURACY_TOP1: f"{len(scores)} predictions for {len(truth)} targets"}
    if scores.ndim == 2 and scores.shape[1] > 1:
        if not np.issubdtype(truth.dtype, np.integer):
            return {}, {m.ACCURACY_TOP1: "score outputs need integer class-index targets"}
        ranked = np.argsort(-scores, axis=1)
        result = {m.ACCURACY_TOP1: float(np.mean(ranked[:, 0] == truth))}
        if scores.shape[1] >= 5:
            result[m.ACCURACY_TOP5] = float(np.mean(np.any(ranked[:, :5] == truth[:, None], axis=1)))
        return result, {}
    return {m.ACCURACY_TOP1: float(np.mean(scores.reshape(len(truth)) == truth))}, {}


#: MLflow's function that offers an ``evaluators=None`` evaluation to every registered evaluator.
_DEFAULT_SELECTION = ("mlflow.models.evaluation.base", "resolve_evaluators_and_configs")
#: Stack frames searched for it (its call of ``can_evaluate`` is direct).
_SELECTION_DEPTH = 6


def offered_by_default() -> bool:
    """Whether MLflow is asking because ``evaluate(evaluators=None)`` offers the evaluation to everyone.

    ``can_evaluate`` does not see the ``evaluators`` argument. In the MLflow versions we support (3.x),
    ``resolve_evaluators_and_configs`` calls ``can_evaluate`` itself only in that case; when the user names the
    evaluator the question comes later, from the evaluation loop. The stack tells the two apart;
    ``tests/tracking/test_tracking_evaluator.py`` runs the real ``mlflow.models.evaluate`` both ways, so a
    change in MLflow shows there.
    """
    frame = inspect.currentframe()
    try:
        for _ in range(_SELECTION_DEPTH):
            frame = frame.f_back if frame is not None else None
            if frame is None:
                return False
            if (frame.f_globals.get("__name__"), frame.f_code.co_name) == _DEFAULT_SELECTION:
                return True
        return False
    finally:
        del frame


def carries_settings(config: Any) -> bool:
    """A non-empty config made only of this evaluator's settings (so it was meant for it)."""
    allowed = {item.name for item in fields(EvaluatorSettings)}
    return isinstance(config, Mapping) and bool(config) and set(config) <= allowed


def device_baseline(device: str) -> int | None:
    """The GPU's used memory before the model is placed on it (``None`` off CUDA or when unreadable)."""
    if device != "cuda":
        return None
    from mlperf_track.engine.device import release_memory
    from mlperf_track.engine.monitors.gpu_device_memory import device_used_reader

    release_memory(device)
    reader = device_used_reader()
    try:
        return reader[0]() if reader is not None else None
    except Exception:  # the delta metric is then left out with a note
        logger.debug("no device-memory baseline", exc_info=True)
        return None
