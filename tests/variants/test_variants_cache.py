"""The on-disk cache of retrained variants: hit, miss, key, unreadable or mismatched files, tensors only."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from torch import nn

from mlperf_track import metrics
from mlperf_track.models.artifact import ModelArtifact
from mlperf_track.variants import memo
from mlperf_track.variants.base import VariantContext
from mlperf_track.variants.pt2e_cache import GraphFormatError, graph_from_data, graph_to_data, pt2e_key
from mlperf_track.variants.quantize_pt2e import EXPORT_SETTINGS, int8_weight_count
from mlperf_track.variants.registry import get_variant
from mlperf_track.variants.variant_cache import FOLDER, variant_key
from mlperf_track.variants.weights_cache import read_entry, write_entry

RETRAINING = ["pruned_unstructured", "pruned_structured", "distilled"]
PT2E = "quantized_int8_pt2e"
STUDENT = {"student": "tinycnn"}


@pytest.fixture(autouse=True)
def _forget() -> None:
    memo.forget_all()  # every build below must go through the disk cache, not the in-process memo


def _context(
    make_context: Callable[..., VariantContext], cache: Path | None, name: str, **options: str
) -> VariantContext:
    extra = STUDENT if name == "distilled" else {}
    return dataclasses.replace(make_context(**extra, **options), cache_dir=cache)


def _build(name: str, baseline: ModelArtifact, context: VariantContext) -> ModelArtifact:
    memo.forget_all()
    torch.manual_seed(123)  # any randomness the build forgot to seed would show as a different result
    return get_variant(name).build(baseline, context)


def _files(cache: Path) -> list[Path]:
    return sorted((cache / FOLDER).glob("*.pt"))


def _no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail if anything trains (a hit must not)."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("trained on a cache hit")

    monkeypatch.setattr("mlperf_track.variants.prune_common.fine_tune", refuse)
    monkeypatch.setattr("mlperf_track.variants.distill.distill", refuse)


def _same_weights(first: ModelArtifact, second: ModelArtifact) -> bool:
    assert first.module is not None and second.module is not None
    one, two = first.module.state_dict(), second.module.state_dict()
    return one.keys() == two.keys() and all(torch.equal(one[key], two[key]) for key in one)


@pytest.mark.parametrize("name", RETRAINING)
def test_second_build_loads_the_trained_weights_without_training(
    name: str,
    tiny_baseline: ModelArtifact,
    make_context: Callable[..., VariantContext],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    context = _context(make_context, tmp_path, name)
    first = _build(name, tiny_baseline, context)
    assert first.tags[metrics.VARIANT_CACHED_TAG] == "false"
    assert len(_files(tmp_path)) == 1

    _no_training(monkeypatch)
    second = _build(name, tiny_baseline, context)
    assert second.tags[metrics.VARIANT_CACHED_TAG] == "true"
    assert second.tags[metrics.VARIANT_CACHE_KEY_TAG] == first.tags[metrics.VARIANT_CACHE_KEY_TAG]
    assert _same_weights(first, second)
    assert second.name == first.name and second.module is not None and not second.module.training
    # The training facts of the run that made the weights come with them.
    for key in ("variant.train_epochs", "variant.train_s", "variant.train_stop"):
        assert second.tags[key] == first.tags[key]
    images = torch.randn(2, *tiny_baseline.input_shape)
    assert first.module is not None
    with torch.inference_mode():
        assert torch.equal(first.module(images), second.module(images))


def test_structured_pruning_round_trip_rebuilds_the_smaller_structure(
    tiny_baseline: ModelArtifact, make_context: Callable[..., VariantContext], tmp_path: Path
) -> None:
    context = _context(make_context, tmp_path, "pruned_structured", ratio="0.25")
    first = _build("pruned_structured", tiny_baseline, context)
    second = _build("pruned_structured", tiny_baseline, context)
    assert second.tags[metrics.VARIANT_CACHED_TAG] == "true"
    assert first.module is not None and second.module is not None and tiny_baseline.module is not None
    channels = [layer.out_channels for layer in second.module.modules() if isinstance(layer, nn.Conv2d)]
    baseline_channels = [layer.out_channels for layer in tiny_baseline.module.modules() if isinstance(layer, nn.Conv2d)]
    assert channels == [layer.out_channels for layer in first.module.modules() if isinstance(layer, nn.Conv2d)]
    assert sum(channels) < sum(baseline_channels)
    assert _same_weights(first, second)
    assert second.tags["prune.params_after"] == first.tags["prune.params_after"]


@pytest.mark.parametrize(
    ("first_options", "second_options"),
    [({"ratio": "0.5"}, {"ratio": "0.25"}), ({"fine_tune_epochs": "1"}, {"fine_tune_epochs": "2"})],
)
def test_what_changes_the_weights_changes_the_key(
    first_options: dict[str, str],
    second_options: dict[str, str],
    tiny_baseline: ModelArtifact,
    make_context: Callable[..., VariantContext],
    tmp_path: Path,
) -> None:
    first = _build("pruned_unstructured", tiny_baseline, _context(make_context, tmp_path, "x", **first_options))
    second = _build("pruned_unstructured", tiny_baseline, _context(make_context, tmp_path, "x", **second_options))
    assert second.tags[metrics.VARIANT_CACHED_TAG] == "false"
    assert first.tags[metrics.VARIANT_CACHE_KEY_TAG] != second.tags[metrics.VARIANT_CACHE_KEY_TAG]
    assert len(_files(tmp_path)) == 2


def test_key_covers_source_weights_seed_epochs_and_data(
    tiny_baseline: ModelArtifact, make_context: Callable[..., VariantContext], tmp_path: Path
) -> None:
    context = _context(make_context, tmp_path, "x")
    settings = {"ratio": 0.5}
    key = variant_key("pruned_unstructured", tiny_baseline, context, settings)
    assert key == variant_key("pruned_unstructured", tiny_baseline, context, dict(settings))
    assert tiny_baseline.module is not None
    other = dataclasses.replace(tiny_baseline, module=_perturbed(tiny_baseline.module))
    changed = [
        variant_key("pruned_structured", tiny_baseline, context, settings),
        variant_key("pruned_unstructured", other, context, settings),
        variant_key("pruned_unstructured", tiny_baseline, dataclasses.replace(context, seed=1), settings),
        variant_key("pruned_unstructured", tiny_baseline, dataclasses.replace(context, epochs=None), settings),
        variant_key("pruned_unstructured", tiny_baseline, dataclasses.replace(context, image_size=32), settings),
        variant_key("pruned_unstructured", tiny_baseline, context, {"ratio": 0.4}),
        variant_key(
            "pruned_unstructured",
            tiny_baseline,
            dataclasses.replace(context, data=dataclasses.replace(context.data, name="other")),
            settings,
        ),
    ]
    assert key not in changed and len(set(changed)) == len(changed)


def _perturbed(module: nn.Module) -> nn.Module:
    import copy

    changed = copy.deepcopy(module)
    with torch.no_grad():
        next(changed.parameters()).view(-1)[0] += 1e-3
    return changed


def _truncate(path: Path, baseline: ModelArtifact) -> None:
    path.write_bytes(path.read_bytes()[:100])  # a truncated write


def _write_baseline_shapes(path: Path, baseline: ModelArtifact) -> None:
    assert baseline.module is not None
    _, meta = read_entry(path, "test") or ({}, {})
    write_entry(baseline.module, meta, path)  # the unpruned baseline's shapes under the pruned key


class _Fault(NamedTuple):
    """A cache file spoiled after a build: the variant, how the file is spoiled, and what the log says."""

    variant: str
    corrupt: Callable[[Path, ModelArtifact], None]
    logged: str


@pytest.mark.parametrize(
    "fault",
    [
        _Fault("pruned_unstructured", _truncate, "unreadable"),
        _Fault("pruned_structured", _write_baseline_shapes, "does not fit"),
    ],
    ids=["unreadable", "mismatched-shapes"],
)
def test_a_file_that_cannot_be_used_is_ignored_retrained_and_rewritten(
    fault: _Fault,
    tiny_baseline: ModelArtifact,
    make_context: Callable[..., VariantContext],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = fault.variant
    context = _context(make_context, tmp_path, name)
    first = _build(name, tiny_baseline, context)
    (path,) = _files(tmp_path)
    fault.corrupt(path, tiny_baseline)
    with caplog.at_level(logging.WARNING):
        second = _build(name, tiny_baseline, context)
    assert second.tags[metrics.VARIANT_CACHED_TAG] == "false"
    assert fault.logged in caplog.text and path.name in caplog.text
    assert read_entry(path, "test") is not None  # rewritten whole
    assert _same_weights(first, second)  # the fine-tune is seeded: the same weights again
    third = _build(name, tiny_baseline, context)
    assert third.tags[metrics.VARIANT_CACHED_TAG] == "true"


class _Payload:
    """Anything but tensors: unpickling it would run code from the file."""


def test_files_holding_other_objects_are_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "entry.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "meta": {"tags": _Payload()}}, path)
    with caplog.at_level(logging.WARNING):
        assert read_entry(path, "variant") is None
    assert "unreadable" in caplog.text


def test_concurrent_writers_leave_one_whole_file(tmp_path: Path) -> None:
    path = tmp_path / FOLDER / "model-key.pt"
    modules = [nn.Linear(64, 64) for _ in range(4)]
    threads = [
        threading.Thread(target=write_entry, args=(module, {"tags": {"n": str(index)}}, path))
        for index, module in enumerate(modules)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    entry = read_entry(path, "test")
    assert entry is not None
    state, meta = entry
    written = modules[int(meta["tags"]["n"])].state_dict()
    assert all(torch.equal(state[key], written[key]) for key in written)
    assert [file.name for file in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_without_a_cache_dir_nothing_is_written_or_tagged(
    tiny_baseline: ModelArtifact, make_context: Callable[..., VariantContext], tmp_path: Path
) -> None:
    artifact = _build("pruned_unstructured", tiny_baseline, _context(make_context, None, "x"))
    assert metrics.VARIANT_CACHED_TAG not in artifact.tags
    assert not (tmp_path / FOLDER).exists()


def test_no_fine_tune_writes_no_file(
    tiny_baseline: ModelArtifact, make_context: Callable[..., VariantContext], tmp_path: Path
) -> None:
    _build("pruned_structured", tiny_baseline, _context(make_context, tmp_path, "x", fine_tune_epochs="0"))
    assert _files(tmp_path) == []


#: The int8 recipes that calibrate an ONNX file, and the function that does it.
_QUANTIZERS = {
    "quantized_int8_ort": "mlperf_track.variants.quantize_ort.quantize_qdq",
    "quantized_int8_nncf": "mlperf_track.variants.quantize_nncf.quantize_with_nncf",
}


def _needs_quantizer(name: str) -> None:
    if name == PT2E:
        reason = get_variant(name).unavailable_reason("cpu")  # an x86 CPU and torchao
        if reason is not None:
            pytest.skip(reason)
        return
    pytest.importorskip("onnxruntime")
    if name.endswith("nncf"):
        pytest.importorskip("nncf")


@pytest.mark.parametrize("name", list(_QUANTIZERS))
def test_int8_recipes_quantize_the_runtimes_cached_export(
    name: str,
    tiny_baseline: ModelArtifact,
    make_context: Callable[..., VariantContext],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _needs_quantizer(name)
    from mlperf_track.runtimes.onnx_export import cached_onnx_exporter, typed_onnx

    exporter = cached_onnx_exporter(tmp_path / "runtimes")
    context = dataclasses.replace(_context(make_context, tmp_path, name), onnx_exporter=exporter)
    first = _build(name, tiny_baseline, context)
    onnx_dir = tmp_path / "runtimes" / "onnx"
    (export,) = onnx_dir.glob("*.onnx")
    # The file the onnxruntime/openvino runtimes look up for the baseline is this one: no second export.
    assert typed_onnx(tiny_baseline, "fp32", onnx_dir) == export

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("exported the baseline again")

    monkeypatch.setattr(torch.onnx, "export", refuse)
    second = _build(name, tiny_baseline, context)
    assert first.onnx_path is not None and second.onnx_path is not None and second.onnx_path.is_file()


@pytest.mark.parametrize("name", list(_QUANTIZERS))
def test_int8_calibration_is_cached_keyed_and_rebuilt_when_unreadable(
    name: str,
    tiny_baseline: ModelArtifact,
    make_context: Callable[..., VariantContext],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _needs_quantizer(name)
    context = _context(make_context, tmp_path, name)
    first = _build(name, tiny_baseline, context)
    assert first.tags[metrics.VARIANT_CACHED_TAG] == "false"
    (entry,) = (tmp_path / FOLDER).glob(f"{name}-*.onnx")
    assert first.onnx_path == entry and first.tags[metrics.VARIANT_CACHE_KEY_TAG] in entry.name

    real = _QUANTIZERS[name]
    calls: list[Path] = []
    module_name, _, function = real.rpartition(".")
    original = getattr(__import__(module_name, fromlist=[function]), function)

    def counting(fp32: Path, output: Path, batches: list[torch.Tensor]) -> Path:
        calls.append(output)
        return original(fp32, output, batches)  # type: ignore[no-any-return]

    monkeypatch.setattr(real, counting)
    second = _build(name, tiny_baseline, context)
    assert calls == [] and second.onnx_path == entry  # calibrated once
    assert second.tags[metrics.VARIANT_CACHED_TAG] == "true"

    other = _build(name, tiny_baseline, _context(make_context, tmp_path, name, calibration_samples="16"))
    assert len(calls) == 1 and other.onnx_path != entry  # other calibration data, other key
    assert other.tags[metrics.VARIANT_CACHE_KEY_TAG] != first.tags[metrics.VARIANT_CACHE_KEY_TAG]

    entry.write_bytes(b"not an onnx model")  # damaged outside the package: rebuilt, never run
    again = _build(name, tiny_baseline, context)
    assert len(calls) == 2 and again.tags[metrics.VARIANT_CACHED_TAG] == "false"
    assert again.onnx_path == entry and entry.stat().st_size > 100
    assert not list((tmp_path / FOLDER).glob("*.partial"))


def test_without_a_cache_dir_the_int8_file_stays_in_the_work_dir(
    tiny_baseline: ModelArtifact, make_context: Callable[..., VariantContext], tmp_path: Path
) -> None:
    pytest.importorskip("onnxruntime")
    artifact = _build("quantized_int8_ort", tiny_baseline, _context(make_context, None, "quantized_int8_ort"))
    assert artifact.onnx_path is not None and artifact.onnx_path.parent == tmp_path / "work"
    assert metrics.VARIANT_CACHED_TAG not in artifact.tags


def _pt2e_entries(cache: Path) -> list[Path]:
    return sorted((cache / FOLDER).glob(f"*{PT2E}-*.pt"))


def _refuse_to_quantize(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail if the PT2E flow runs (a hit must not export, calibrate or convert)."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("quantized on a cache hit")

    monkeypatch.setattr("mlperf_track.variants.quantize_pt2e.quantize_pt2e_int8", refuse)


def _same_outputs(first: ModelArtifact, second: ModelArtifact) -> None:
    assert first.module is not None and second.module is not None
    images = torch.randn(5, *first.input_shape, generator=torch.Generator().manual_seed(7))
    with torch.inference_mode():
        assert torch.equal(first.module(images), second.module(images))


def _without_cache_tags(tags: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in tags.items() if name != metrics.VARIANT_CACHED_TAG}


def test_pt2e_second_build_loads_the_cached_graph(
    tiny_baseline: ModelArtifact,
    make_context: Callable[..., VariantContext],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _needs_quantizer(PT2E)
    context = _context(make_context, tmp_path, PT2E)
    first = _build(PT2E, tiny_baseline, context)
    assert first.tags[metrics.VARIANT_CACHED_TAG] == "false"
    (entry,) = _pt2e_entries(tmp_path)
    assert first.tags[metrics.VARIANT_CACHE_KEY_TAG] in entry.name
    torch.load(entry, weights_only=True)  # tensors and plain data only: reading it cannot run code

    other = _build(PT2E, tiny_baseline, _context(make_context, tmp_path, PT2E, calibration_samples="16"))
    assert other.tags[metrics.VARIANT_CACHE_KEY_TAG] != first.tags[metrics.VARIANT_CACHE_KEY_TAG]
    assert len(_pt2e_entries(tmp_path)) == 2  # other calibration data, other entry

    _refuse_to_quantize(monkeypatch)
    second = _build(PT2E, tiny_baseline, context)
    assert second.tags[metrics.VARIANT_CACHED_TAG] == "true"
    assert _without_cache_tags(second.tags) == _without_cache_tags(first.tags)  # quant.* tags of the build
    assert (second.name, second.precision, second.runtime, second.device) == (first.name, "int8", "compile", "cpu")
    assert isinstance(second.module, torch.fx.GraphModule) and not second.module.training
    assert int8_weight_count(second.module) == int(first.tags["quant.int8_weights"]) > 0
    assert _same_weights(first, second)  # the same tensors under the same names: the same size facts
    _same_outputs(first, second)


def test_pt2e_composition_loads_both_steps_from_the_cache(
    tiny_baseline: ModelArtifact,
    make_context: Callable[..., VariantContext],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = f"pruned_structured+{PT2E}"
    reason = get_variant(name).unavailable_reason("cpu")
    if reason is not None:
        pytest.skip(reason)
    context = _context(make_context, tmp_path, name)
    first = _build(name, tiny_baseline, context)
    _no_training(monkeypatch)
    _refuse_to_quantize(monkeypatch)
    second = _build(name, tiny_baseline, context)  # the pruned weights load, so the PT2E key is the same
    assert (first.tags[metrics.VARIANT_CACHED_TAG], second.tags[metrics.VARIANT_CACHED_TAG]) == ("false", "true")
    _same_outputs(first, second)


def test_pt2e_key_covers_the_source_state_calibration_and_settings(
    tiny_baseline: ModelArtifact, make_context: Callable[..., VariantContext], tmp_path: Path
) -> None:
    context = _context(make_context, tmp_path, PT2E)
    key = pt2e_key(PT2E, tiny_baseline, context, 256, EXPORT_SETTINGS)
    assert key == pt2e_key(PT2E, tiny_baseline, context, 256, dict(EXPORT_SETTINGS))
    assert tiny_baseline.module is not None
    data = dataclasses.replace(context.data, name="other")
    changed = [
        pt2e_key(
            PT2E,
            dataclasses.replace(tiny_baseline, module=_perturbed(tiny_baseline.module)),
            context,
            256,
            EXPORT_SETTINGS,
        ),
        pt2e_key(PT2E, dataclasses.replace(tiny_baseline, name="other"), context, 256, EXPORT_SETTINGS),
        pt2e_key(PT2E, tiny_baseline, context, 16, EXPORT_SETTINGS),
        pt2e_key(PT2E, tiny_baseline, dataclasses.replace(context, seed=1), 256, EXPORT_SETTINGS),
        pt2e_key(PT2E, tiny_baseline, dataclasses.replace(context, image_size=32), 256, EXPORT_SETTINGS),
        pt2e_key(PT2E, tiny_baseline, dataclasses.replace(context, data=data), 256, EXPORT_SETTINGS),
        pt2e_key(PT2E, tiny_baseline, context, 256, {**EXPORT_SETTINGS, "max_batch": 8}),
    ]
    assert key not in changed and len(set(changed)) == len(changed)


def _spoil_graph(path: Path, baseline: ModelArtifact) -> None:
    """A whole, readable entry whose graph calls something that is not a torch operator."""
    entry = read_entry(path, "test")
    assert entry is not None
    state, meta = entry
    call = next(node for node in meta["graph"]["nodes"] if node["op"] == "call_function")
    call["target"] = "builtins.exec.default"
    torch.save({"state_dict": state, "meta": meta}, path)


@pytest.mark.parametrize(
    "fault",
    [_Fault(PT2E, _truncate, "unreadable"), _Fault(PT2E, _spoil_graph, "no usable graph")],
    ids=["truncated", "not-a-torch-operator"],
)
def test_pt2e_entry_that_cannot_be_used_is_rebuilt_with_a_warning(
    fault: _Fault,
    tiny_baseline: ModelArtifact,
    make_context: Callable[..., VariantContext],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _needs_quantizer(PT2E)
    context = _context(make_context, tmp_path, PT2E)
    first = _build(PT2E, tiny_baseline, context)
    (entry,) = _pt2e_entries(tmp_path)
    fault.corrupt(entry, tiny_baseline)
    with caplog.at_level(logging.WARNING):
        second = _build(PT2E, tiny_baseline, context)
    assert second.tags[metrics.VARIANT_CACHED_TAG] == "false"
    assert fault.logged in caplog.text and entry.name in caplog.text
    _same_outputs(first, second)  # calibration is seeded: the same graph again
    third = _build(PT2E, tiny_baseline, context)
    assert third.tags[metrics.VARIANT_CACHED_TAG] == "true"  # rewritten whole
    _same_outputs(first, third)


def test_pt2e_without_a_cache_dir_nothing_is_written_or_tagged(
    tiny_baseline: ModelArtifact, make_context: Callable[..., VariantContext], tmp_path: Path
) -> None:
    _needs_quantizer(PT2E)
    artifact = _build(PT2E, tiny_baseline, _context(make_context, None, PT2E))
    assert isinstance(artifact.module, torch.fx.GraphModule)
    assert metrics.VARIANT_CACHED_TAG not in artifact.tags and metrics.VARIANT_CACHE_KEY_TAG not in artifact.tags
    assert not (tmp_path / FOLDER).exists()


def _small_graph() -> torch.fx.GraphModule:
    """``x * w + 1`` with aten operators, as a converted PT2E graph calls them."""
    graph = torch.fx.Graph()
    images = graph.placeholder("x")
    weight = graph.get_attr("block.0.w")
    product = graph.call_function(torch.ops.aten.mul.Tensor, (images, weight))
    total = graph.call_function(torch.ops.aten.add.Tensor, (product, 1), {"alpha": 2})
    graph.output(graph.call_function(torch.ops.aten.to.dtype, (total, torch.float64)))
    return torch.fx.GraphModule({"block.0.w": torch.arange(3.0)}, graph)


def test_stored_graph_round_trips() -> None:
    module = _small_graph()
    rebuilt = graph_from_data(graph_to_data(module), module.state_dict())
    images = torch.randn(2, 3)
    assert torch.equal(rebuilt(images), module(images)) and rebuilt(images).dtype == torch.float64


def _node(data: dict[str, object], op: str) -> dict[str, object]:
    nodes = data["nodes"]
    assert isinstance(nodes, list)
    return next(node for node in nodes if node["op"] == op)  # type: ignore[no-any-return]


def _set(op: str, field: str, value: object) -> Callable[[dict[str, object]], None]:
    def spoil(data: dict[str, object]) -> None:
        _node(data, op)[field] = value

    return spoil


def _rename_the_last_call(data: dict[str, object]) -> None:
    """Give the last call a name that is code (and make the output refer to it, so only the name is wrong)."""
    nodes = data["nodes"]
    assert isinstance(nodes, list)
    nodes[-2]["name"] = "x = __import__('os').getpid()"
    nodes[-1]["args"] = {"tuple": [{"node": nodes[-2]["name"]}]}


@pytest.mark.parametrize(
    "spoil",
    [
        _set("call_function", "target", "builtins.exec.default"),
        _set("call_function", "target", "os.system"),
        _rename_the_last_call,
        _set("get_attr", "target", 'w", __import__("os").getpid()) #'),
        _set("placeholder", "target", "x=print()"),
        _set("placeholder", "target", "x.y"),
        _set("call_function", "kwargs", {"alpha=print(), beta": 1}),
        _set("call_function", "args", {"tuple": [{"eval": "1 + 1"}]}),
        _set("call_function", "args", {"tuple": [{"dtype": "load"}, 1]}),
        _set("call_function", "args", {"tuple": [{"node": "not_yet_defined"}, 1]}),
        _set("output", "op", "call_module"),
    ],
    ids=[
        "exec",
        "not-an-overload",
        "name",
        "attribute",
        "input",
        "dotted-input",
        "keyword",
        "tag",
        "dtype",
        "node",
        "kind",
    ],
)
def test_stored_graph_refuses_anything_but_operators_and_identifiers(
    spoil: Callable[[dict[str, object]], None],
) -> None:
    data = graph_to_data(_small_graph())
    spoil(data)
    state = {str(_node(data, "get_attr")["target"]): torch.arange(3.0)}  # the tensor under the (spoiled) path
    with pytest.raises(GraphFormatError):
        graph_from_data(data, state)


def test_stored_graph_needs_exactly_its_tensors() -> None:
    module = _small_graph()
    data = graph_to_data(module)
    with pytest.raises(GraphFormatError, match="missing"):
        graph_from_data(data, {})
    with pytest.raises(GraphFormatError, match="unexpected"):
        graph_from_data(data, {**module.state_dict(), "extra": torch.zeros(1)})


def test_a_graph_the_format_cannot_hold_is_refused() -> None:
    traced = torch.fx.symbolic_trace(nn.Sequential(nn.Linear(3, 2)))  # calls a submodule, not an operator
    with pytest.raises(GraphFormatError, match="call_module"):
        graph_to_data(traced)


_BUILD_IN_A_NEW_PROCESS = """
import json, sys
from pathlib import Path
import torch._inductor.config as inductor
from mlperf_track.data.registry import load_dataset
from mlperf_track.models.registry import load_model
from mlperf_track.variants.base import VariantContext
from mlperf_track.variants.baseline import prepare_baseline
from mlperf_track.variants.registry import get_variant

cache = Path(sys.argv[1])
data = load_dataset("digits", image_size=16, seed=0)
baseline = prepare_baseline(load_model("tinycnn"), data, image_size=16, epochs=1, device="cpu", seed=0, cache_dir=cache)
before = inductor.pre_grad_custom_pass is not None
context = VariantContext(device="cpu", data=data, image_size=16, seed=0, epochs=1,
                         options={"calibration_samples": "16"}, work_dir=cache / "work", cache_dir=cache)
artifact = get_variant("quantized_int8_pt2e").build(baseline.artifact, context)
print(json.dumps({"cached": artifact.tags["variant.cached"], "before": before,
                  "fusion_passes": inductor.pre_grad_custom_pass is not None}))
"""


def test_pt2e_graph_loaded_in_a_new_process_gets_the_inductor_int8_fusion_passes(tmp_path: Path) -> None:
    """Importing torchao's X86 Inductor quantizer registers the passes that fuse the graph's quantize/dequantize
    ops into oneDNN int8 kernels; a process that only loads the cached graph must register them too (without,
    resnet50's cached int8 graph ran 4-5x slower, unfused)."""
    import json
    import subprocess
    import sys

    _needs_quantizer(PT2E)
    runs = [
        subprocess.run(
            [sys.executable, "-c", _BUILD_IN_A_NEW_PROCESS, str(tmp_path)],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        )
        for _ in range(2)
    ]
    fresh, loaded = (json.loads(run.stdout.strip().splitlines()[-1]) for run in runs)
    assert (fresh["cached"], loaded["cached"]) == ("false", "true")
    assert not loaded["before"] and loaded["fusion_passes"]
    assert fresh["fusion_passes"]
