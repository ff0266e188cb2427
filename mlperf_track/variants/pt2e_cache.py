"""The on-disk cache of ``quantized_int8_pt2e``: the converted int8 graph, kept as data, never as code.

Building the variant exports the float32 model, calibrates observers on a few hundred images and converts; for
resnet50 at 64 px on two cores that is about 8 s per run (loading the entry: 0.15 s), and again inside every
composition ending with it. The result is the same for the same input, so it is kept under
``cache_dir/variants`` like the retrained variants (:mod:`~mlperf_track.variants.variant_cache`) and the ONNX
int8 recipes (:mod:`~mlperf_track.variants.quantized_file_cache`). The key (:func:`pt2e_key`) is everything
that changes the graph: the recipe, the float32 module (its name, input shape and a hash of every tensor of its
state), the export settings, the calibration images (dataset, split sizes, image size, count, seed) and the
torch and torchao versions.

An entry is a :mod:`~mlperf_track.variants.weights_cache` file, read back with ``torch.load(weights_only=True)``:
the graph module's tensors, and its graph as a list of nodes of plain data (:func:`graph_to_data`). It is not a
``torch.export.save`` archive because, in torch 2.14.1, ``torch.export.load`` can run code from the file: it
``torch.load(weights_only=False)``-s tensors the archive marks as pickled, retries sample inputs that fail the
safe load with ``weights_only=False``, ``pickle.loads`` opaque constants, and parses the program's symbolic
shape expressions with ``sympy.sympify`` (which evaluates Python). Rebuilding a graph from data
(:func:`graph_from_data`) runs no code from the file: calls are looked up among registered torch operators
(``<namespace>.<op>.<overload>``) or ``operator.getitem``, arguments are nodes, numbers, strings, dtypes, lists
and tuples, and names must be Python identifiers (FX writes them into the source it generates). The rebuilt
module is a plain ``torch.fx.GraphModule`` with the same nodes and tensors; it leaves out the input-shape check
that ``torch.export`` adds (``_guards_fn``, Python code), and, unlike an exported module, it accepts ``eval()``.
Inductor traces the same operators from it: with freezing, as the ``compile`` runtime runs it, the code Inductor
generates for resnet18 and resnet50 is the same line for line as for the freshly converted graph.

A graph this format cannot hold (another kind of node or argument) is logged and not cached; an entry that is
unreadable or holds no usable graph is logged and rebuilt (and rewritten).
"""

from __future__ import annotations

import keyword
import logging
import operator
import re
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.fx.graph import _PyTreeCodeGen
from torch.utils import _pytree as pytree

from mlperf_track.models.artifact import ModelArtifact
from mlperf_track.variants.base import VariantContext
from mlperf_track.variants.quantized_file_cache import quantized_key
from mlperf_track.variants.variant_cache import FOLDER, VariantCache
from mlperf_track.variants.weights_cache import digest, entry_path, weights_fingerprint

logger = logging.getLogger(__name__)

#: Bump when the layout of the stored graph changes meaning.
GRAPH_FORMAT = 1
#: The libraries whose versions change the converted graph.
PACKAGES = ("torch", "torchao")
#: The node kinds a stored graph may hold (``_guards_fn``, a ``call_module``, is left out).
_OPS = ("placeholder", "get_attr", "call_function", "output")
#: Calls that are not torch operators.
_FUNCTIONS: dict[str, Callable[..., Any]] = {"operator.getitem": operator.getitem}
_DTYPES = {str(value).removeprefix("torch."): value for value in vars(torch).values() if isinstance(value, torch.dtype)}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_PART = re.compile(r"[A-Za-z0-9_]+\Z")
_GUARDS = "_guards_fn"

Built = tuple[torch.fx.GraphModule, dict[str, str]]


class GraphFormatError(ValueError):
    """A graph the stored format cannot hold, or stored data that is not such a graph."""


def pt2e_key(
    recipe: str, source: ModelArtifact, context: VariantContext, samples: int, settings: Mapping[str, object]
) -> str:
    """The key of ``recipe`` applied to ``source`` with export ``settings`` and ``samples`` calibration images.

    Raises:
        ValueError: ``source`` has no PyTorch module.
    """
    if source.module is None:
        raise ValueError(f"{source.name} has no PyTorch module")
    identity = {
        "name": source.name,
        "input_shape": list(source.input_shape),
        "weights_sha": weights_fingerprint(source.module),
        "settings": dict(settings),
        "graph_format": GRAPH_FORMAT,
    }
    return quantized_key(recipe, digest(identity), context, samples, PACKAGES)


def pt2e_cache(
    recipe: str, source: ModelArtifact, context: VariantContext, samples: int, settings: Mapping[str, object]
) -> VariantCache:
    """The cache entry of ``recipe`` for ``source`` (off when ``context.cache_dir`` is ``None`` or ``source`` has
    no module)."""
    if context.cache_dir is None or source.module is None:
        return VariantCache(recipe)
    key = pt2e_key(recipe, source, context, samples, settings)
    return VariantCache(recipe, key, entry_path(context.cache_dir, FOLDER, f"{source.name}-{recipe}", key))


def cached_graph(entry: VariantCache, build: Callable[[], Built]) -> Built:
    """The converted graph and its artifact tags: from ``entry``, else made by ``build()`` and written there.

    Returns:
        The module and the tags, with ``variant.cached``/``variant.cache_key`` when caching is on.
    """
    loaded = _load(entry)
    if loaded is not None:
        return loaded
    module, tags = build()
    if entry.path is None:
        return module, tags
    try:
        graph = graph_to_data(module)
    except GraphFormatError as error:
        logger.warning("cannot cache variant %s: %s", entry.recipe, error)
        return module, tags
    return module, entry.save(module, tags, extra={"graph": graph})


def _load(entry: VariantCache) -> Built | None:
    """The cached graph and tags, or ``None`` (off, missing, unreadable or not a usable graph: logged)."""
    found = entry.read()
    if found is None:
        return None
    state, meta = found
    try:
        module = graph_from_data(meta.get("graph"), state)
    except GraphFormatError as error:
        logger.warning(
            "ignoring the cached variant %s %s, which holds no usable graph: %s", entry.recipe, entry.path, error
        )
        return None
    return module.eval(), entry.loaded_tags(meta)


def graph_to_data(graph_module: torch.fx.GraphModule) -> dict[str, Any]:
    """The graph of ``graph_module`` as plain data: its nodes in order and which tensors are parameters.

    The tensors themselves are the module's state dict (every ``get_attr`` target must be in it).

    Raises:
        GraphFormatError: The graph holds a node or an argument the format cannot hold.
    """
    _check_inputs(graph_module)
    state = graph_module.state_dict()
    nodes = [_node_data(graph_module, node, state) for node in graph_module.graph.nodes if not _is_guard(node)]
    parameters = {name: parameter.requires_grad for name, parameter in graph_module.named_parameters()}
    return {"format": GRAPH_FORMAT, "nodes": nodes, "parameters": parameters}


def graph_from_data(data: object, state: Mapping[str, torch.Tensor]) -> torch.fx.GraphModule:
    """The graph module that :func:`graph_to_data` described, holding ``state``'s tensors.

    Raises:
        GraphFormatError: ``data`` is not such a description, or ``state`` does not hold its tensors.
    """
    if not isinstance(data, Mapping) or data.get("format") != GRAPH_FORMAT:
        raise GraphFormatError(f"not a stored graph of format {GRAPH_FORMAT}")
    nodes, parameters = data.get("nodes"), data.get("parameters")
    if not isinstance(nodes, list) or not isinstance(parameters, Mapping):
        raise GraphFormatError("the graph has no node list or parameter map")
    graph = torch.fx.Graph()
    made: dict[str, torch.fx.Node] = {}
    for entry in nodes:
        if not isinstance(entry, Mapping):
            raise GraphFormatError(f"a node is a {type(entry).__name__}")
        made[_identifier(entry.get("name"))] = _make_node(graph, entry, made)
    try:
        graph.lint()
    except RuntimeError as error:
        raise GraphFormatError(f"inconsistent graph: {error}") from error
    return torch.fx.GraphModule(_attributes(graph, state, parameters), graph)


def _is_guard(node: torch.fx.Node) -> bool:
    """``torch.export``'s input-shape check: Python code, so it is not stored (it returns nothing used)."""
    return node.op == "call_module" and node.target == _GUARDS and not node.users


def _check_inputs(graph_module: torch.fx.GraphModule) -> None:
    """Refuse a graph whose inputs are not plain positional tensors (the rebuilt module takes them so)."""
    codegen = graph_module.graph._codegen
    if not isinstance(codegen, _PyTreeCodeGen) or codegen.pytree_info.in_spec is None:
        return
    names = [str(node.target) for node in graph_module.graph.nodes if node.op == "placeholder"]
    plain = pytree.tree_structure((tuple(names), {}))
    if codegen.pytree_info.in_spec != plain or list(codegen.pytree_info.orig_args) != names:
        raise GraphFormatError("the graph's inputs are not plain positional tensors")


def _node_data(
    graph_module: torch.fx.GraphModule, node: torch.fx.Node, state: Mapping[str, torch.Tensor]
) -> dict[str, Any]:
    """One node as data: its kind, name, target and arguments."""
    if node.op not in _OPS:
        raise GraphFormatError(f"cannot store the {node.op} node {node.name}")
    if node.op == "get_attr" and node.target not in state:
        raise GraphFormatError(f"{node.target} is not in the module's state dict")
    target = _function_name(node.target) if node.op == "call_function" else str(node.target)
    args = (_output_value(graph_module, node),) if node.op == "output" else node.args
    return {
        "op": node.op,
        "name": node.name,
        "target": target,
        "args": _encode(args),
        "kwargs": {str(key): _encode(value) for key, value in node.kwargs.items()},
    }


def _output_value(graph_module: torch.fx.GraphModule, node: torch.fx.Node) -> object:
    """What the module returns: an exported graph returns its flat outputs rebuilt by its output spec."""
    value = node.args[0]
    codegen = graph_module.graph._codegen
    if isinstance(codegen, _PyTreeCodeGen) and codegen.pytree_info.out_spec is not None:
        return pytree.tree_unflatten(list(value), codegen.pytree_info.out_spec)  # type: ignore[arg-type]
    return value


def _function_name(target: object) -> str:
    """``<namespace>.<op>.<overload>`` of a torch operator, or the name of another known call."""
    if isinstance(target, torch._ops.OpOverload):
        return f"{target.namespace}.{target.__name__}"
    for name, function in _FUNCTIONS.items():
        if target is function:
            return name
    raise GraphFormatError(f"cannot store a call of {target!r}: not a torch operator")


def _encode(value: object) -> object:
    """An argument as data (a node is referred to by name)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.fx.Node):
        return {"node": value.name}
    if isinstance(value, torch.dtype):
        return {"dtype": str(value).removeprefix("torch.")}
    if isinstance(value, (list, tuple)):
        return {"tuple" if isinstance(value, tuple) else "list": [_encode(item) for item in value]}
    raise GraphFormatError(f"cannot store an argument of type {type(value).__name__}")


def _decode(value: object, nodes: Mapping[str, torch.fx.Node]) -> Any:
    """The argument :func:`_encode` described (nodes must come earlier in the graph)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping) and len(value) == 1:
        ((tag, content),) = value.items()
        if tag == "node" and isinstance(content, str) and content in nodes:
            return nodes[content]
        if tag == "dtype" and isinstance(content, str) and content in _DTYPES:
            return _DTYPES[content]
        if tag in ("list", "tuple") and isinstance(content, list):
            items = [_decode(item, nodes) for item in content]
            return tuple(items) if tag == "tuple" else items
    raise GraphFormatError(f"cannot read the argument {value!r:.80}")


def _make_node(graph: torch.fx.Graph, entry: Mapping[str, Any], nodes: Mapping[str, torch.fx.Node]) -> torch.fx.Node:
    """Add the node ``entry`` describes to ``graph``."""
    op = entry.get("op")
    if op not in _OPS:
        raise GraphFormatError(f"unknown node kind {op!r:.40}")
    target = _target(op, entry.get("target"))
    args, kwargs = _decode(entry.get("args"), nodes), entry.get("kwargs")
    if not isinstance(args, tuple) or not isinstance(kwargs, Mapping):
        raise GraphFormatError(f"node {entry.get('name')!r:.40} has no argument tuple and keyword map")
    decoded = {_identifier(key): _decode(value, nodes) for key, value in kwargs.items()}
    return graph.create_node(op, target, args, decoded, name=_identifier(entry.get("name")))


def _target(op: str, name: object) -> Any:
    """A node's target: an input name, an attribute path, a call, or ``output``."""
    if op == "call_function":
        return _function(name)
    if op == "output" and name != "output":
        raise GraphFormatError(f"the output node's target is {name!r:.40}")
    return _dotted(name) if op == "get_attr" else _identifier(name)


def _function(name: object) -> Callable[..., Any]:
    """The call a stored name refers to: a registered torch operator or one of :data:`_FUNCTIONS`."""
    if isinstance(name, str) and name in _FUNCTIONS:
        return _FUNCTIONS[name]
    parts = name.split(".") if isinstance(name, str) else []
    if len(parts) != 3:
        raise GraphFormatError(f"{name!r:.80} is not <namespace>.<op>.<overload>")
    namespace, op, overload = (_identifier(part) for part in parts)
    try:
        target = getattr(getattr(getattr(torch.ops, namespace), op), overload)
    except (AttributeError, RuntimeError) as error:
        raise GraphFormatError(f"no operator {name} is registered (is its library imported?)") from error
    if not isinstance(target, torch._ops.OpOverload):
        raise GraphFormatError(f"{name} is not an operator overload")
    return target


def _attributes(
    graph: torch.fx.Graph, state: Mapping[str, torch.Tensor], parameters: Mapping[str, object]
) -> dict[str, torch.Tensor]:
    """The graph's ``get_attr`` tensors from ``state`` (parameters as parameters); every tensor must be used."""
    used = {str(node.target) for node in graph.nodes if node.op == "get_attr"}
    if used != set(state):
        missing, extra = sorted(used - set(state)), sorted(set(state) - used)
        raise GraphFormatError(f"the tensors do not match the graph: missing {missing[:3]}, unexpected {extra[:3]}")
    return {
        name: nn.Parameter(state[name], requires_grad=bool(parameters[name])) if name in parameters else state[name]
        for name in used
    }


def _identifier(name: object) -> str:
    """``name`` if it is a Python identifier (FX writes node names into generated source)."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name) or keyword.iskeyword(name):
        raise GraphFormatError(f"{name!r:.80} is not a Python identifier")
    return name


def _dotted(name: object) -> str:
    """``name`` if it is a dotted path of letters, digits and underscores (an attribute of the module, such as
    ``layer1.0.conv1.bias``: FX quotes the parts that are not identifiers, so no part may hold a quote)."""
    if not isinstance(name, str) or not all(_PART.match(part) for part in name.split(".")):
        raise GraphFormatError(f"{name!r:.80} is not an attribute path")
    return name
