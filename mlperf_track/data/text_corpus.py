"""Text that ships with Python, so language models get real quality numbers offline.

- :func:`pydoc_topics`: the Python language reference topics of ``pydoc_data.topics`` (79 topics, about 465k
  characters of English prose and code), the corpus the decoders are trained and scored on.
- :func:`docstring_task`: a labelled classification task for encoders: docstrings of eight standard-library
  packages, labelled by package (``asyncio``, ``email``, ``http``, ...). Why this task: it ships with every
  CPython (read from the ``.py`` sources with :mod:`ast`, so nothing is imported and no module runs), its
  classes are topics a model must read the text to tell apart (networking vs e-mail vs logging), it has a few
  hundred documents per class, and a package missing from a trimmed Python (Debian splits some off) only
  removes its class.

Splits are by document (a run of paragraphs of a topic, a docstring), never inside one, so no text is both
trained on and scored.
"""

from __future__ import annotations

import ast
import hashlib
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from mlperf_track.errors import DataError

#: The packages whose docstrings make the classification task (each present in CPython 3.11-3.13).
DOCSTRING_PACKAGES: Final = ("asyncio", "email", "http", "importlib", "logging", "unittest", "urllib", "xml")
#: Docstrings shorter than this many characters are left out (one-line "Return x." says little).
MIN_DOCSTRING_CHARS: Final = 40
#: Shares of the documents in the holdout (early stopping) and evaluation splits.
HOLDOUT_FRACTION: Final = 0.1
EVAL_FRACTION: Final = 0.15
#: A pydoc topic is cut into documents of consecutive paragraphs of at least this many characters, so that the
#: splits get their shares of the text (the topics range from 200 characters to 40k).
CORPUS_CHUNK_CHARS: Final = 2000
SPLITS: Final = ("train", "holdout", "eval")


@dataclass(frozen=True)
class Document:
    """One document: its text, its label (a class index, or -1 when unlabelled) and where it came from."""

    text: str
    label: int
    origin: str


def _rank(origin: str, seed: int) -> float:
    """A stable pseudo-random number in [0, 1) for a document (the same on every machine and Python)."""
    digest = hashlib.sha256(f"{seed}:{origin}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(origin: str, seed: int) -> str:
    """``train``, ``holdout`` or ``eval`` for a document, by a seeded hash of its origin."""
    rank = _rank(origin, seed)
    if rank < EVAL_FRACTION:
        return "eval"
    if rank < EVAL_FRACTION + HOLDOUT_FRACTION:
        return "holdout"
    return "train"


def _chunks(text: str) -> list[str]:
    chunks, current = [], ""
    for paragraph in text.split("\n\n"):
        current = f"{current}\n\n{paragraph}" if current else paragraph
        if len(current) >= CORPUS_CHUNK_CHARS:
            chunks.append(current)
            current = ""
    if current:
        chunks.append(current)
    return chunks


def pydoc_topics() -> list[Document]:
    """The topics of ``pydoc_data.topics``, sorted by name, cut into documents of whole paragraphs (unlabelled).

    Raises:
        DataError: This Python has no ``pydoc_data`` (a trimmed install).
    """
    try:
        from pydoc_data.topics import topics
    except ImportError as error:
        raise DataError("this Python has no pydoc_data.topics, the offline text corpus") from error
    return [
        Document(text=chunk, label=-1, origin=f"pydoc:{name}:{index}")
        for name in sorted(topics)
        for index, chunk in enumerate(_chunks(str(topics[name])))
    ]


def _docstrings(path: Path) -> list[str]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            text = ast.get_docstring(node)
            if text and len(text) >= MIN_DOCSTRING_CHARS:
                found.append(text)
    return found


def _package_files(root: Path) -> list[Path]:
    files = (path for path in root.rglob("*.py") if path.name != "__main__.py")
    return sorted(path for path in files if not any(part.startswith("test") for part in path.relative_to(root).parts))


def docstring_task(packages: tuple[str, ...] = DOCSTRING_PACKAGES) -> tuple[list[Document], list[str]]:
    """Docstrings of ``packages``' standard-library sources, labelled by package index.

    Returns:
        ``(documents, class_names)``; a package this Python lacks is left out (and so is its class).

    Raises:
        DataError: Fewer than two packages have docstrings here.
    """
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    documents: list[Document] = []
    names: list[str] = []
    for package in packages:
        root = stdlib / package
        texts = [(path, text) for path in _package_files(root) for text in _docstrings(path)] if root.is_dir() else []
        if not texts:
            continue
        label = len(names)
        names.append(package)
        for index, (path, text) in enumerate(texts):
            documents.append(Document(text, label, f"{package}:{path.relative_to(root)}:{index}"))
    if len(names) < 2:
        raise DataError(f"the standard library sources under {stdlib} hold docstrings of {len(names)} of {packages}")
    return documents, names


def corpus_digest(documents: list[Document]) -> str:
    """A short digest of the documents' texts (keys caches: another Python version has other text)."""
    digest = hashlib.sha256()
    for document in documents:
        digest.update(document.origin.encode())
        digest.update(document.text.encode())
    return digest.hexdigest()[:12]
