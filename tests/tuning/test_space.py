"""The search space: valid combinations only, stable encoding, grid and sampler views agree."""

from __future__ import annotations

from typing import Any

import optuna
import pytest

from mlperf_track.errors import ConfigError
from mlperf_track.runtimes.base import PreparedModel, PrepareRequest, Runtime, RuntimeCapabilities
from mlperf_track.spec import CaseSpec
from mlperf_track.tuning.choices import auto_precisions, enumerate_choices, runtime_unsupported_reason
from mlperf_track.tuning.config import TuneConfig, parse_batch_sizes, powers_of_two
from mlperf_track.tuning.space import BATCH_PARAM, CONFIG_PARAM, Choice, SearchSpace, TrialPoint


class _FakeRuntime(Runtime):
    """A runtime that only declares capabilities (nothing is prepared in these tests)."""

    name = "fake"

    def __init__(self, precisions: dict[str, set[str]], unavailable: str | None = None) -> None:
        self._caps = RuntimeCapabilities({device: frozenset(p) for device, p in precisions.items()})
        self._unavailable = unavailable

    def capabilities(self) -> RuntimeCapabilities:
        return self._caps

    def unavailable_reason(self) -> str | None:
        return self._unavailable

    def prepare(self, artifact: Any, request: PrepareRequest) -> PreparedModel:
        raise NotImplementedError


def _runtimes() -> dict[str, Runtime]:
    return {
        "eager": _FakeRuntime({"cpu": {"fp32", "bf16", "fp16", "int8"}, "cuda": {"fp32", "fp16"}}),
        "onnxruntime": _FakeRuntime({"cpu": {"fp32", "int8"}}),
        "compile": _FakeRuntime({"cpu": {"fp32", "bf16"}}),
    }


def test_only_combinations_the_runtimes_declare_become_choices() -> None:
    runtimes = _runtimes()
    choices, skipped = enumerate_choices(
        runtimes=["eager", "onnxruntime"],
        precisions=["fp32", "bf16"],
        unsupported_reason=runtime_unsupported_reason(runtimes, "cpu"),
    )
    assert [c.key for c in choices] == ["baseline/eager/fp32", "baseline/eager/bf16", "baseline/onnxruntime/fp32"]
    assert [key for key, _ in skipped] == ["baseline/onnxruntime/bf16"]
    assert "fp32" in skipped[0][1]  # the reason names what is allowed


def test_unavailable_runtime_is_skipped_with_its_reason() -> None:
    runtimes = {"eager": _runtimes()["eager"], "tensorrt": _FakeRuntime({"cuda": {"fp16"}}, "needs the tensorrt extra")}
    choices, skipped = enumerate_choices(
        runtimes=["eager", "tensorrt"],
        precisions=["fp16"],
        unsupported_reason=runtime_unsupported_reason(runtimes, "cuda"),
    )
    assert [c.key for c in choices] == ["baseline/eager/fp16"]
    assert "tensorrt extra" in skipped[0][1]


def test_pinned_variant_is_searched_only_where_it_runs_and_compile_modes_expand() -> None:
    runtimes = _runtimes()
    choices, _ = enumerate_choices(
        runtimes=["eager", "compile"],
        precisions=["fp32"],
        variants=["quantized"],
        pins={"quantized": ("onnxruntime", "int8")},
        unsupported_reason=runtime_unsupported_reason(runtimes, "cpu"),
        compile_modes=["default", "max-autotune"],
    )
    assert [c.key for c in choices] == [
        "baseline/eager/fp32",
        "baseline/compile/fp32/compile_mode=default",
        "baseline/compile/fp32/compile_mode=max-autotune",
        "quantized/onnxruntime/int8",
    ]


def test_auto_precisions_leave_out_variant_only_precisions() -> None:
    assert auto_precisions(_runtimes(), "cpu") == ("fp32", "fp16", "bf16")
    assert auto_precisions(_runtimes(), "cuda") == ("fp32", "fp16")


def test_choice_key_round_trip() -> None:
    choice = Choice("baseline", "compile", "bf16", (("compile_mode", "max-autotune"),))
    assert Choice.from_key(choice.key) == choice
    with pytest.raises(ValueError, match="not a configuration key"):
        Choice.from_key("eager")


@pytest.mark.parametrize(
    ("text", "device", "expected"),
    [
        ("auto", "cpu", (1, 2, 4, 8, 16, 32, 64)),
        ("max:256", "cuda", (1, 2, 4, 8, 16, 32, 64, 128, 256)),
        ("max:100", "cpu", (1, 2, 4, 8, 16, 32, 64)),
        ("8,1,4,4", "cpu", (1, 4, 8)),
    ],
)
def test_parse_batch_sizes(text: str, device: str, expected: tuple[int, ...]) -> None:
    assert parse_batch_sizes(text, device) == expected


@pytest.mark.parametrize("text", ["max:0", "max:x", "0,1", "a,b", "-4"])
def test_bad_batch_sizes_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError, match="--batch-sizes"):
        parse_batch_sizes(text, "cpu")


def test_empty_space_says_why() -> None:
    with pytest.raises(ConfigError, match="onnxruntime/bf16: no bf16"):
        SearchSpace((), (1,), skipped=(("baseline/onnxruntime/bf16", "no bf16"),))


def test_grid_and_suggestions_cover_exactly_the_valid_points() -> None:
    space = SearchSpace((Choice("baseline", "eager", "fp32"), Choice("baseline", "eager", "bf16")), (1, 4, 16), (1, 2))
    assert space.size == 12
    grid = space.grid()
    study = optuna.create_study(sampler=optuna.samplers.GridSampler(grid, seed=0))
    seen: set[TrialPoint] = set()

    def objective(trial: optuna.Trial) -> float:
        point = space.suggest(trial)
        seen.add(point)
        return float(point.batch_size)

    study.optimize(objective, n_trials=space.size)
    assert seen == set(space.points())
    assert {trial.params[CONFIG_PARAM] for trial in study.trials} == {"baseline/eager/fp32", "baseline/eager/bf16"}
    assert {trial.params[BATCH_PARAM] for trial in study.trials} == {0, 1, 2}


def test_point_to_case_keeps_the_template_and_merges_options() -> None:
    template = CaseSpec(model="m", device="cpu", image_size=64, dataset="digits", options=(("a", "1"),))
    point = TrialPoint(Choice("baseline", "compile", "bf16", (("compile_mode", "max-autotune"),)), 32, 2)
    case = point.to_case(template)
    assert (case.model, case.image_size, case.dataset) == ("m", 64, "digits")
    assert (case.runtime, case.precision, case.batch_size, case.num_threads) == ("compile", "bf16", 32, 2)
    assert case.option_dict == {"a": "1", "compile_mode": "max-autotune"}


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"memory_limit_mb": 0}, "--memory-limit-mb"),
        ({"memory_limit_mb": -5.0}, "--memory-limit-mb"),
        ({"n_trials": 0}, "--n-trials"),
        ({"objective": "speed"}, "--objective"),
        ({"p99_slo_ms": 0.0}, "--p99-slo-ms"),
        ({"max_accuracy_drop": 1.5}, "--max-accuracy-drop"),
        ({"sampler": "cmaes"}, "--sampler"),
        ({"grace_period_s": 5, "heartbeat_interval_s": 10}, "grace_period_s"),
    ],
)
def test_tune_config_rejects_bad_input(kwargs: dict[str, Any], parameter: str) -> None:
    with pytest.raises(ConfigError, match=parameter):
        TuneConfig(model="resnet18", **kwargs)


def test_powers_of_two() -> None:
    assert powers_of_two(1) == (1,)
    assert powers_of_two(12) == (1, 2, 4, 8)
