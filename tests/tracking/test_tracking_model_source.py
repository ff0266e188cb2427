"""``models:/``, ``runs:/`` and local MLflow model directories as model references."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from tracking_helpers import isolated_mlflow, tiny_module

from mlperf_track.errors import ConfigError, ModelLoadError
from mlperf_track.models.registry import load_model, resolve_source
from mlperf_track.tracking.model_source import MlflowModelSource


@pytest.fixture(scope="module")
def logged(tracking_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A tiny PyTorch model logged (pt2), registered as ``tiny-src`` v1 with alias ``champion``, downloaded to
    a folder; and a scikit-learn model (no PyTorch flavour)."""
    import mlflow
    from sklearn.linear_model import LogisticRegression

    uri = f"sqlite:///{tracking_root / 'mlruns.db'}"
    with isolated_mlflow(uri, "model-source", tracking_root):
        example = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
        with mlflow.start_run() as run:
            info = mlflow.pytorch.log_model(
                tiny_module(),
                name="model",
                input_example=example,
                serialization_format="pt2",
                pip_requirements=["torch"],
                registered_model_name="tiny-src",
            )
            features = np.random.default_rng(0).standard_normal((20, 4))
            classifier = LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))
            sk_info = mlflow.sklearn.log_model(classifier, name="sk", pip_requirements=["scikit-learn"])
        mlflow.MlflowClient().set_registered_model_alias("tiny-src", "champion", "1")
        folder = mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp_path_factory.mktemp("m")))
        yield {"run": f"runs:/{run.info.run_id}/model", "dir": folder, "sklearn": sk_info.model_uri}


def test_matches_uris_and_model_directories(tmp_path: Path) -> None:
    source = MlflowModelSource()
    assert source.matches("models:/x/1") and source.matches("models:/x@prod") and source.matches("runs:/abc/model")
    assert not source.matches("resnet18") and not source.matches(str(tmp_path))
    (tmp_path / "MLmodel").write_text("flavors: {}\n", encoding="utf-8")
    assert source.matches(str(tmp_path))
    assert resolve_source("models:/x/1").name == "mlflow"


@pytest.mark.parametrize("kind", ["run", "version", "alias", "dir"])
def test_loads_the_module(kind: str, logged: dict[str, str], tracking: str) -> None:
    ref = {
        "run": logged["run"],
        "version": "models:/tiny-src/1",
        "alias": "models:/tiny-src@champion",
        "dir": logged["dir"],
    }[kind]
    loaded = load_model(ref)
    assert loaded.source == "mlflow" and loaded.name == ref
    assert loaded.num_classes == 3 and loaded.default_image_size == 8
    assert "pytorch" in loaded.tags["mlflow.flavors"]
    example = torch.randn(4, 3, 8, 8)
    torch.testing.assert_close(loaded.module(example), tiny_module()(example))


def test_refuses_a_model_without_pytorch_flavour(logged: dict[str, str], tracking: str) -> None:
    with pytest.raises(ModelLoadError, match="evaluators='mlperf_track'"):
        load_model(logged["sklearn"])


def test_missing_model_and_weights(logged: dict[str, str], tracking: str) -> None:
    with pytest.raises(ModelLoadError, match="cannot read"):
        load_model("models:/no-such-model/7")
    with pytest.raises(ConfigError, match="weights"):
        load_model(logged["run"], weights="w.pth")


@pytest.mark.parametrize("kind", ["run", "version"])
def test_a_fresh_process_loads_mlflow_uris_without_importing_tracking_first(
    kind: str, logged: dict[str, str], tracking_root: Path
) -> None:
    """What ``mlperf-track bench --model models:/...`` does: resolve the URI through the model registry alone."""
    import os
    import subprocess
    import sys

    ref = {"run": logged["run"], "version": "models:/tiny-src/1"}[kind]
    code = (
        "import sys\n"
        "from mlperf_track.models.registry import load_model\n"
        "assert 'mlperf_track.tracking' not in sys.modules\n"
        f"loaded = load_model({ref!r})\n"
        "assert loaded.source == 'mlflow' and loaded.num_classes == 3, loaded\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tracking_root / 'mlruns.db'}",
    }
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
