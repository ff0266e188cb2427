"""The generated tables of ``docs/architecture.md``: the command options and the runtime/variant option keys.

``scripts/update_docs.py`` writes them between markers; a test keeps the file equal to what these render.
"""

from __future__ import annotations

from typing import Any

from mlperf_track.cli.options import COMMANDS, OPTIONS


def markdown_table() -> str:
    """The option table of ``docs/architecture.md`` (a test keeps the two equal)."""
    lines = [
        "| flag (MLproject parameter) | default | commands | meaning |",
        "|---|---|---|---|",
    ]
    for option in OPTIONS:
        commands = [command for command in COMMANDS if command in option.commands]
        defaults = {option.default_for(command) for command in commands}
        if len(defaults) == 1:
            default = f"`{defaults.pop()}`" if option.default is not None else "required"
        else:
            by_default: dict[str | None, list[str]] = {}
            for command in commands:
                by_default.setdefault(option.default_for(command), []).append(command)
            default = "; ".join(f"`{value}` ({', '.join(users)})" for value, users in by_default.items())
        flag = f"`{option.flag}`" + (f" (`{option.name}`)" if option.in_mlproject else "")
        lines.append(f"| {flag} | {default} | {', '.join(commands)} | {option.help} |")
    return "\n".join(lines)


def option_keys_table() -> str:
    """The ``--option`` keys every registered runtime and variant declares, for ``docs/architecture.md``."""
    from mlperf_track.runtimes.registry import get_runtime, runtime_names
    from mlperf_track.variants.registry import get_variant, variant_names

    declared = [(name, get_runtime(name).accepted_options) for name in runtime_names()]
    declared += [(name, get_variant(name).accepted_options) for name in variant_names() if "+" not in name]
    rows: dict[str, tuple[Any, list[str]]] = {}
    for member, specs in declared:
        for spec in specs:
            rows.setdefault(spec.key, (spec, []))[1].append(member)
    lines = ["| key | taken by | allowed | default | meaning |", "|---|---|---|---|---|"]
    for key in sorted(rows):
        spec, members = rows[key]
        lines.append(f"| `{key}` | {', '.join(members)} | {spec.allowed()} | {spec.default} | {spec.help} |")
    return "\n".join(lines)
