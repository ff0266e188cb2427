"""The search space: valid combinations only (asked of runtimes and variants), real values, grid and samplers agree."""

from __future__ import annotations

from typing import Any

import optuna
import pytest

from mlperf_track.errors import ConfigError
from mlperf_track.options import OptionSpec
from mlperf_track.runtimes.base import PreparedModel, PrepareRequest, Runtime, RuntimeCapabilities
from mlperf_track.runtimes.registry import get_runtime
from mlperf_track.spec import CaseSpec
from mlperf_track.tuning.choices import (
    enumerate_choices,
    native_precisions,
    option_choices,
    runtime_unsupported_reason,
    search_runtimes,
    with_compositions,
)
from mlperf_track.tuning.config import SearchSettings, TuneConfig, parse_batch_sizes, powers_of_two
from mlperf_track.tuning.space import BATCH_PARAM, CONFIG_PARAM, THREADS_PARAM, Choice, SearchSpace, TrialPoint
from mlperf_track.variants.registry import get_variant


class _FakeRuntime(Runtime):
    """A runtime that only declares capabilities and options (nothing is prepared in these tests)."""

    name = "fake"

    def __init__(
        self,
        precisions: dict[str, set[str]],
        unavailable: str | None = None,
        options: tuple[OptionSpec, ...] = (),
        gpu_only: frozenset[str] = frozenset(),
    ) -> None:
        self._caps = RuntimeCapabilities({device: frozenset(p) for device, p in precisions.items()})
        self._unavailable = unavailable
        self.accepted_options = options  # type: ignore[misc]
        self._gpu_only = gpu_only

    def capabilities(self) -> RuntimeCapabilities:
        return self._caps

    def unavailable_reason(self) -> str | None:
        return self._unavailable

    def option_unsupported_reason(self, device: str, key: str, value: str) -> str | None:
        return "needs a GPU" if value in self._gpu_only and device != "cuda" else None

    def prepare(self, artifact: Any, request: PrepareRequest) -> PreparedModel:
        raise NotImplementedError


MODES = OptionSpec("mode", "a mode", choices=("a", "b", "c", "debug"), searched=("a", "b", "c"))
NOT_SEARCHED = OptionSpec("opset", "an opset", "int", low=1)


def _runtimes() -> dict[str, Runtime]:
    return {
        "eager": _FakeRuntime({"cpu": {"fp32", "bf16", "fp16", "int8"}, "cuda": {"fp32", "fp16"}}),
        "onnxruntime": _FakeRuntime({"cpu": {"fp32", "int8"}}),
        "compile": _FakeRuntime({"cpu": {"fp32", "bf16"}}, options=(MODES, NOT_SEARCHED), gpu_only=frozenset({"c"})),
    }


def _native(precision: str, device: str) -> str | None:
    return "emulated here" if precision == "fp16" else None


def test_only_combinations_the_runtimes_declare_become_choices() -> None:
    runtimes = {name: _runtimes()[name] for name in ("eager", "onnxruntime")}
    choices, skipped = enumerate_choices(
        runtimes=runtimes,
        precisions=["fp32", "bf16"],
        device="cpu",
        unsupported_reason=runtime_unsupported_reason(runtimes, "cpu"),
        emulated=_native,
    )
    assert [c.key for c in choices] == ["baseline/eager/fp32", "baseline/eager/bf16", "baseline/onnxruntime/fp32"]
    assert [key for key, _ in skipped] == ["baseline/onnxruntime/bf16"]
    assert "fp32" in skipped[0][1]  # the reason names what is allowed


def test_an_emulated_precision_is_never_proposed() -> None:
    runtimes = {"eager": _runtimes()["eager"]}
    choices, skipped = enumerate_choices(
        runtimes=runtimes,
        precisions=["fp32", "fp16"],
        device="cpu",
        unsupported_reason=runtime_unsupported_reason(runtimes, "cpu"),
        emulated=_native,
    )
    assert [c.key for c in choices] == ["baseline/eager/fp32"]
    assert skipped == [("baseline/eager/fp16", "emulated here")]
    assert native_precisions(runtimes, "cpu", emulated=_native) == ("fp32", "bf16")


def test_unavailable_runtime_is_skipped_with_its_reason() -> None:
    runtimes = {"eager": _runtimes()["eager"], "tensorrt": _FakeRuntime({"cuda": {"fp16"}}, "needs the tensorrt extra")}
    choices, skipped = enumerate_choices(
        runtimes=runtimes,
        precisions=["fp16"],
        device="cuda",
        unsupported_reason=runtime_unsupported_reason(runtimes, "cuda"),
        emulated=lambda precision, device: None,
    )
    assert [c.key for c in choices] == ["baseline/eager/fp16"]
    assert "tensorrt extra" in skipped[0][1]


def test_declared_searched_option_values_expand_where_the_device_runs_them() -> None:
    runtime = _runtimes()["compile"]
    settings, skipped = option_choices(runtime, "cpu")
    assert settings == [(("mode", "a"),), (("mode", "b"),)]  # c needs a GPU, debug is not searched, opset neither
    assert skipped == [("fake/mode=c", "needs a GPU")]
    assert option_choices(runtime, "cuda")[0] == [(("mode", "a"),), (("mode", "b"),), (("mode", "c"),)]
    assert option_choices(runtime, "cpu", values={"mode": ["b"]})[0] == [(("mode", "b"),)]
    assert option_choices(runtime, "cpu", fixed=["mode"])[0] == [()]  # fixed by --options: not searched


def test_pinned_variant_is_searched_only_where_it_runs_and_options_expand() -> None:
    runtimes = _runtimes()
    choices, _ = enumerate_choices(
        runtimes={name: runtimes[name] for name in ("eager", "compile")},
        precisions=["fp32"],
        device="cpu",
        variants=["quantized"],
        pins={"quantized": ("onnxruntime", "int8")},
        unsupported_reason=runtime_unsupported_reason(runtimes, "cpu"),
        emulated=_native,
    )
    assert [c.key for c in choices if c.variant == "baseline"] == [
        "baseline/eager/fp32",
        "baseline/compile/fp32/mode=a",
        "baseline/compile/fp32/mode=b",
    ]
    # the pinned runtime is asked even when the study does not search it (the registry's onnxruntime)
    quantized = [c for c in choices if c.variant == "quantized"]
    assert quantized and {(c.runtime, c.precision) for c in quantized} == {("onnxruntime", "int8")}


def test_compositions_join_a_model_shaping_recipe_with_a_quantizer() -> None:
    recipes = [get_variant(name) for name in ("pruned_structured", "distilled", "quantized_int8_ort", "quantized_bf16")]
    names = [variant.name for variant in with_compositions(recipes)]
    assert names[:4] == ["pruned_structured", "distilled", "quantized_int8_ort", "quantized_bf16"]
    assert set(names[4:]) == {
        "pruned_structured+quantized_int8_ort",
        "pruned_structured+quantized_bf16",
        "distilled+quantized_int8_ort",
        "distilled+quantized_bf16",
    }
    composed = get_variant("distilled+quantized_int8_ort")
    assert (composed.pinned_runtime, composed.pinned_precision) == ("onnxruntime", "int8")


def test_runtimes_auto_of_a_cpu_study_takes_every_installed_runtime_that_runs_there() -> None:
    found = search_runtimes("cpu")
    assert {"eager", "compile"} <= set(found)
    assert "tensorrt" not in found  # needs a GPU
    for name in ("onnxruntime", "openvino"):
        assert (name in found) == (get_runtime(name).unavailable_reason() is None)


def test_create_resolves_auto_for_the_device() -> None:
    config = TuneConfig.create("resnet18", device="cpu")
    pipeline = config.pipeline
    assert pipeline.runtimes == search_runtimes("cpu")
    assert "fp16" not in pipeline.precisions or native_precisions(("eager",), "cpu") == pipeline.precisions
    assert pipeline.batch_sizes == (1, 2, 4, 8, 16, 32, 64) and pipeline.image_size == 64
    assert pipeline.max_accuracy_drop == 0.01
    changes_accuracy = any(precision != "fp32" for precision in pipeline.precisions)
    assert pipeline.dataset == ("digits" if changes_accuracy else "synthetic")
    labelled = TuneConfig.create("resnet18", device="cpu", precisions=("fp32",), variants=("pruned",))
    assert labelled.pipeline.dataset == "digits" and labelled.pipeline.variants == ("pruned",)
    plain = TuneConfig.create("resnet18", device="cpu", precisions=("fp32",), max_time_s=2.0, batch_sizes="1,8")
    assert plain.pipeline.dataset == "synthetic" and plain.pipeline.timing.max_time_s == 2.0
    assert plain.pipeline.batch_sizes == (1, 8)
    assert config.search == SearchSettings()


def test_create_names_an_unknown_setting() -> None:
    with pytest.raises(ConfigError, match="tune setting"):
        TuneConfig.create("resnet18", device="cpu", n_trails=3)


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


def test_grid_and_suggestions_cover_exactly_the_valid_points_with_real_values() -> None:
    space = SearchSpace((Choice("baseline", "eager", "fp32"), Choice("baseline", "eager", "bf16")), (1, 4, 16), (1, 2))
    assert space.size == 12
    study = optuna.create_study(sampler=optuna.samplers.GridSampler(space.grid(), seed=0))
    seen: set[TrialPoint] = set()

    def objective(trial: optuna.Trial) -> float:
        point = space.suggest(trial)
        seen.add(point)
        return float(point.batch_size)

    study.optimize(objective, n_trials=space.size)
    assert seen == set(space.points())
    assert {trial.params[CONFIG_PARAM] for trial in study.trials} == {"baseline/eager/fp32", "baseline/eager/bf16"}
    assert {trial.params[BATCH_PARAM] for trial in study.trials} == {1, 4, 16}  # the batch size itself
    assert {trial.params[THREADS_PARAM] for trial in study.trials} == {1, 2}


def test_off_candidate_values_snap_to_the_nearest_on_a_log_scale() -> None:
    space = SearchSpace((Choice("baseline", "eager", "fp32"),), (1, 4, 16, 64))
    assert space.point({CONFIG_PARAM: "baseline/eager/fp32", BATCH_PARAM: 7}).batch_size == 4
    assert space.point({CONFIG_PARAM: "baseline/eager/fp32", BATCH_PARAM: 9}).batch_size == 16
    assert space.point({CONFIG_PARAM: "baseline/eager/fp32", BATCH_PARAM: 2}).batch_size == 1  # a tie: the smaller
    point = TrialPoint(Choice("baseline", "eager", "fp32"), 16)
    assert space.point(space.params_of(point)) == point


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
        ({"time_budget_s": -1.0}, "--time-budget"),
        ({"short_time_s": 0.0}, "--short-time"),
        ({"sampler": "cmaes"}, "--sampler"),
        ({"pruner": "median"}, "--pruner"),
        ({"warm_start": " "}, "--warm-start"),
        ({"grace_period_s": 5, "heartbeat_interval_s": 10}, "grace_period_s"),
    ],
)
def test_search_settings_reject_bad_input(kwargs: dict[str, Any], parameter: str) -> None:
    with pytest.raises(ConfigError, match=parameter):
        SearchSettings(**kwargs)


def test_powers_of_two() -> None:
    assert powers_of_two(1) == (1,)
    assert powers_of_two(12) == (1, 2, 4, 8)
