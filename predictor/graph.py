"""An ONNX graph with static shapes, producers, consumers and constants resolved.

Kernel detection reads everything through this view: the shape of any tensor (after
fixing symbolic input dimensions: `predictor.shapes.propagate` where it knows every node
and nothing needs folding, else ``onnx.shape_inference.infer_shapes`` on the model without
its weights, with shape computations folded), which node produces a tensor, which nodes
consume it, and the value of a tensor when it is constant.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

from predictor.nodes import GraphNode
from predictor.shapes import propagate

FOLDABLE = {
    "Shape", "Slice", "Concat", "Gather", "Unsqueeze", "Squeeze", "Cast", "Mul", "Add", "Sub",
    "Div", "Range", "Equal", "Where", "Constant", "ConstantOfShape", "Reshape", "Size",
}  # fmt: skip


SMALL = 64
"""Constants of at most this many elements are what folding reads; larger ones (weights)
only need their shape."""
ROUNDS = 4
"""Rounds of shape inference and folding (`_fold`) at most."""


def _fixed_inputs(
    model: onnx.ModelProto, dims: Mapping[str, int], input_shapes: Mapping[str, Sequence[int]]
) -> dict[str, list[int]]:
    """The static shape of every graph input that is no initializer and has a shape:
    ``input_shapes[name]`` where given, else its own with symbolic/unknown dimensions set
    to ``dims[dim_param]`` (default 1)."""
    src = model.graph
    names = {v.name for v in src.input}
    unknown = sorted(set(input_shapes) - names)
    if unknown:
        raise ValueError(f"input_shapes names {unknown}, the model's inputs are {sorted(names)}")
    inits = {i.name for i in src.initializer}
    out: dict[str, list[int]] = {}
    for value in src.input:
        if value.name in input_shapes:
            given = [int(d) for d in input_shapes[value.name]]
            keep = value.name in inits  # an initializer's declared shape is left as given
            out[value.name] = [d if d > 0 or keep else int(dims.get("", 1)) for d in given]
        elif value.name in inits:
            continue
        elif value.type.tensor_type.HasField("shape"):
            out[value.name] = [
                d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else int(dims.get(d.dim_param, 1))
                for d in value.type.tensor_type.shape.dim
            ]  # fmt: skip
    return out


def _skeleton(
    model: onnx.ModelProto, fixed: Mapping[str, Sequence[int]]
) -> tuple[onnx.ModelProto, dict[str, onnx.TensorProto]]:
    """A new model with ``model``'s nodes and the ``fixed`` input shapes (`_fixed_inputs`),
    its large initializers (weights: more than `SMALL` elements) left out as graph inputs
    of the same type and shape, and those initializers by name. The weights are never
    copied: ``infer_shapes`` serialises the whole model on every call, and detection only
    needs their shapes (`OnnxGraph.const` converts one on demand)."""
    src = model.graph
    names = {v.name for v in src.input}
    heavy = {i.name: i for i in src.initializer if _elems(i.dims) > SMALL or _external(i)}
    out = onnx.ModelProto(ir_version=model.ir_version)
    out.opset_import.extend(model.opset_import)
    out.functions.extend(model.functions)
    graph = out.graph
    graph.name = src.name
    graph.node.extend(src.node)
    graph.initializer.extend(i for i in src.initializer if i.name not in heavy)
    graph.sparse_initializer.extend(src.sparse_initializer)
    graph.output.extend(src.output)
    graph.value_info.extend(src.value_info)
    graph.input.extend(src.input)
    for value in graph.input:
        if value.name in fixed:
            shape = value.type.tensor_type.shape.dim
            del shape[:]
            for d in fixed[value.name]:
                shape.add().dim_value = int(d)
    graph.input.extend(
        onnx.helper.make_tensor_value_info(i.name, i.data_type, list(i.dims))
        for i in heavy.values()
        if i.name not in names
    )
    return out, heavy


def _elems(dims: Sequence[int]) -> int:
    n = 1
    for d in dims:
        n *= int(d)
    return n


def _external(t: onnx.TensorProto) -> bool:
    """Whether ``t``'s values live in an external data file (an archived ONNX's graph member
    is read without them: only its shape counts here)."""
    return t.data_location == onnx.TensorProto.EXTERNAL


def _mirror(nodes: Sequence[onnx.NodeProto]) -> list[GraphNode]:
    """``nodes`` as `GraphNode`, unnamed ones named ``{op_type}_{index}``."""
    return [GraphNode(n, n.name or f"{n.op_type}_{i}") for i, n in enumerate(nodes)]


def _own_shapes(
    model: onnx.ModelProto,
    fixed: Mapping[str, list[int]],
    inits: Mapping[str, list[int]],
    small: Sequence[onnx.TensorProto],
    nodes: Sequence[GraphNode],
) -> tuple[dict[str, list[int]], dict[str, np.ndarray]] | None:
    """Every tensor's shape by `predictor.shapes.propagate` and the small constants' values
    (``inits``: the initializers' shapes), or None where ``infer_shapes`` must run: a node
    it does not know, a node that `_fold` would fold (a ``Shape``, an op of `FOLDABLE` on
    small constants only), an input without a shape, an initializer declared as an input,
    model-local functions, or a declared shape it disagrees with."""
    src = model.graph
    if (
        model.functions
        or src.sparse_initializer
        or any(v.name in inits or v.name not in fixed for v in src.input)
    ):
        return None
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    consts = {i.name: numpy_helper.to_array(i) for i in small}
    for node in nodes:
        if node.op_type == "Constant":
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            if value is not None and _elems(value.dims) <= SMALL:
                consts[node.output[0]] = numpy_helper.to_array(value)
        elif (
            node.op_type in FOLDABLE
            and len(node.output) == 1
            and (node.op_type == "Shape" or all(i in consts for i in node.input if i))
        ):
            return None
    if opset is None:
        return None
    start = {**fixed, **inits}
    shapes = propagate(nodes, start, consts, opset)
    if shapes is None:
        return None
    for v in [*src.value_info, *src.output]:
        t = v.type.tensor_type
        if not t.HasField("shape"):
            continue
        got = shapes.get(v.name)
        if got is None or len(got) != len(t.shape.dim):
            return None
        if any(
            d.HasField("dim_value") and d.dim_value != g
            for d, g in zip(t.shape.dim, got, strict=True)
        ):
            return None
    return shapes, consts


def _fold(model: onnx.ModelProto, rounds: int) -> onnx.ModelProto:
    """Shape inference, with shape computations (Shape -> Slice -> Concat -> Reshape, as
    tracing exporters write them) folded to constants until the shapes settle."""
    for _ in range(rounds):
        model = shape_inference.infer_shapes(model, data_prop=True)
        graph = model.graph
        known: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        shapes: dict[str, list[int]] = {}
        for v in [*graph.input, *graph.value_info, *graph.output]:
            t = v.type.tensor_type
            if t.HasField("shape") and all(d.HasField("dim_value") for d in t.shape.dim):
                shapes[v.name] = [d.dim_value for d in t.shape.dim]
        folded: dict[str, np.ndarray] = {}
        drop: set[int] = set()
        for idx, node in enumerate(graph.node):
            if node.op_type not in FOLDABLE or len(node.output) != 1:
                continue
            ins = [i for i in node.input if i]
            if node.op_type == "Constant":
                value_attr = next((a for a in node.attribute if a.name == "value"), None)
                if value_attr is not None:
                    known[node.output[0]] = numpy_helper.to_array(value_attr.t)
                continue
            if node.op_type == "Shape":
                if ins[0] not in shapes:
                    continue
                shape = shapes[ins[0]]
                start = int(next((a.i for a in node.attribute if a.name == "start"), 0))
                end = next((a.i for a in node.attribute if a.name == "end"), None)
                value = np.array(shape[start:end], dtype=np.int64)
            elif not all(i in known for i in ins) or any(known[i].size > SMALL for i in ins):
                continue
            else:
                value = _evaluate(node, [known[i] for i in ins], ins)
            known[node.output[0]] = folded[node.output[0]] = value
            drop.add(idx)
        if not drop:
            return model
        keep = [n for i, n in enumerate(graph.node) if i not in drop]
        del graph.node[:]
        graph.node.extend(keep)
        graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in folded.items())
    return shape_inference.infer_shapes(model, data_prop=True)


def _evaluate(node: onnx.NodeProto, values: list[np.ndarray], names: list[str]) -> np.ndarray:
    from onnx.reference import ReferenceEvaluator

    (out,) = ReferenceEvaluator(node).run(None, dict(zip(names, values, strict=True)))
    return np.asarray(out)


class OnnxGraph:
    """Read-only view of one ONNX graph with inferred static shapes: by
    `predictor.shapes.propagate` where it knows every node and nothing folds (``inference``
    ``"own"``), else by ``infer_shapes`` with folding on the weightless `_skeleton`
    (``"onnx"``; ``inference="onnx"`` forces it)."""

    def __init__(
        self,
        model: onnx.ModelProto,
        dims: Mapping[str, int] | None = None,
        input_shapes: Mapping[str, Sequence[int]] | None = None,
        inference: Literal["auto", "onnx"] = "auto",
    ) -> None:
        fixed = _fixed_inputs(model, dims or {}, input_shapes or {})
        src = model.graph
        inits: dict[str, list[int]] = {}
        heavy: dict[str, onnx.TensorProto] = {}
        small: list[onnx.TensorProto] = []
        for init in src.initializer:
            inits[init.name] = shape = list(init.dims)
            if _elems(shape) > SMALL or _external(init):
                heavy[init.name] = init
            else:
                small.append(init)
        nodes = _mirror(src.node)
        own = _own_shapes(model, fixed, inits, small, nodes) if inference == "auto" else None
        self.inference: Literal["own", "onnx"] = "own" if own is not None else "onnx"
        graph = src
        if own is None:
            graph = _fold(_skeleton(model, fixed)[0], ROUNDS).graph
            nodes, small = _mirror(graph.node), list(graph.initializer)
            consts = {init.name: numpy_helper.to_array(init) for init in small}
        else:
            consts = own[1]
        self.nodes: list[GraphNode] = nodes
        self._weights: dict[str, onnx.TensorProto] = dict(heavy)
        self.constants: dict[str, np.ndarray] = consts
        self.shapes: dict[str, list[int]] = own[0] if own is not None else {}
        self.producer: dict[str, GraphNode] = {}
        self.consumers: dict[str, list[GraphNode]] = defaultdict(list)
        for node in self.nodes:
            op = node.op_type
            if op == "Constant" and node.output[0] not in self.constants:
                for attr in node.attribute:
                    if attr.name == "value":
                        if _elems(attr.t.dims) > SMALL:
                            self._weights[node.output[0]] = attr.t
                        else:
                            self.constants[node.output[0]] = numpy_helper.to_array(attr.t)
            elif op == "Identity" and node.input[0] in self.constants:
                self.constants[node.output[0]] = self.constants[node.input[0]]
            elif op == "Identity" and node.input[0] in self._weights:
                self._weights[node.output[0]] = self._weights[node.input[0]]
            for out in node.output:
                self.producer[out] = node
            for inp in node.input:
                if inp:
                    self.consumers[inp].append(node)
        for value in [] if own is not None else [*graph.input, *graph.value_info, *graph.output]:
            tensor_type = value.type.tensor_type
            if tensor_type.HasField("shape"):
                dims_ = [
                    d.dim_value if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim
                ]
                self.shapes[value.name] = dims_
        for name, arr in self.constants.items():
            self.shapes.setdefault(name, list(arr.shape))
        for name, tensor in self._weights.items():
            self.shapes.setdefault(name, inits.get(name) or [int(d) for d in tensor.dims])
        self.position = {node.name: i for i, node in enumerate(self.nodes)}
        self.graph_outputs = {o.name for o in graph.output}
        self.graph_inputs = [i.name for i in model.graph.input if not self.is_const(i.name)]

    def shape(self, tensor: str) -> list[int]:
        return self.shapes.get(tensor, [])

    def const(self, tensor: str) -> np.ndarray | None:
        if tensor in self._weights:  # values of external data are not read (None)
            w = self._weights[tensor]
            return None if _external(w) else numpy_helper.to_array(w)
        return self.constants.get(tensor)

    def is_const(self, tensor: str) -> bool:
        return tensor in self.constants or tensor in self._weights

    def scalar(self, tensor: str) -> float | None:
        """The value of a constant tensor holding a single number, else None."""
        arr = self.constants.get(tensor)
        if arr is None or arr.size != 1:
            return None
        return float(arr.reshape(-1)[0])

    def attr(self, node: GraphNode, name: str, default: object = None) -> object:
        return node.attrs.get(name, default)

    def attr_int(self, node: GraphNode, name: str, default: int) -> int:
        value = self.attr(node, name, default)
        return int(value) if isinstance(value, int) else default

    def attr_ints(self, node: GraphNode, name: str) -> list[int]:
        value = self.attr(node, name)
        return [int(v) for v in value] if isinstance(value, list | tuple) else []

    def source(self, tensor: str) -> GraphNode | None:
        return self.producer.get(tensor)

    def users(self, tensor: str) -> list[GraphNode]:
        return self.consumers.get(tensor, [])
