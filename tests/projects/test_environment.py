"""conda.yaml (what ``mlflow run .`` builds with conda or uv) lists exactly setup.cfg's requirements."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
#: Extras of ``all`` that conda.yaml leaves out, and why.
LEFT_OUT = {"tensorrt": "NVIDIA's wheels need a CUDA machine"}


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.strip().splitlines() if line.strip()]


def _setup_cfg_requirements() -> set[str]:
    config = configparser.ConfigParser(interpolation=None)
    config.read(ROOT / "setup.cfg")
    extras = config["options.extras_require"]
    wanted = set(_lines(config["options"]["install_requires"]))
    for item in _lines(extras["all"]):
        name = re.fullmatch(r"%\((\w+)\)s", item)
        assert name, f"the all extra should only name other extras, found {item!r}"
        if name.group(1) not in LEFT_OUT:
            wanted |= set(_lines(extras[name.group(1)]))
    return wanted


def _conda_requirements() -> list[str]:
    environment = yaml.safe_load((ROOT / "conda.yaml").read_text())
    pip = [item for item in environment["dependencies"] if isinstance(item, dict)]
    assert len(pip) == 1
    return [str(item) for item in pip[0]["pip"]]


def test_conda_yaml_lists_the_same_requirements_as_setup_cfg() -> None:
    listed = _conda_requirements()
    assert len(listed) == len(set(listed)), "a requirement is listed twice in conda.yaml"
    assert set(listed) == _setup_cfg_requirements()


def test_conda_yaml_pins_python_311() -> None:
    environment = yaml.safe_load((ROOT / "conda.yaml").read_text())
    assert "python=3.11" in environment["dependencies"]
