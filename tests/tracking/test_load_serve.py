"""Load over HTTP against a real ``mlflow models serve`` of a logged scikit-learn model, and its failure modes."""

from __future__ import annotations

import socket
from pathlib import Path

import mlflow
import numpy as np
import pytest
import sklearn
from sklearn.linear_model import LogisticRegression

from mlperf_track import metrics as m
from mlperf_track.cli import main
from mlperf_track.errors import ConfigError
from mlperf_track.tracking.serve import ModelServer, ServeError, check_port_free, input_rows


def _log_classifier() -> str:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 6))
    labels = (features[:, 0] + features[:, 1] > 0).astype(int)
    with mlflow.start_run(run_name="classifier"):
        info = mlflow.sklearn.log_model(
            LogisticRegression().fit(features, labels),
            name="model",
            input_example=features[:3],
            pip_requirements=[f"scikit-learn=={sklearn.__version__}"],
        )
    return info.model_uri


@pytest.mark.integration
def test_load_against_mlflow_models_serve_of_a_sklearn_model(tracking: str) -> None:
    uri = _log_classifier()
    rows, columns = input_rows(uri)
    assert len(rows) == 3 and len(rows[0]) == 6 and columns == ()
    code = main(
        [
            "load", "--serve", uri, "--scenario", "concurrency", "--concurrency", "2", "--workers", "2",
            "--min-duration", "1", "--min-queries", "60", "--no-early-stopping", "--health-timeout", "90",
            "--experiment", f"serve-{tracking}", "--trust-pickle",
        ]
    )  # fmt: skip
    assert code == 0
    parent = mlflow.search_runs(
        experiment_names=[f"serve-{tracking}"], filter_string="tags.`mlperf_track.role` = 'load'", output_format="list"
    )[0]
    assert parent.data.tags["load.served_model"] == uri and parent.info.status == "FINISHED"
    child = mlflow.search_runs(
        experiment_names=[f"serve-{tracking}"],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
        output_format="list",
    )[0]
    metrics = child.data.metrics
    assert metrics[m.LOAD_COMPLETED] >= 60 and metrics[m.LOAD_ERRORS] == 0
    assert metrics[m.LOAD_CONNECTION_ERRORS] == 0 and metrics[m.LOAD_HTTP_ERRORS] == 0
    assert metrics[m.LOAD_COMPUTE_P50] > 0  # end to end: serialization, HTTP and the model
    assert child.data.tags["load.target"] == "http"
    port = int(child.data.tags["load.url"].rsplit(":", 1)[1])
    assert check_port_free(port) == port  # the server was stopped


@pytest.mark.integration
def test_a_server_that_cannot_start_fails_in_one_line(tmp_path: Path) -> None:
    server = ModelServer(str(tmp_path / "no-model-here"), health_timeout_s=60)
    with pytest.raises(ServeError, match="exited with code"):
        server.start()
    assert server.process is None


@pytest.mark.integration
def test_a_server_that_is_not_healthy_in_time_is_stopped(tmp_path: Path) -> None:
    server = ModelServer(str(tmp_path / "no-model-here"), health_timeout_s=0.05)
    with pytest.raises(ServeError, match=r"did not become healthy within 0\.05 s"):
        server.start()
    assert server.process is None
    assert check_port_free(server.port) == server.port


def test_a_port_in_use_is_refused_before_anything_starts() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError) as error:
            ModelServer("models:/anything/1", port=port)
    assert error.value.parameter == "--port" and "in use" in str(error.value)
