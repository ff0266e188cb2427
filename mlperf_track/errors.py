"""The exception tree of mlperf_track.

Every error the package raises on purpose derives from :class:`MlperfTrackError`, so callers can catch one
root. Messages are one line and say how to fix the problem::

    MlperfTrackError
    ├── ConfigError            bad user input: names the parameter, the value and what is allowed
    │   └── UnsupportedError   a valid value that this device/runtime/precision combination cannot run
    ├── MissingDependencyError an optional package is not installed: names the pip extra
    ├── DeviceError            the requested device is absent (``--device cuda`` without a GPU)
    ├── ModelLoadError         a model or its weights could not be loaded
    │   └── UnsafeFileError    a file that would run code when loaded, refused without --trust-pickle
    ├── DataError              a dataset is missing, empty or malformed
    ├── ExportError            export/compile/engine build failed (names the operator when known)
    ├── MeasurementError       the benchmark itself failed
    │   └── OutOfMemoryError   the case ran out of (device or host) memory
    └── StorageError           a tracking or study storage cannot be reached

This module imports nothing from the package.
"""

from __future__ import annotations

from collections.abc import Iterable


def _format_allowed(allowed: str | Iterable[object] | None) -> str:
    if allowed is None:
        return ""
    if isinstance(allowed, str):
        return allowed
    return "one of " + ", ".join(str(item) for item in allowed)


class MlperfTrackError(Exception):
    """Root of every error raised on purpose by mlperf_track."""

    #: Process exit code the CLI uses for this error.
    exit_code: int = 1


class ConfigError(MlperfTrackError, ValueError):
    """A user-supplied value is invalid.

    Args:
        parameter: The parameter or field name as the user typed it (``batch_size``, ``--precision``).
        value: The offending value.
        allowed: What is allowed: a sentence, or an iterable of allowed values.
        hint: Optional extra sentence (e.g. the closest matches).
    """

    exit_code = 2

    def __init__(
        self,
        parameter: str,
        value: object,
        allowed: str | Iterable[object] | None = None,
        hint: str | None = None,
    ) -> None:
        self.parameter = parameter
        self.value = value
        self.allowed = _format_allowed(allowed)
        self.hint = hint
        message = f"invalid {parameter}={value!r}"
        if self.allowed:
            message += f": allowed is {self.allowed}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)


class UnsupportedError(ConfigError):
    """A valid value that cannot run in this combination (e.g. fp16 on the ONNX Runtime CPU provider)."""


class MissingDependencyError(MlperfTrackError, ImportError):
    """An optional dependency is not installed.

    Args:
        package: The import name that failed (``onnxruntime``).
        extra: The pip extra that installs it (``onnx``).
        purpose: What needed it (``the onnxruntime runtime``).
    """

    exit_code = 2

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"{purpose} needs the package {package!r}, which is not installed: pip install 'mlperf-track[{extra}]'"
        )


class DeviceError(MlperfTrackError):
    """The requested device is not present on this machine."""

    exit_code = 2


class ModelLoadError(MlperfTrackError):
    """A model, its weights or a model file could not be loaded."""

    exit_code = 2


class UnsafeFileError(ModelLoadError):
    """A model or weights file that can run code when loaded (a pickle, TorchScript), refused by default."""


class DataError(MlperfTrackError):
    """A dataset is missing, empty or malformed."""

    exit_code = 2


class ExportError(MlperfTrackError):
    """Exporting, compiling or building an engine for a model failed."""


class MeasurementError(MlperfTrackError):
    """The benchmark of a case failed."""


class OutOfMemoryError(MeasurementError):
    """A case ran out of device or host memory."""


class StorageError(MlperfTrackError):
    """A tracking store or an Optuna storage cannot be reached or used."""

    exit_code = 2


def describe_error(error: BaseException, limit: int = 200) -> str:
    """``Type: first line of the message`` (at most ``limit`` characters of it), for one-line warnings."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:limit]}" if text else type(error).__name__
