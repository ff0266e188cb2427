"""``notebooks/analysis.ipynb`` runs top to bottom (nbclient) against an experiment made in the test."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "analysis.ipynb"


def _factory() -> ModuleType:
    """The report tests' experiment factory (tests are not a package, so load it by path)."""
    path = ROOT / "tests" / "report" / "report_experiment_factory.py"
    spec = importlib.util.spec_from_file_location("report_experiment_factory", path)
    assert spec is not None and spec.loader is not None
    module = sys.modules.get(spec.name)
    if module is None:
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
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


@pytest.mark.slow
def test_analysis_notebook_runs_top_to_bottom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    factory = _factory()
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    factory.create_experiment(uri, "notebook", tmp_path / "artifacts", machines=(factory.MACHINE_A, factory.MACHINE_B))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLPERF_TRACK_EXPERIMENT", "notebook")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    images = _outputs(notebook, "image/png")
    assert len(images) >= 4  # trade-off, batch scaling, variants, latency distributions
    text = "\n".join(_outputs(notebook, "text/plain"))
    assert "18 measured cases on 2 machine(s); 1 failed run(s)" in text
    assert "quantized/onnxruntime/fp32" in text
