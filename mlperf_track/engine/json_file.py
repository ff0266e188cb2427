"""JSON text and files for result records that know their own ``to_dict``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class JsonRecord:
    """Mixin: :meth:`to_json` and :meth:`write_json` from the subclass's ``to_dict``."""

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def to_json(self, indent: int | None = 2) -> str:
        """The record as a JSON string."""
        return json.dumps(self.to_dict(), indent=indent)

    def write_json(self, path: str | Path) -> Path:
        """Write :meth:`to_json` to ``path`` and return the path."""
        target = Path(path)
        target.write_text(self.to_json(), encoding="utf-8")
        return target
