"""Files that can run code when loaded are refused unless the user trusts them (``--trust-pickle``).

Three kinds of model file execute something of the file's author while they are read:

- a full-model pickle (``torch.save(model)``), or any checkpoint the safe ``torch.load(weights_only=True)``
  refuses: the unpickler calls whatever the file names (``os.system`` as easily as a model class);
- a TorchScript archive: torch itself refuses it under ``weights_only`` since 2.6 (CVE-2025-32434) and says
  loading it "can result in arbitrary code execution";
- a ``torch.export`` archive (``.pt2``) whose records are pickles: ``torch.export.load`` unpickles weights and
  constants with ``weights_only=False``; or whose symbolic shapes are not plain expressions: it parses each
  ``expr_str`` of the program's JSON with ``sympy.sympify``, which evaluates Python. An archive whose records
  are all JSON with plain shape expressions (:func:`unsafe_shape_expression`), plain text, raw tensor bytes or
  pickles the restricted loader accepts is safe and loads without the flag.

Plain state_dicts and training checkpoints (``torch.load(weights_only=True)``) need nothing. The choice is made
once, where a model is loaded (:func:`mlperf_track.models.registry.load_model` ``trust_pickle=``), and read here
by every loader through a context variable, so model sources keep their small ``load(ref, weights=)`` signature.
Every load that trusted a file is logged as a WARNING and remembered (:func:`unsafe_loads`) so the run is tagged.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import json
import logging
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from mlperf_track import metrics
from mlperf_track.errors import UnsafeFileError

logger = logging.getLogger(__name__)

#: The flag (and, as ``trust_pickle``, the MLproject parameter) that allows files that can run code.
TRUST_FLAG: Final = "--trust-pickle"
#: Tag (on the model and the runs) listing the files loaded with the unsafe loaders.
UNSAFE_LOAD_TAG: Final = metrics.UNSAFE_LOAD_TAG

_TRUSTED: contextvars.ContextVar[bool] = contextvars.ContextVar("mlperf_track_trust_pickle", default=False)
_LOADS: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("mlperf_track_unsafe_loads", default=None)


@contextlib.contextmanager
def trust_pickle(enabled: bool) -> Iterator[list[str]]:
    """Within the block, loaders may (``enabled``) or may not use loaders that run code from files.

    Yields:
        The list the block's unsafe loads are appended to (paths), for tagging.
    """
    loads: list[str] = []
    trusted_token, loads_token = _TRUSTED.set(enabled), _LOADS.set(loads)
    try:
        yield loads
    finally:
        _TRUSTED.reset(trusted_token)
        _LOADS.reset(loads_token)


def pickle_trusted() -> bool:
    """Whether the current load may run code from the file (``--trust-pickle``)."""
    return _TRUSTED.get()


def require_trust(path: Path | str, what: str, reason: str = "") -> None:
    """Refuse to go on unless the user trusts files that run code; log the load as a WARNING when they do.

    Args:
        path: The file.
        what: What it is, for the message (``a full-model pickle``).
        reason: Why the safe loader refused it (one line), when known.

    Raises:
        UnsafeFileError: Without ``--trust-pickle`` (one line naming the flag).
    """
    detail = f" ({reason})" if reason else ""
    if not pickle_trusted():
        raise UnsafeFileError(
            f"refusing to load {path}: it is {what}, which can run code from the file when loaded{detail}; "
            f"if you trust whoever made it, allow it with {TRUST_FLAG} (MLproject: -P trust_pickle=true)"
        )
    logger.warning("loading %s, %s, with a loader that can run code from the file (%s given)", path, what, TRUST_FLAG)
    loads = _LOADS.get()
    if loads is not None:
        loads.append(str(path))


def refused_global(error: BaseException) -> str:
    """What the restricted unpickler refused, in one line (``it imports posix.system``), or ``""``."""
    match = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
    if match:
        return f"it imports {match.group(1)}"
    match = re.search(r"Unsupported operand (\d+)|Unsupported class ([\w.]+)", str(error))
    return f"the safe loader refused: {match.group(0)}" if match else ""


# -- torch.export archives ----------------------------------------------------------------------------------------

#: Metadata records ``torch.export.save`` writes as short plain text.
_TEXT_RECORDS: Final = frozenset({"version", "archive_format", "archive_version", "byteorder", "serialization_id"})
_TEXT_CONTENT = re.compile(r"[A-Za-z0-9._-]{1,64}\n?")
#: Payload configs that say whether a weight or constant record is a pickle (``use_pickle``) or raw bytes.
_PAYLOAD_CONFIG = re.compile(r"(?:^|/)data/(?:weights|constants)/[^/]+_config\.json$")
_RAW_PREFIXES = ("weight_", "tensor_")


#: Names a symbolic shape expression may use: the sympy classes ``torch.export`` prints (``srepr`` of symbols,
#: relations, boolean logic, constants), the ``torch.utils._sympy`` functions its deserializer knows, and
#: sympy's assumption keywords (``Symbol('s77', positive=True, integer=True)``). Any other name fails closed.
_SYMPY_NAMES: Final = frozenset(
    {
        "Symbol", "Integer", "Rational", "Float", "Add", "Mul", "Pow", "Mod", "Max", "Min", "Abs", "floor",
        "ceiling", "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "And", "Or", "Not", "True", "False", "oo", "zoo", "nan",
        "FloorDiv", "ModularIndexing", "Where", "PythonMod", "CleanDiv", "CeilToInt", "FloorToInt", "CeilDiv",
        "LShift", "RShift", "PowByNatural", "FloatPow", "FloatTrueDiv", "IntTrueDiv",
        "IsNonOverlappingAndDenseIndicator", "TruncToFloat", "TruncToInt", "RoundToInt", "RoundDecimal", "ToFloat",
        "Identity",
        "algebraic", "antihermitian", "commutative", "complex", "composite", "even", "extended_negative",
        "extended_nonnegative", "extended_nonpositive", "extended_nonzero", "extended_positive", "extended_real",
        "finite", "hermitian", "imaginary", "infinite", "integer", "irrational", "negative", "noninteger",
        "nonnegative", "nonpositive", "nonzero", "odd", "polar", "positive", "prime", "rational", "real",
        "transcendental", "zero",
    }
)  # fmt: skip
#: A symbol's own name (``s77``, ``u3``, ``zuf0``), bare or quoted inside ``Symbol(...)``.
_SYMBOL_NAME = re.compile(r"[a-z]+[0-9]+\Z")
_QUOTED_SYMBOL = re.compile(r"""(['"])[a-z]+[0-9]+\1\Z""")
#: Operators an arithmetic, relational or boolean expression needs (no attribute access, indexing or lambdas).
_SHAPE_OPERATORS: Final = frozenset(
    {"(", ")", ",", "+", "-", "*", "/", "//", "%", "**", "=", "<", ">", "<=", ">=", "==", "!=", "&", "|", "~"}
)


def unsafe_shape_expression(expression: str) -> str | None:
    """Why ``sympy.sympify`` of a symbolic shape expression could run code, or ``None`` when it is plain.

    Plain: numbers, symbol names, the names of :data:`_SYMPY_NAMES`, a quoted symbol name, and arithmetic,
    relational and boolean operators. Checked token by token (Python's tokenizer, as sympy's parser reads it);
    anything else (another name, a dot, brackets, a string that is not a symbol name) is refused.
    """
    import tokenize

    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(expression).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError) as error:
        return f"it does not parse ({error})"
    for token in tokens:
        kind, text = token.type, token.string
        if kind in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER) or kind == tokenize.NUMBER:
            continue
        if kind == tokenize.NAME and (text in _SYMPY_NAMES or _SYMBOL_NAME.match(text)):
            continue
        if kind == tokenize.STRING and _QUOTED_SYMBOL.match(text):
            continue
        if kind == tokenize.OP and text in _SHAPE_OPERATORS:
            continue
        return f"it uses {text!r}"
    return None


def _unsafe_expressions(data: Any) -> str | None:
    """The first ``expr_str`` in a JSON document that is not a plain shape expression, with the reason."""
    pending = [data]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            expression = item.get("expr_str")
            if expression is not None:
                reason = unsafe_shape_expression(expression) if isinstance(expression, str) else "it is not text"
                if reason is not None:
                    return f"{str(expression)[:60]!r}: {reason}"
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return None


def _json(content: bytes) -> tuple[bool, Any]:
    try:
        return True, json.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return False, None


def _raw_tensor_records(configs: dict[str, bytes]) -> set[str]:
    """Records the archive's payload configs declare as raw tensor bytes (never unpickled by the loader)."""
    raw: set[str] = set()
    pickled: set[str] = set()
    for name, content in configs.items():
        ok, data = _json(content)
        entries = data.get("config") if ok and isinstance(data, dict) else None
        if not isinstance(entries, dict):
            continue
        folder = name.rsplit("/", 1)[0]
        for entry in entries.values():
            path_name = entry.get("path_name") if isinstance(entry, dict) else None
            if not isinstance(path_name, str) or "/" in path_name:
                continue
            record = f"{folder}/{path_name}"
            if entry.get("use_pickle") is False and path_name.startswith(_RAW_PREFIXES):
                raw.add(record)
            else:
                pickled.add(record)
    return raw - pickled


def _safe_record(name: str, content: bytes) -> bool:
    import torch

    if name.rsplit("/", 1)[-1] in _TEXT_RECORDS and _TEXT_CONTENT.fullmatch(content.decode("ascii", "replace")):
        return True
    is_json, data = _json(content)
    if is_json:
        reason = _unsafe_expressions(data)
        if reason is not None:
            logger.warning("%s holds a symbolic shape sympy would evaluate as code: %s", name, reason)
        return reason is None
    try:  # the restricted unpickler (torch >= 2.10 closes the known weights_only escapes)
        torch.load(io.BytesIO(content), map_location="cpu", weights_only=True)
    except Exception:
        return False
    return True


def unsafe_export_record(path: Path) -> str | None:
    """The first record of a ``torch.export`` archive that ``torch.export.load`` would run code from.

    Fails closed: a record that is not JSON with plain shape expressions, short text, declared raw tensor bytes,
    or a pickle the restricted loader accepts (AOTInductor libraries, custom objects, crafted pickles, a shape
    expression that is Python code) is named. MLflow's check of ``pt2`` models when
    ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` is false covers the pickles, not the shapes; written here because the
    models layer may not import mlflow and torch offers no such check.

    Returns:
        The record's name, or ``None`` when every record is safe.
    """
    with zipfile.ZipFile(path) as archive:
        infos = [info for info in archive.infolist() if not info.is_dir()]
        configs = {info.filename: archive.read(info) for info in infos if _PAYLOAD_CONFIG.search(info.filename)}
        raw = _raw_tensor_records(configs)
        for info in infos:
            if info.filename not in raw and not _safe_record(info.filename, archive.read(info)):
                return info.filename
    return None
