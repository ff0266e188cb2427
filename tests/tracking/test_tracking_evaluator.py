"""``mlflow.models.evaluate(..., evaluators="mlperf_track")`` on a scikit-learn and a PyTorch model; and every
other ``mlflow.models.evaluate`` left alone."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from tracking_helpers import tiny_module

from mlperf_track import metrics as m
from mlperf_track.errors import ConfigError
from mlperf_track.tracking.evaluator import MlperfTrackEvaluator
from mlperf_track.tracking.evaluator_data import EvaluatorSettings, accuracy_metrics, make_batch

FAST = {"warmup_iters": 1, "warmup_s": 0.0, "min_iters": 3, "max_iters": 50, "max_time_s": 0.2, "target_rel_ci": 0.5}


@pytest.fixture
def evaluator_registered() -> Iterator[None]:
    """Register the evaluator by hand when the package's entry point is not installed."""
    from mlflow.models.evaluation.evaluator_registry import _model_evaluation_registry as registry

    added = not registry.is_registered("mlperf_track")
    if added:
        registry.register("mlperf_track", MlperfTrackEvaluator)
    yield
    if added:
        registry._registry.pop("mlperf_track", None)


def test_sklearn_model_through_pyfunc(tracking: str, evaluator_registered: None) -> None:
    import mlflow
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    features, labels = make_classification(n_samples=120, n_features=6, n_informative=4, random_state=0)
    classifier = LogisticRegression(max_iter=200).fit(features, labels)
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(
            classifier, name="clf", input_example=features[:2], pip_requirements=["scikit-learn"]
        )
        result = mlflow.models.evaluate(
            info.model_uri,
            features,
            targets=labels,
            model_type="classifier",
            evaluators="mlperf_track",
            evaluator_config={"batch_sizes": [1, 16], "timing": FAST},
        )
    metrics = result.metrics
    assert metrics[f"{m.LATENCY_P50}_bs1"] > 0 and metrics[f"{m.LATENCY_P50}_bs16"] > 0
    # Several batch sizes: every per-batch metric once per batch size, none unsuffixed (no copies).
    assert not [
        key for key in metrics if key.startswith(("latency/", "throughput/", "cpu/", "memory/")) and "_bs" not in key
    ]
    assert metrics[f"{m.THROUGHPUT}_bs16"] == pytest.approx(16_000 / metrics[f"{m.LATENCY_MEAN}_bs16"], rel=1e-6)
    assert metrics[m.ACCURACY_TOP1] == pytest.approx(classifier.score(features, labels))
    assert metrics[m.MODEL_SIZE] > 0
    logged = mlflow.get_run(run.info.run_id)
    assert logged.data.metrics[f"{m.LATENCY_P50}_bs1"] == pytest.approx(metrics[f"{m.LATENCY_P50}_bs1"])
    assert logged.data.tags["mlperf_track.call"] == "pyfunc"
    assert logged.data.tags["mlperf_track.batch_sizes"] == "1,16"
    cores = int(logged.data.tags["cpu.cores_usable"])
    for batch_size in (1, 16):
        assert 0 <= metrics[f"{m.CPU_UTILIZATION}_bs{batch_size}"] <= 100 * cores
    assert "hw.cpu" in logged.data.tags
    names = {item.path for item in mlflow.MlflowClient().list_artifacts(run.info.run_id, "mlperf_track")}
    assert names == {"mlperf_track/samples_bs1.csv", "mlperf_track/samples_bs16.csv", "mlperf_track/evaluation.json"}
    samples = result.artifacts["mlperf_track_samples_bs16"].content
    details = result.artifacts["mlperf_track_evaluation"].content["batch_sizes"]
    assert list(samples["latency_ms"]) == pytest.approx(details[1]["samples_ms"])
    assert len(samples) >= 3


def test_pytorch_model_natively(tracking: str, evaluator_registered: None) -> None:
    import mlflow

    module = tiny_module()
    rng = np.random.default_rng(0)
    images = rng.standard_normal((40, 3, 8, 8)).astype(np.float32)
    predicted = module(torch.from_numpy(images)).argmax(1).numpy()
    labels = np.where(np.arange(40) % 4 == 0, (predicted + 1) % 3, predicted)  # 75% right by construction
    with mlflow.start_run():
        info = mlflow.pytorch.log_model(
            module, name="net", input_example=images[:2], serialization_format="pt2", pip_requirements=["torch"]
        )
        result = mlflow.models.evaluate(
            info.model_uri,
            images.reshape(40, -1),
            targets=labels,
            model_type="classifier",
            evaluators="mlperf_track",
            evaluator_config={"batch_sizes": "2", "timing": FAST, "device": "cpu", "metric_prefix": "perf_"},
        )
    metrics = result.metrics
    assert metrics["perf_" + m.ACCURACY_TOP1] == pytest.approx(0.75)
    assert metrics["perf_" + m.MODEL_PARAMS] == sum(p.numel() for p in module.parameters())
    assert metrics["perf_" + m.LATENCY_P50] > 0  # one batch size: the plain names, and no suffixed copies
    assert not [key for key in metrics if "_bs" in key]
    assert "perf_" + m.ACCURACY_TOP5 not in metrics  # three classes: no top-5


def test_static_predictions_are_refused(tracking: str, evaluator_registered: None) -> None:
    import mlflow
    import pandas as pd
    from mlflow.exceptions import MlflowException

    data = pd.DataFrame({"x": [1.0, 2.0], "y": [0, 1], "p": [0, 1]})
    with mlflow.start_run(), pytest.raises(MlflowException, match="needs model"):
        mlflow.models.evaluate(
            data=data, targets="y", predictions="p", model_type="classifier", evaluators="mlperf_track"
        )


def test_settings_validation() -> None:
    assert EvaluatorSettings.from_config({"batch_sizes": "1,8"}).batch_sizes == (1, 8)
    assert EvaluatorSettings.from_config({"timing": {"max_time_s": 0.5}}).timing.max_time_s == 0.5
    with pytest.raises(ConfigError, match="evaluator_config"):
        EvaluatorSettings.from_config({"batch_size": 3})
    with pytest.raises(ConfigError):
        EvaluatorSettings.from_config({"call": "grpc"})
    with pytest.raises(ConfigError):
        EvaluatorSettings.from_config({"batch_sizes": [0]})


def test_batches_cycle_short_data() -> None:
    assert make_batch(np.arange(3), 7).tolist() == [0, 1, 2, 0, 1, 2, 0]
    with pytest.raises(ConfigError):
        make_batch(np.zeros((0, 2)), 1)


def test_accuracy_from_labels_and_scores() -> None:
    labels = np.array([0, 1, 2, 3, 4, 5])
    assert accuracy_metrics(np.array([0, 1, 2, 0, 0, 0]), labels)[0][m.ACCURACY_TOP1] == 0.5
    scores = np.eye(6)[[0, 1, 2, 3, 4, 0]] + np.eye(6)[[5, 5, 5, 5, 5, 5]] * 0.5
    result, _ = accuracy_metrics(scores, labels)
    assert result[m.ACCURACY_TOP1] == pytest.approx(5 / 6) and result[m.ACCURACY_TOP5] == 1.0
    assert accuracy_metrics(scores, np.array(list("abcdef")))[0] == {}


def _classifier_data() -> tuple[object, object]:
    from sklearn.datasets import make_classification

    return make_classification(n_samples=60, n_features=4, n_informative=3, n_redundant=0, random_state=0)


def test_a_plain_evaluate_of_predictions_is_left_alone(tracking: str, evaluator_registered: None) -> None:
    """The README-style ``evaluate(data=df, predictions="pred", targets="y")`` works with the evaluator installed."""
    import mlflow
    import pandas as pd

    data = pd.DataFrame({"x": np.arange(20.0), "y": np.arange(20) % 2, "pred": (np.arange(20) // 2) % 2})
    with mlflow.start_run() as run:
        result = mlflow.models.evaluate(data=data, predictions="pred", targets="y", model_type="classifier")
    assert "accuracy_score" in result.metrics
    assert not [key for key in result.metrics if key.startswith(("latency/", "throughput/"))]
    assert "mlperf_track.call" not in mlflow.get_run(run.info.run_id).data.tags


def test_evaluators_none_runs_it_only_with_its_config(tracking: str, evaluator_registered: None) -> None:
    import mlflow
    from sklearn.linear_model import LogisticRegression

    features, labels = _classifier_data()
    classifier = LogisticRegression(max_iter=200).fit(features, labels)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(classifier, name="clf", pip_requirements=["scikit-learn"])
        plain = mlflow.models.evaluate(info.model_uri, features, targets=labels, model_type="classifier")
        asked = mlflow.models.evaluate(
            info.model_uri,
            features,
            targets=labels,
            model_type="classifier",
            evaluator_config={"mlperf_track": {"batch_sizes": [4], "timing": FAST}},
        )
    assert m.LATENCY_P50 not in plain.metrics and "accuracy_score" in plain.metrics
    assert asked.metrics[m.LATENCY_P50] > 0 and "accuracy_score" in asked.metrics


def test_can_evaluate_outside_mlflows_default_selection_says_yes() -> None:
    """Called from MLflow's evaluation loop (the evaluator was named), every model type is claimed."""
    for model_type in (None, "classifier", "regressor", "text"):
        assert MlperfTrackEvaluator.can_evaluate(model_type=model_type, evaluator_config={})


def test_loading_the_evaluator_imports_no_torch() -> None:
    """MLflow imports the evaluator for every ``mlflow.models.evaluate``: the heavy imports wait for ``evaluate``."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = "import sys\nimport mlperf_track.tracking.evaluator\nassert 'torch' not in sys.modules\n"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    command = [sys.executable, "-c", code]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
