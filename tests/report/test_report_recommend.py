"""The recommendation in words: the pick against the right baseline, the runner-up, the limits, the exclusions."""

from __future__ import annotations

from test_report_eligibility import ONE_POINT, case

from mlperf_track import metrics as m
from mlperf_track.engine.eligibility import FAILED, Limits
from mlperf_track.report.recommend import question_heading, recommend, reference_for


def test_the_answer_names_the_pick_its_speed_up_its_accuracy_and_the_runner_up() -> None:
    pool = [
        case("baseline/eager/fp32", throughput=100.0, batch_size=8),
        case("baseline/eager/fp32", throughput=60.0, batch_size=1),
        case("baseline/onnxruntime/fp32", throughput=200.0, batch_size=8),
        case("quantized/onnxruntime/int8", throughput=380.0, delta=-0.003, ci=(-0.009, 0.003), batch_size=8),
        case("pruned/eager/fp32", throughput=500.0, delta=-0.04, ci=(-0.05, -0.03), batch_size=8),
        case("baseline/openvino/fp32", status=FAILED, error="ExportError: x", batch_size=8),
    ]
    answer = recommend(pool, ONE_POINT, heading="resnet50, 64 px, digits on cpu")
    assert answer.best is pool[3]
    first, runner, limits, excluded = answer.lines
    assert first == (
        "resnet50, 64 px, digits on cpu: ship quantized/onnxruntime/int8 at batch 8: 380.0 samples/s, 3.8x the "
        "fp32 eager baseline's throughput at batch 8, top-1 -0.3 points (95% CI -0.9..+0.3: no measurable "
        "change)."
    )
    assert runner.startswith(
        "Runner-up on the Pareto front: baseline/onnxruntime/fp32 at batch 8: 200.0 samples/s, 2.0x"
    )
    assert limits == "Limits: top-1 drop <= 1 point (a change too small to measure passes)."
    assert excluded == "Not eligible: 1 failed, 1 accuracy drop (of 6 cases)."


def test_the_baseline_is_the_fp32_one_of_the_same_batch_and_machine_preferring_eager() -> None:
    int8 = case("quantized/onnxruntime/int8", throughput=300.0, hardware="A")
    eager_other_machine = case("baseline/eager/fp32", throughput=10.0, hardware="B")
    onnx = case("baseline/onnxruntime/fp32", throughput=150.0, hardware="A")
    eager_other_batch = case("baseline/eager/fp32", throughput=50.0, batch_size=1, hardware="A")
    assert reference_for(int8, [eager_other_machine, eager_other_batch, onnx]) is onnx
    eager = case("baseline/eager/fp32", throughput=100.0, hardware="A")
    assert reference_for(int8, [onnx, eager]) is eager
    text = recommend([int8, onnx], Limits()).lines[0]
    assert "2.0x the fp32 onnxruntime baseline's throughput at batch 8" in text
    alone = recommend([case("quantized/onnxruntime/int8", throughput=300.0)], Limits()).lines[0]
    assert "no fp32 baseline was measured at batch 8 to compare with" in alone


def test_memory_and_latency_appear_when_measured_and_limits_are_listed() -> None:
    metrics = {m.CPU_RSS_PEAK: 1234.0, m.LATENCY_P99: 7.25}
    answer = recommend([case(metrics=metrics)], Limits(0.01, memory_limit_mb=2000, p99_limit_ms=10))
    assert "p99 7.25 ms, peak memory 1,234 MB" in answer.lines[0]
    assert "the fp32 eager baseline itself" in answer.lines[0]
    assert answer.lines[-1] == (
        "Limits: top-1 drop <= 1 point (a change too small to measure passes); peak memory <= 2,000 MB; "
        "p99 latency <= 10 ms."
    )


def test_when_nothing_qualifies_the_answer_says_so_and_shows_the_fastest_excluded() -> None:
    pool = [case("pruned/eager/fp32", throughput=500.0, delta=-0.04, ci=(-0.05, -0.03)), case(status=FAILED)]
    answer = recommend(pool, ONE_POINT)
    assert answer.best is None
    assert answer.lines[0] == (
        "No configuration qualifies (limits: top-1 drop <= 1 point (a change too small to measure passes)); "
        "the reasons are below."
    )
    assert answer.lines[1].startswith("Fastest excluded: pruned/eager/fp32 at batch 8: 500.0 samples/s")
    assert "exceeds the 1 point accuracy limit" in answer.lines[1]
    assert answer.lines[2] == "Not eligible: 1 failed, 1 accuracy drop (of 2 cases)."
    assert recommend([], ONE_POINT).lines == ("Nothing was measured, so there is nothing to recommend.",)


def test_the_heading_gives_an_image_size_only_for_image_models() -> None:
    assert question_heading("resnet50", 64, "digits", "cpu") == "resnet50, 64 px, digits on cpu"
    assert (
        question_heading("hf-config:gpt2-tiny", 64, "pydoc-topics", "cpu") == "hf-config:gpt2-tiny, pydoc-topics on cpu"
    )
    assert question_heading("hf:/models/bert", 224, "stdlib-docstrings", "cuda") == (
        "hf:/models/bert, stdlib-docstrings on cuda"
    )
