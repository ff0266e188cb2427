"""The eligibility rule: which case may be named best, and why the others may not (pure, no MLflow)."""

from __future__ import annotations

import random

import pytest

from mlperf_track import metrics as m
from mlperf_track.engine.eligibility import (
    CATEGORIES,
    FAILED,
    KILLED,
    RUNNING,
    Candidate,
    Limits,
    accuracy_change,
    describe_delta,
    judge,
)
from mlperf_track.engine.ranking import rank

ONE_POINT = Limits(max_accuracy_drop=0.01)


def case(
    config: str = "baseline/eager/fp32",
    throughput: float | None = 100.0,
    delta: float | None = None,
    ci: tuple[float, float] | None = None,
    batch_size: int = 8,
    **fields: object,
) -> Candidate:
    variant, runtime, precision = config.split("/")
    metrics: dict[str, float] = {} if throughput is None else {m.THROUGHPUT: throughput, m.LATENCY_P50: 1.0}
    if delta is not None:
        metrics[m.ACCURACY_TOP1_DELTA] = delta
    if ci is not None:
        metrics |= {m.ACCURACY_TOP1_DELTA_CI_LOW: ci[0], m.ACCURACY_TOP1_DELTA_CI_HIGH: ci[1]}
    metrics |= fields.pop("metrics", {})  # type: ignore[arg-type]
    name = f"{config}-bs{batch_size}"
    return Candidate(name, config, variant, runtime, precision, batch_size, metrics=metrics, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("candidate", "category"),
    [
        (case(status=FAILED, error="ExportError: aten::foo"), "failed"),
        (case(status=FAILED, error="OutOfMemoryError: 9 GB", out_of_memory=True), "out of memory"),
        (case(status=KILLED), "killed"),
        (case(status=RUNNING), "unfinished"),
        (case(valid=False, invalid_reasons=("CI 6% wide at the time cap",)), "invalid measurement"),
        (case(throughput=None), "not measured"),
        (case("quantized/eager/int8", delta=-0.03, ci=(-0.04, -0.02)), "accuracy drop"),
        (case("quantized/eager/int8"), "no accuracy"),
    ],
)
def test_each_reason_has_its_category(candidate: Candidate, category: str) -> None:
    verdict = judge(candidate, ONE_POINT)
    assert not verdict.eligible and verdict.category == category and category in CATEGORIES
    assert verdict.text


def test_failure_reasons_carry_the_error() -> None:
    assert "aten::foo" in judge(case(status=FAILED, error="ExportError: aten::foo"), ONE_POINT).text


@pytest.mark.parametrize(
    ("delta", "ci", "eligible", "verdict"),
    [
        (-0.005, (-0.012, 0.002), True, "no measurable change"),  # within the limit anyway
        (-0.02, (-0.035, 0.001), True, "no measurable change"),  # beyond the limit, but the CI contains 0
        (-0.015, (-0.025, -0.005), False, "loss"),  # beyond, CI straddles the limit (not 0): out
        (-0.008, (-0.014, -0.002), True, "loss"),  # a real loss within the limit: in
        (0.02, (0.01, 0.03), True, "gain"),
        (-0.02, None, False, ""),  # no CI: the point estimate decides
        (-0.005, None, True, ""),
    ],
)
def test_accuracy_limit_uses_the_point_estimate_unless_the_ci_contains_zero(
    delta: float, ci: tuple[float, float] | None, eligible: bool, verdict: str
) -> None:
    candidate = case("quantized/onnxruntime/int8", delta=delta, ci=ci)
    assert judge(candidate, ONE_POINT).eligible is eligible
    assert accuracy_change(candidate) == verdict


def test_a_drop_whose_ci_reaches_the_limit_says_so() -> None:
    text = judge(case("pruned/eager/fp32", delta=-0.015, ci=(-0.025, -0.005)), ONE_POINT).text
    assert "top-1 -1.5 points (95% CI -2.5..-0.5: loss) exceeds the 1 point accuracy limit" in text
    assert "its CI reaches the limit" in text
    clear = judge(case("pruned/eager/fp32", delta=-0.03, ci=(-0.04, -0.02)), ONE_POINT).text
    assert "reaches" not in clear


def test_only_the_fp32_baseline_needs_no_accuracy() -> None:
    assert judge(case("baseline/onnxruntime/fp32"), ONE_POINT).eligible
    assert not judge(case("baseline/eager/bf16"), ONE_POINT).eligible
    assert judge(case("baseline/eager/bf16"), Limits()).eligible  # no accuracy limit asked for


def test_memory_and_latency_limits_read_the_device_memory_on_cuda() -> None:
    metrics = {m.GPU_PROCESS_PEAK: 900.0, m.GPU_PEAK_ALLOCATED: 400.0, m.CPU_RSS_PEAK: 100.0, m.LATENCY_P99: 12.0}
    gpu = case(device="cuda", metrics=metrics)
    assert judge(gpu, Limits(memory_limit_mb=1000.0)).eligible
    assert judge(gpu, Limits(memory_limit_mb=800.0)).category == "memory limit"  # the NVML peak, not torch's
    assert judge(gpu, Limits(p99_limit_ms=10.0)).category == "latency limit"
    assert judge(case(), Limits(memory_limit_mb=800.0)).category == "memory limit"  # not measured: out


def test_an_invalid_fastest_case_is_never_best() -> None:
    fastest = case("baseline/openvino/fp32", throughput=900.0, valid=False, invalid_reasons=("noisy",))
    ranking = rank([case(throughput=100.0), fastest, case("baseline/onnxruntime/fp32", throughput=300.0)], ONE_POINT)
    assert ranking.best is not None and ranking.best.config == "baseline/onnxruntime/fp32"
    assert ranking.counts() == {"invalid measurement": 1}


def test_front_and_runner_up_trade_speed_for_accuracy_with_another_configuration() -> None:
    best = case("quantized/onnxruntime/int8", throughput=900.0, delta=-0.004, ci=(-0.01, 0.002))
    best_small = case("quantized/onnxruntime/int8", throughput=800.0, delta=-0.004, ci=(-0.01, 0.002), batch_size=1)
    accurate = case("baseline/onnxruntime/fp32", throughput=500.0)
    dominated = case("baseline/eager/fp32", throughput=200.0)
    ranking = rank([dominated, accurate, best_small, best], ONE_POINT)
    assert ranking.best is best
    assert ranking.front == [best, accurate]
    assert ranking.runner_up == (accurate, "pareto")
    alone = rank([best, best_small, dominated], Limits())
    assert alone.runner_up == (dominated, "pareto")  # the eager baseline is more accurate (delta 0)


def test_runner_up_without_accuracy_is_the_next_fastest_configuration() -> None:
    first, same, other = case(throughput=300.0), case(throughput=200.0, batch_size=1), case("baseline/compile/fp32")
    assert rank([first, same, other], Limits()).runner_up == (other, "next")


def test_nothing_eligible_has_no_best() -> None:
    ranking = rank([case(status=FAILED), case("pruned/eager/fp32", delta=-0.2, ci=(-0.3, -0.1))], ONE_POINT)
    assert ranking.best is None and ranking.runner_up is None and ranking.front == []


@pytest.mark.parametrize("seed", range(40))
def test_the_best_is_eligible_and_no_eligible_case_is_faster(seed: int) -> None:
    rng = random.Random(seed)
    configs = ["baseline/eager/fp32", "baseline/eager/bf16", "quantized/onnxruntime/int8", "pruned/eager/fp32"]
    candidates = []
    for index in range(rng.randint(1, 25)):
        delta = rng.uniform(-0.05, 0.01)
        half = rng.uniform(0.0, 0.03)
        candidates.append(
            case(
                rng.choice(configs),
                throughput=rng.uniform(10, 1000),
                delta=delta if rng.random() > 0.2 else None,
                ci=(delta - half, delta + half) if rng.random() > 0.3 else None,
                batch_size=index,
                status=rng.choice([FAILED, KILLED] + ["finished"] * 6),
                valid=rng.choice([True, None, False]),
            )
        )
    limits = Limits(max_accuracy_drop=rng.choice([None, 0.005, 0.01, 0.02]))
    ranking = rank(candidates, limits)
    eligible = [c for c in candidates if judge(c, limits).eligible]
    assert set(map(id, ranking.eligible)) == set(map(id, eligible))
    assert len(ranking.excluded) + len(eligible) == len(candidates)
    for candidate, verdict in ranking.excluded:
        assert verdict.reasons and all(category in CATEGORIES for category, _ in verdict.reasons)
        assert candidate not in ranking.front
    if ranking.best is None:
        assert not eligible
        return
    assert judge(ranking.best, limits).eligible and ranking.best.valid is not False
    assert all(c.metrics[m.THROUGHPUT] <= ranking.best.metrics[m.THROUGHPUT] for c in eligible)
    assert ranking.best in ranking.front
    if ranking.runner_up is not None:
        assert ranking.runner_up[0].config != ranking.best.config


def lm_case(config: str, delta: float, ci: tuple[float, float]) -> Candidate:
    """A language model's case: next-token top-1 change, no classifier top-1."""
    keys = (
        m.ACCURACY_NEXT_TOKEN_TOP1_DELTA,
        m.ACCURACY_NEXT_TOKEN_TOP1_DELTA_CI_LOW,
        m.ACCURACY_NEXT_TOKEN_TOP1_DELTA_CI_HIGH,
    )
    return case(config, metrics=dict(zip(keys, (delta, *ci), strict=True)))


def test_a_language_model_is_judged_on_its_next_token_top1_change() -> None:
    unchanged = lm_case("quantized/eager/int8", -0.004, (-0.012, 0.004))
    assert judge(unchanged, ONE_POINT).eligible
    assert describe_delta(unchanged).startswith("next-token top-1 -0.4 points (95% CI -1.2..+0.4")
    worse = judge(lm_case("distilled/eager/fp32", -0.05, (-0.07, -0.03)), ONE_POINT)
    assert worse.category == "accuracy drop" and "next-token top-1 -5.0 points" in worse.text
    assert judge(case("quantized/eager/int8", metrics={m.ACCURACY_PERPLEXITY_DELTA: 0.1}), ONE_POINT).category == (
        "no accuracy"
    )
