"""Regenerate the generated tables of docs/architecture.md (the option table and the --option keys).

PYTHONPATH=. python scripts/update_docs.py        # rewrite the blocks between the markers
PYTHONPATH=. python scripts/update_docs.py --check # exit 1 when they are out of date (CI runs the test instead)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from mlperf_track.cli.option_docs import markdown_table, option_keys_table

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"
#: Marker name -> the function that renders the block.
BLOCKS: dict[str, Callable[[], str]] = {"options": markdown_table, "option-keys": option_keys_table}


def render(text: str) -> str:
    """``text`` with every generated block replaced by its current rendering."""
    for name, make in BLOCKS.items():
        begin, end = f"<!-- generated:{name} -->", f"<!-- /generated:{name} -->"
        head, found, rest = text.partition(begin)
        if not found or end not in rest:
            raise SystemExit(f"{DOC} lacks the markers {begin} ... {end}")
        text = f"{head}{begin}\n{make()}\n{end}{rest.split(end, 1)[1]}"
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 when out of date")
    args = parser.parse_args()
    current = DOC.read_text(encoding="utf-8")
    updated = render(current)
    if args.check:
        return 0 if updated == current else 1
    DOC.write_text(updated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
