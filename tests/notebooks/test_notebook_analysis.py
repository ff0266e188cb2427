"""``notebooks/analysis.ipynb`` runs top to bottom (nbclient) on an experiment as users fill it, and creates
nothing when it finds no tracking store."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "analysis.ipynb"


def _load(name: str) -> ModuleType:
    """A helper module of the report tests (tests are not a package, so load it by path)."""
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "report" / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the class is made
        spec.loader.exec_module(module)
    return module


def _outputs(notebook: nbformat.NotebookNode, kind: str) -> list[str]:
    found = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if kind in data:
                found.append(data[kind])
            elif kind == "text/plain" and output.get("output_type") == "stream":
                found.append(output.get("text", ""))
    return found


def _execute(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> nbformat.NotebookNode:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
    )
    client.execute()
    return notebook


@pytest.fixture
def mixed_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two models, a tune with trials, an evaluator run, a killed pipeline: ``mlflow.db`` in ``tmp_path``."""
    import mlflow
    from mlflow.tracking import fluent
    from mlflow.tracking._tracking_service import utils

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for name in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID", "MLPERF_TRACK_EXPERIMENT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    saved = utils._tracking_uri
    mlflow.set_tracking_uri(uri)
    try:
        _load("mixed_experiment").create_mixed_experiment("mlperf_track/mixed")
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
        fluent._active_experiment_id = None
        mlflow.set_tracking_uri(saved)  # type: ignore[arg-type]  # None unsets it (MLflow allows it)
    return tmp_path


@pytest.mark.slow
def test_analysis_notebook_runs_on_a_real_experiment(mixed_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The notebook finds the commands' default store, mlflow.db, in a folder above it, as from notebooks/.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLPERF_TRACK_EXPERIMENT", "mlperf_track")  # a prefix: every mlperf_track/<model>
    workdir = mixed_store / "notebooks"
    workdir.mkdir()
    notebook = _execute(workdir, monkeypatch)
    assert len(_outputs(notebook, "image/png")) >= 4  # trade-off, batch scaling, speed-ups, latency violins
    text = "\n".join(_outputs(notebook, "text/plain"))
    assert f"sqlite:///{(mixed_store / 'mlflow.db').as_posix()}" in text
    assert "69 measured cases in 3 question(s) on 1 machine(s); 7 failed or killed case run(s)" in text
    assert "'tuning trial': 6" in text and "'evaluator': 1" in text and "'tune': 1" in text
    for question in ("resnet18 · 32 px · digits", "resnet18 · 64 px · digits", "tinycnn · 32 px · digits"):
        assert f"## {question}\nShip quantized/onnxruntime/int8 at batch 32" in text
    speedups = [output for output in _outputs(notebook, "text/plain") if "speedup" in output][-1]
    # int8 against the fp32 model of the same runtime: onnxruntime 3.1/1.5, eager 2.4/1.0.
    assert "quantized/onnxruntime/int8" in speedups and "2.067" in speedups
    assert "quantized/eager/int8" in speedups and "2.4" in speedups
    assert "NaN" not in speedups


@pytest.mark.slow
def test_notebook_creates_nothing_when_it_finds_no_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MLFLOW_TRACKING_URI", "MLPERF_TRACK_EXPERIMENT"):
        monkeypatch.delenv(name, raising=False)
    workdir = tmp_path / "a" / "b" / "c"
    workdir.mkdir(parents=True)
    with pytest.raises(CellExecutionError, match=r"no mlflow\.db in this folder"):
        _execute(workdir, monkeypatch)
    missing = tmp_path / "nothing" / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{missing}")
    with pytest.raises(CellExecutionError, match="names a file that does not exist"):
        _execute(workdir, monkeypatch)
    assert [path for path in tmp_path.rglob("*") if path.is_file()] == []
