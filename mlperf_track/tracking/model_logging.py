"""Log a model artifact as an MLflow PyTorch model.

The model is saved in MLflow's ``pt2`` format (``torch.export``): loading it unpickles nothing, and the
pyfunc flavour is kept because the input example is a NumPy array. The batch dimension is exported as
dynamic (the example holds two samples; ``torch.export`` fixes size-1 dimensions). A model that
``torch.export`` cannot trace is saved with cloudpickle instead, which needs
``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true`` to load again; the returned note says so.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlperf_track.models.artifact import ModelArtifact

logger = logging.getLogger(__name__)

#: Name of the baseline model on the parent run.
BASELINE_MODEL_NAME = "baseline"
#: Samples in the input example (2, so that the batch dimension stays dynamic).
EXAMPLE_BATCH = 2


def _pip_requirements() -> list[str]:
    """Pinned requirements of a logged model (explicit, so MLflow skips its slow inference subprocess)."""
    import mlflow
    import torch
    import torchvision

    return [
        f"torch=={torch.__version__.split('+')[0]}",
        f"torchvision=={torchvision.__version__.split('+')[0]}",
        f"mlflow=={mlflow.__version__}",
    ]


def log_baseline_model(artifact: ModelArtifact, run_id: str, name: str = BASELINE_MODEL_NAME) -> str | None:
    """Log ``artifact.module`` as an MLflow PyTorch model on ``run_id``.

    Args:
        artifact: The model; only its PyTorch module is logged.
        run_id: The run that owns the model.
        name: The model's name in the run.

    Returns:
        ``None`` when logged in ``pt2`` format, else a note saying what happened (pickle fallback, no module,
        or why logging failed). Logging a model never raises: the measurements matter more.
    """
    import mlflow.pytorch
    import numpy as np
    import torch

    module = artifact.module
    if module is None:
        return f"{artifact.name} has no PyTorch module (ONNX only); no MLflow model logged"
    module.eval()
    rng = np.random.default_rng(0)
    example = rng.standard_normal((EXAMPLE_BATCH, *artifact.input_shape)).astype(np.float32)
    common = {
        "name": name,
        "input_example": example,
        "pip_requirements": _pip_requirements(),
        "tags": {f"mlperf_track.{key}": str(value) for key, value in artifact.tags.items()},
        "run_id": run_id,
    }
    try:
        with torch.inference_mode(False), torch.no_grad():
            mlflow.pytorch.log_model(module, serialization_format="pt2", **common)
        return None
    except Exception as error:
        logger.warning("torch.export of %s failed (%s); logging it with cloudpickle", artifact.name, error)
        export_error = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    try:
        mlflow.pytorch.log_model(module, serialization_format="pickle", **common)
    except Exception as error:
        logger.warning("could not log %s as an MLflow model: %s", artifact.name, error)
        return f"baseline model not logged: {type(error).__name__}: {error}"
    return (
        f"logged with cloudpickle because torch.export failed ({export_error}); "
        "load it with MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true"
    )
