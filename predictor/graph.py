"""An ONNX graph with static shapes, producers, consumers and constants resolved.

Kernel detection reads everything through this view: the shape of any tensor (from
``onnx.shape_inference.infer_shapes`` after fixing symbolic input dimensions), which node
produces a tensor, which nodes consume it, and the value of a tensor when it is constant.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

FOLDABLE = {
    "Shape", "Slice", "Concat", "Gather", "Unsqueeze", "Squeeze", "Cast", "Mul", "Add", "Sub",
    "Div", "Range", "Equal", "Where", "Constant", "ConstantOfShape", "Reshape", "Size",
}  # fmt: skip


SMALL = 64
"""Constants of at most this many elements are what folding reads; larger ones (weights)
only need their shape."""


def _fold_shapes(model: onnx.ModelProto, rounds: int = 4) -> onnx.ModelProto:
    """Shape inference with the weights set aside: ``infer_shapes`` serialises the whole
    model on every call, so it runs on a copy whose large initializers are graph inputs of
    the same type and shape; the weights go back into the result afterwards (in place:
    ``model`` is the caller's own copy)."""
    graph = model.graph
    heavy = [i for i in graph.initializer if int(np.prod(i.dims, dtype=np.int64)) > SMALL]
    if not heavy:
        return _fold(model, rounds)
    names = {i.name for i in heavy}
    declared = {v.name for v in graph.input}
    small = [i for i in graph.initializer if i.name not in names]
    del graph.initializer[:]
    graph.initializer.extend(small)
    added = [
        onnx.helper.make_tensor_value_info(i.name, i.data_type, list(i.dims))
        for i in heavy
        if i.name not in declared
    ]
    graph.input.extend(added)
    out = _fold(model, rounds)
    gone = {v.name for v in added}
    inputs = [v for v in out.graph.input if v.name not in gone]
    del out.graph.input[:]
    out.graph.input.extend(inputs)
    out.graph.initializer.extend(heavy)
    return out


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


def _static(model: onnx.ModelProto, dims: Mapping[str, int]) -> onnx.ModelProto:
    """Copy of ``model`` whose symbolic/unknown input dimensions are fixed (default 1)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = {i.name for i in out.graph.initializer}
    for value in out.graph.input:
        if value.name in inits:
            continue
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_value") and dim.dim_value > 0:
                continue
            dim.dim_value = int(dims.get(dim.dim_param, 1))
    return out


class OnnxGraph:
    """Read-only view of one ONNX graph with inferred static shapes."""

    def __init__(self, model: onnx.ModelProto, dims: Mapping[str, int] | None = None) -> None:
        fixed = _static(model, dims or {})
        self.model = _fold_shapes(fixed)
        graph = self.model.graph
        self.nodes: list[onnx.NodeProto] = list(graph.node)
        for i, node in enumerate(self.nodes):
            if not node.name:
                node.name = f"{node.op_type}_{i}"
        self.constants: dict[str, np.ndarray] = {
            init.name: numpy_helper.to_array(init) for init in graph.initializer
        }
        for node in self.nodes:
            if node.op_type == "Constant":
                for attr in node.attribute:
                    if attr.name == "value":
                        self.constants[node.output[0]] = numpy_helper.to_array(attr.t)
            elif node.op_type == "Identity" and node.input[0] in self.constants:
                self.constants[node.output[0]] = self.constants[node.input[0]]
        self.shapes: dict[str, list[int]] = {}
        for value in [*graph.input, *graph.value_info, *graph.output]:
            tensor_type = value.type.tensor_type
            if tensor_type.HasField("shape"):
                dims_ = [
                    d.dim_value if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim
                ]
                self.shapes[value.name] = dims_
        for name, arr in self.constants.items():
            self.shapes.setdefault(name, list(arr.shape))
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in self.nodes:
            for out in node.output:
                self.producer[out] = node
            for inp in node.input:
                if inp:
                    self.consumers[inp].append(node)
        self.position = {node.name: i for i, node in enumerate(self.nodes)}
        self.graph_outputs = {o.name for o in graph.output}
        self.graph_inputs = [i.name for i in graph.input if i.name not in self.constants]

    def shape(self, tensor: str) -> list[int]:
        return self.shapes.get(tensor, [])

    def const(self, tensor: str) -> np.ndarray | None:
        return self.constants.get(tensor)

    def is_const(self, tensor: str) -> bool:
        return tensor in self.constants

    def scalar(self, tensor: str) -> float | None:
        """The value of a constant tensor holding a single number, else None."""
        arr = self.constants.get(tensor)
        if arr is None or arr.size != 1:
            return None
        return float(arr.reshape(-1)[0])

    def attr(self, node: onnx.NodeProto, name: str, default: object = None) -> object:
        for a in node.attribute:
            if a.name == name:
                return onnx.helper.get_attribute_value(a)
        return default

    def attr_int(self, node: onnx.NodeProto, name: str, default: int) -> int:
        value = self.attr(node, name, default)
        return int(value) if isinstance(value, int) else default

    def attr_ints(self, node: onnx.NodeProto, name: str) -> list[int]:
        value = self.attr(node, name)
        return [int(v) for v in value] if isinstance(value, list | tuple) else []

    def source(self, tensor: str) -> onnx.NodeProto | None:
        return self.producer.get(tensor)

    def users(self, tensor: str) -> list[onnx.NodeProto]:
        return self.consumers.get(tensor, [])
