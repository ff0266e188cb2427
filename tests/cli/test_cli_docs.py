"""The docs say what the code does: generated tables current, every metric key listed, README commands parse."""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

from mlperf_track import metrics
from mlperf_track.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
ARCHITECTURE = REPO / "docs" / "architecture.md"
README = REPO / "README.md"


def _update_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("update_docs", REPO / "scripts" / "update_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_option_tables_are_current() -> None:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    assert _update_docs().render(text) == text, "run: PYTHONPATH=. python scripts/update_docs.py"


def test_every_metric_key_and_tag_is_documented() -> None:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    keys = {
        value
        for name, value in vars(metrics).items()
        if name.isupper() and isinstance(value, str) and not name.startswith("_")
    }
    assert len(keys) > 40
    missing = sorted(key for key in keys if f"`{key}`" not in text)
    assert not missing, f"add to docs/architecture.md: {missing}"


def test_nothing_in_the_repository_points_outside_it() -> None:
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    outside = "/".join(("..", "shared"))
    offenders = [
        name
        for name in files
        if (REPO / name).is_file()
        and (REPO / name).suffix in (".md", ".py", ".sh", ".ipynb", ".cfg", ".toml", ".yaml", "")
        and outside in (REPO / name).read_text(encoding="utf-8", errors="ignore")
    ]
    assert not offenders, offenders


def _using_it_commands() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Using it", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL):
        for raw in block.replace("\\\n", " ").splitlines():
            line = raw.split(" #", 1)[0].strip()
            if line.startswith(("mlperf-track ", "mlflow run ")):
                commands.append(line)
    return commands


def test_readme_leads_with_commands_that_work_without_conda() -> None:
    commands = _using_it_commands()
    assert commands and commands[0].startswith("mlflow run . --env-manager local")
    assert all("--env-manager local" in command for command in commands if command.startswith("mlflow run"))


@pytest.mark.parametrize("command", _using_it_commands())
def test_every_readme_command_parses_with_the_cli(command: str) -> None:
    """``mlperf-track`` lines parse; ``mlflow run`` lines become entry-point commands that parse."""
    from mlflow.projects._project_spec import load_project

    words = shlex.split(command)
    if words[0] == "mlperf-track":
        args = build_parser().parse_args(words[1:])  # exits with code 2 on an unknown flag
        assert callable(args.func)
        return
    entry_point, params = "main", {}
    for index, word in enumerate(words):
        if word == "-e":
            entry_point = words[index + 1]
        if word == "-P":
            key, _, value = words[index + 1].partition("=")
            params[key] = value
    argv = shlex.split(load_project(str(REPO)).get_entry_point(entry_point).compute_command(params, None))
    assert callable(build_parser().parse_args(argv[3:]).func)
