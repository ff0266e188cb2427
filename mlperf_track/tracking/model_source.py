"""Models stored in MLflow: ``models:/name/version``, ``models:/name@alias``, ``runs:/<id>/<path>`` and local
MLflow model directories (a folder holding an ``MLmodel`` file).

A model with the PyTorch flavour loads natively (``mlflow.pytorch.load_model`` gives the ``nn.Module``) and
runs through the whole pipeline. A model MLflow stored as a pickle (``serialization_format="pickle"``, or a
``pt2`` archive with pickled records or code in a symbolic shape) runs code from the file when loaded: it is
refused unless the load trusts pickles (``--trust-pickle``, see :mod:`mlperf_track.models.safety`). The
pipeline needs a module to export, quantize and compile, so a model without the PyTorch flavour (scikit-learn,
a custom pyfunc) is refused here with a pointer to the path that does work for it: ``mlflow.models.evaluate(uri,
data, evaluators="mlperf_track")``, which times pyfunc ``predict`` (see :mod:`mlperf_track.tracking.evaluator`).

The model registry knows this source by name (:class:`mlperf_track.models.registry.DeferredSource`) and
imports this module when such a reference is loaded; mlflow itself is imported only then. URIs resolve against
``MLFLOW_TRACKING_URI``, else against ``sqlite:///mlflow.db`` in the working directory (where ``mlperf-track run``
logs).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlperf_track.errors import ConfigError, ModelLoadError
from mlperf_track.models.base import LoadedModel, ModelSource
from mlperf_track.tracking.setup import default_tracking_uri

if TYPE_CHECKING:
    from mlflow.models import Model

logger = logging.getLogger(__name__)

#: URI schemes this source claims.
URI_PREFIXES = ("models:/", "runs:/")


def is_mlflow_model_dir(ref: str) -> bool:
    """Whether ``ref`` is a local directory holding an ``MLmodel`` file."""
    try:
        path = Path(ref).expanduser()
        return path.is_dir() and (path / "MLmodel").is_file()
    except OSError:
        return False


def _shape_facts(model: Model) -> tuple[int | None, int | None]:
    """``(num_classes, image_size)`` from a tensor signature ``(-1, C, H, W) -> (-1, classes)``, when known."""
    signature = model.signature
    if signature is None:
        return None, None
    num_classes = image_size = None
    try:
        if signature.inputs is not None and signature.inputs.is_tensor_spec():
            shape = signature.inputs.inputs[0].shape
            if len(shape) == 4 and shape[2] == shape[3] and shape[2] > 0:
                image_size = int(shape[2])
        if signature.outputs is not None and signature.outputs.is_tensor_spec():
            shape = signature.outputs.inputs[0].shape
            if len(shape) == 2 and shape[1] > 0:
                num_classes = int(shape[1])
    except (AttributeError, IndexError, TypeError):
        logger.debug("unusual signature %s", signature)
    return num_classes, image_size


class MlflowModelSource(ModelSource):
    """Loads PyTorch-flavoured MLflow models from the registry, a run, or a local model directory."""

    name = "mlflow"

    def matches(self, ref: str) -> bool:
        """``models:/...``, ``runs:/...`` or a local MLflow model directory."""
        return ref.startswith(URI_PREFIXES) or is_mlflow_model_dir(ref)

    def load(self, ref: str, *, weights: str | None = None) -> LoadedModel:
        """Load the model's PyTorch flavour onto the CPU.

        Raises:
            ConfigError: ``weights`` was given (an MLflow model carries its weights).
            ModelLoadError: The model does not exist, has no PyTorch flavour, or cannot be deserialized.
        """
        import mlflow
        from mlflow.exceptions import MlflowException
        from mlflow.models import Model

        if weights:
            raise ConfigError("weights", weights, "nothing for an MLflow model", hint="the model carries its weights")
        if ref.startswith(URI_PREFIXES) and not os.environ.get("MLFLOW_TRACKING_URI"):
            # the same store `mlperf-track run` logs to (MLflow's own default would be ./mlflow.db)
            mlflow.set_tracking_uri(default_tracking_uri())
        start = time.perf_counter()
        try:
            metadata = Model.load(ref)
        except (MlflowException, OSError) as error:
            raise ModelLoadError(f"cannot read the MLflow model {ref}: {_message(error)}") from None
        flavors = sorted(metadata.flavors)
        if "pytorch" not in metadata.flavors:
            raise ModelLoadError(
                f"{ref} has no PyTorch flavour (flavours: {', '.join(flavors)}), and the pipeline needs a torch "
                f"module; measure it with mlflow.models.evaluate({ref!r}, data, evaluators='mlperf_track')"
            )
        module = _load_pytorch(ref)
        module = module.to("cpu")
        try:
            module.eval()
        except (NotImplementedError, RuntimeError):  # torch.export modules refuse .eval(); they run as exported
            logger.debug("%s cannot switch to eval mode; running it as exported", ref)
        load_s = time.perf_counter() - start
        num_classes, image_size = _shape_facts(metadata)
        tags = {"mlflow.flavors": ",".join(flavors)}
        if metadata.model_uuid:
            tags["mlflow.model_uuid"] = metadata.model_uuid
        return LoadedModel(
            module=module,
            name=ref,
            source=self.name,
            load_s=load_s,
            weights=f"mlflow:{ref}",
            num_classes=num_classes,
            default_image_size=image_size,
            tags=tags,
        )


#: What MLflow says when it refuses a pickled model (``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false``).
_PICKLE_REFUSED = "Deserializing model using pickle is disallowed"


@contextlib.contextmanager
def _pickle_deserialization(allowed: bool) -> Iterator[None]:
    """Set MLflow's own guard (``MLFLOW_ALLOW_PICKLE_DESERIALIZATION``, default true) for one load."""
    name = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"
    saved = os.environ.get(name)
    os.environ[name] = "true" if allowed else "false"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved


def _load_pytorch(ref: str) -> Any:
    """``mlflow.pytorch.load_model`` with files that run code refused unless the load trusts them (``--trust-pickle``).

    A model in the tracking store or registry is downloaded once into a temporary folder and loaded from there (a
    local model directory is read in place). Its ``torch.export`` archives (``pt2`` format) are checked first with
    :func:`~mlperf_track.models.safety.unsafe_export_record`: MLflow's own check looks for pickled records only,
    while ``torch.export.load`` also evaluates the program's symbolic shapes with ``sympy.sympify``. MLflow refuses
    a pickle-format model when its guard is on; a refused model is loaded again with the guard off only when the
    user trusts it (logged and tagged).
    """
    import tempfile

    import mlflow.artifacts
    import mlflow.pytorch
    from mlflow.exceptions import MlflowException

    from mlperf_track.models.safety import require_trust, unsafe_export_record

    with tempfile.TemporaryDirectory(prefix="mlperf-track-model-") as folder:
        local = ref
        if not Path(ref).is_dir():  # a local model directory is read where it is, not copied
            try:
                local = mlflow.artifacts.download_artifacts(artifact_uri=ref, dst_path=folder)
            except (MlflowException, OSError) as error:
                raise ModelLoadError(f"cannot download the MLflow model {ref}: {_message(error)}") from None
        for archive in sorted(Path(local).rglob("*.pt2")):
            record = unsafe_export_record(archive)
            if record is not None:
                require_trust(ref, "an MLflow model whose torch.export archive runs code when read", f"record {record}")
        try:
            with _pickle_deserialization(allowed=False):
                return mlflow.pytorch.load_model(local)
        except MlflowException as error:
            if _PICKLE_REFUSED not in str(error):
                raise ModelLoadError(f"cannot load the PyTorch model {ref}: {_message(error)}") from None
        require_trust(ref, "an MLflow model stored as a pickle")
        try:
            with _pickle_deserialization(allowed=True):
                return mlflow.pytorch.load_model(local)
        except MlflowException as error:
            raise ModelLoadError(f"cannot load the PyTorch model {ref}: {_message(error)}") from None


def _message(error: BaseException) -> str:
    text = getattr(error, "message", None) or str(error)
    return str(text).splitlines()[0] if text else type(error).__name__
