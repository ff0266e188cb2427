"""Declared ``--option`` keys: the checker, and a conformance suite every registered runtime and variant passes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mlperf_track.errors import ConfigError
from mlperf_track.options import OptionSpec, check_options
from mlperf_track.runtimes.registry import get_runtime, runtime_names
from mlperf_track.variants.registry import get_variant, variant_names

PACKAGE = Path(__file__).resolve().parents[1] / "mlperf_track"


def _declarations() -> dict[str, tuple[OptionSpec, ...]]:
    found = {name: get_runtime(name).accepted_options for name in runtime_names()}
    found.update({name: get_variant(name).accepted_options for name in variant_names()})
    return found


MEMBERS = sorted(_declarations().items())
SPECS = sorted({spec for _, specs in MEMBERS for spec in specs}, key=lambda spec: spec.key)


def _bad_values(spec: OptionSpec) -> list[str]:
    """Values the declaration must refuse, derived from its kind and bounds."""
    if spec.kind == "choice":
        return ["", "not-a-choice", spec.choices[0].upper() + "x"]
    if spec.kind == "text":
        return ["", "   "]
    bad = ["x", "nan", "inf", ""]
    if spec.kind == "int":
        bad.append("1.5")
        if spec.low is not None:
            bad.append(str(int(spec.low) - 1))
    if spec.low is not None:
        bad.append(str(spec.low - 1))
        if spec.kind == "float" and not spec.closed:
            bad.append(str(spec.low))
    if spec.high is not None:
        bad.append(str(spec.high + 1))
        if not spec.closed:
            bad.append(str(spec.high))
    return bad


def _good_values(spec: OptionSpec) -> list[str]:
    if spec.kind == "choice":
        return list(spec.choices)
    if spec.kind == "text":
        return ["resnet18"]
    low = spec.low if spec.low is not None else 0
    if spec.kind == "int":
        return [str(int(low)), str(int(low) + 7)]
    high = spec.high if spec.high is not None else low + 10
    good = [str((low + high) / 2)]
    if spec.closed:
        good += [str(low), str(high)]
    return good


@pytest.mark.parametrize(("member", "specs"), MEMBERS, ids=[name for name, _ in MEMBERS])
def test_every_declaration_is_well_formed(member: str, specs: tuple[OptionSpec, ...]) -> None:
    keys = [spec.key for spec in specs]
    assert len(keys) == len(set(keys)), f"{member} declares a key twice"
    for spec in specs:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", spec.key), spec.key
        assert spec.help and spec.default, spec
        assert spec.kind != "choice" or spec.choices, spec


@pytest.mark.parametrize("spec", SPECS, ids=[spec.key for spec in SPECS])
def test_every_declared_option_refuses_bad_values_in_one_line(spec: OptionSpec) -> None:
    for value in _bad_values(spec):
        with pytest.raises(ConfigError) as info:
            spec.check(value)
        message = str(info.value)
        assert f"--option {spec.key}" in message and "\n" not in message
        assert spec.allowed() in message


@pytest.mark.parametrize("spec", SPECS, ids=[spec.key for spec in SPECS])
def test_every_declared_option_accepts_its_allowed_values(spec: OptionSpec) -> None:
    for value in _good_values(spec):
        spec.check(value)


# What members read: option(request, "k", ...), int_option(options, "k", ...), option_float(..., "k", ...),
# options.get("k") and context.options["k"].
_READS = re.compile(
    r"""(?:\boption(?:_float|_int|_str)?\(\s*[\w.]+\s*,\s*|int_option\(\s*[\w.]+\s*,\s*|options\.get\(\s*|options\[\s*)"""
    r"""["']([a-z][a-z0-9_]*)["']"""
)


def test_every_option_key_a_member_reads_is_declared() -> None:
    """A key read in runtimes/ or variants/ but declared nowhere would be refused up front: catch the drift here."""
    declared = {spec.key for spec in SPECS}
    read: dict[str, str] = {}
    for folder in ("runtimes", "variants"):
        for path in sorted((PACKAGE / folder).glob("*.py")):
            for key in _READS.findall(path.read_text(encoding="utf-8")):
                read.setdefault(key, path.name)
    assert read, "the pattern no longer finds the option reads"
    missing = {key: where for key, where in read.items() if key not in declared}
    assert not missing, f"read but not declared in accepted_options: {missing}"


def test_unknown_key_names_the_selected_members_and_the_close_key() -> None:
    selected = {"compile": get_runtime("compile").accepted_options}
    with pytest.raises(ConfigError) as info:
        check_options([("compile_mod", "default")], selected)
    message = str(info.value)
    assert "--option='compile_mod=default'" in message
    assert "a key of compile: compile_dynamic, compile_mode, inductor_freezing" in message
    assert "did you mean compile_mode" in message


def test_key_of_a_member_not_selected_says_which_member_takes_it() -> None:
    known = _declarations()
    selected = {"eager": known["eager"]}
    with pytest.raises(ConfigError, match=r"ratio is an option of (.*, )?pruned_structured, .*pruned_unstructured"):
        check_options([("ratio", "0.3")], selected, known)
    bare = next(name for name, specs in sorted(known.items()) if not specs)
    with pytest.raises(ConfigError, match=rf"no key \({bare} declare no options\)"):
        check_options([("ratio", "0.3")], {bare: known[bare]})


def test_a_key_of_any_selected_member_is_accepted() -> None:
    known = _declarations()
    selected = {name: known[name] for name in ("eager", "onnxruntime", "pruned_structured")}
    check_options([("ratio", "0.3"), ("graph_optimization_level", "basic"), ("onnx_opset", "17")], selected, known)


def test_a_composition_declares_what_its_steps_declare() -> None:
    composed = get_variant("pruned_structured+quantized_int8_pt2e")
    keys = {spec.key for spec in composed.accepted_options}
    assert {"ratio", "fine_tune_epochs", "calibration_samples"} <= keys


@pytest.mark.parametrize(
    ("spec", "allowed"),
    [
        (OptionSpec("a", "h", "float", low=0, high=1), "a number in (0, 1)"),
        (OptionSpec("a", "h", "float", low=0, high=1, closed=True), "a number in [0, 1]"),
        (OptionSpec("a", "h", "float", low=0), "a number > 0"),
        (OptionSpec("a", "h", "int", low=1), "an integer >= 1"),
        (OptionSpec("a", "h", choices=("x", "y")), "one of x, y"),
        (OptionSpec("a", "h", "text"), "a non-empty text"),
    ],
)
def test_allowed_says_the_bounds(spec: OptionSpec, allowed: str) -> None:
    assert spec.allowed() == allowed
