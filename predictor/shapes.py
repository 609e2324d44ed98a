"""Static shape propagation for the ops kernel detection meets, in Python.

`propagate` computes every node output's shape from static input shapes, node by node in
graph order, with ONNX's own shape-inference rules for ~60 ops (elementwise, broadcasting
binaries, Conv/pooling, Gemm/MatMul, reductions, the view ops). It gives up (None) on
anything it does not know exactly: an op outside `UNARY`/`RULES`, a domain other than the
default, a shape input that is not a constant, a dimension it cannot compute; the caller
then runs ``onnx.shape_inference`` (`predictor.graph`). It skips ``infer_shapes``' model
serialisation and C++ round trip; tests/test_predictor_shapes.py checks it against
``infer_shapes`` on the reference architectures and the NAS-space networks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from predictor.nodes import GraphNode

Shape = list[int]


class Unknown(Exception):
    """A node whose output shapes this module does not compute (exactly)."""


UNARY = {
    "Relu", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Erf", "Sqrt", "Gelu",
    "Softmax", "LogSoftmax", "Identity", "Cast", "Clip", "BatchNormalization", "Exp", "Log",
    "Abs", "Neg", "Reciprocal", "Softplus", "Elu", "Selu", "Mish", "Floor", "Ceil", "Round",
    "Sign", "Not", "Dropout", "LRN", "InstanceNormalization",
}  # fmt: skip
"""Ops whose (first) output has the shape of their first input."""
AXES_INPUT = {"Squeeze": 13, "Unsqueeze": 13, "ReduceSum": 13, "ReduceMean": 18, "ReduceMax": 18}
"""The opset from which these ops read their axes from input 1 instead of an attribute."""
BROADCAST = {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Equal", "Less", "Greater", "Where"}


class Node:
    """One node's attributes and input shapes, what a rule reads."""

    def __init__(
        self,
        node: GraphNode,
        shapes: Mapping[str, Shape],
        consts: Mapping[str, np.ndarray],
        opset: int,
    ) -> None:
        self.node = node
        self.opset = opset
        self.inputs: list[Shape | None] = [shapes[i] if i else None for i in node.input]
        self._consts = consts

    @property
    def attrs(self) -> dict[str, object]:
        return self.node.attrs

    def shape(self, i: int) -> Shape:
        s = self.inputs[i] if i < len(self.inputs) else None
        if s is None:
            raise Unknown(f"input {i}")
        return s

    def value(self, i: int) -> list[int] | None:
        """The integer values of constant input ``i`` (None when it is absent)."""
        if i >= len(self.node.input) or not self.node.input[i]:
            return None
        arr = self._consts.get(self.node.input[i])
        if arr is None:
            raise Unknown(f"input {i} is not a constant")
        return [int(v) for v in arr.reshape(-1)]

    def ints(self, name: str) -> list[int] | None:
        v = self.attrs.get(name)
        return [int(x) for x in v] if isinstance(v, list | tuple) else None

    def int_attr(self, name: str, default: int) -> int:
        v = self.attrs.get(name, default)
        if not isinstance(v, int):
            raise Unknown(name)
        return v

    def axes(self) -> list[int] | None:
        """Axes from the attribute (before the opset that made them input 1) or input 1."""
        return self.ints("axes") if self.opset < AXES_INPUT[self.node.op_type] else self.value(1)


def _axis(a: int, rank: int) -> int:
    if not -rank <= a < rank:
        raise Unknown(f"axis {a} of rank {rank}")
    return a + rank if a < 0 else a


def _broadcast(n: Node) -> list[Shape]:
    out = broadcast([n.shape(i) for i in range(len(n.inputs))])
    if out is None:
        raise Unknown("broadcast")
    return [out]


def broadcast(shapes: Sequence[Shape]) -> Shape | None:
    """The multidirectional (numpy) broadcast of ``shapes``; None when they do not."""
    out = list(shapes[0])
    for s in shapes[1:]:
        if s == out:
            continue
        if len(s) > len(out):
            out = [1] * (len(s) - len(out)) + out
        for i in range(1, len(s) + 1):
            a, b = out[-i], s[-i]
            if a != b:
                if a != 1 and b != 1:
                    return None
                out[-i] = b if a == 1 else a
    return out


def _conv_pool(n: Node, channels: int, kernel: Sequence[int], dilation: bool) -> list[Shape]:
    x = n.shape(0)
    spatial = len(x) - 2
    if spatial < 1 or len(kernel) != spatial or n.int_attr("ceil_mode", 0):
        raise Unknown("conv/pool")
    dil = (n.ints("dilations") if dilation else None) or [1] * spatial
    if not dilation and "dilations" in n.attrs:
        raise Unknown("dilations")
    strides = n.ints("strides") or [1] * spatial
    eff = [(k - 1) * d + 1 for k, d in zip(kernel, dil, strict=True)]
    pads = n.ints("pads")
    if pads is None:
        pads = [0] * (2 * spatial)
        auto = n.attrs.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else str(auto)
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            for i in range(spatial):
                residual = x[2 + i] % strides[i] if strides[i] > 1 else 0
                total = max(eff[i] - (residual or strides[i]), 0)
                small, big = total >> 1, total - (total >> 1)
                pads[i], pads[i + spatial] = (small, big) if auto == "SAME_UPPER" else (big, small)
        elif auto not in ("NOTSET", "VALID"):
            raise Unknown(auto)
    if len(pads) != 2 * spatial or len(strides) != spatial or len(dil) != spatial:
        raise Unknown("conv/pool attributes")
    out = [x[0], channels]
    for i in range(spatial):
        num = x[2 + i] + pads[i] + pads[i + spatial] - eff[i]
        if num < 0:
            raise Unknown("kernel larger than its input")
        out.append(num // strides[i] + 1)
    return [out] * len(n.node.output)


def _conv(n: Node) -> list[Shape]:
    w = n.shape(1)
    return _conv_pool(n, w[0], n.ints("kernel_shape") or w[2:], True)


def _pool(n: Node) -> list[Shape]:
    kernel = n.ints("kernel_shape")
    if kernel is None:
        raise Unknown("kernel_shape")
    return _conv_pool(n, n.shape(0)[1], kernel, n.node.op_type == "MaxPool")


def _global_pool(n: Node) -> list[Shape]:
    x = n.shape(0)
    return [[*x[:2], *([1] * (len(x) - 2))]]


def _gemm(n: Node) -> list[Shape]:
    a, b = n.shape(0), n.shape(1)
    if len(a) != 2 or len(b) != 2:
        raise Unknown("gemm rank")
    m = a[1] if n.int_attr("transA", 0) else a[0]
    return [[m, b[0] if n.int_attr("transB", 0) else b[1]]]


def _matmul(n: Node) -> list[Shape]:
    a, b = n.shape(0), n.shape(1)
    if not a or not b:
        raise Unknown("matmul of a scalar")
    a2, b2 = (a if len(a) > 1 else [1, *a]), (b if len(b) > 1 else [*b, 1])
    if a2[-1] != b2[-2]:
        raise Unknown("matmul dims")
    try:
        batch = list(np.broadcast_shapes(tuple(a2[:-2]), tuple(b2[:-2])))
    except ValueError as e:
        raise Unknown("matmul batch") from e
    out = [*batch, a2[-2], b2[-1]]
    if len(a) == 1:
        out.pop(-2)
    if len(b) == 1:
        out.pop(-1)
    return [out]


def _transpose(n: Node) -> list[Shape]:
    x = n.shape(0)
    perm = n.ints("perm") or list(range(len(x)))[::-1]
    if sorted(perm) != list(range(len(x))):
        raise Unknown("perm")
    return [[x[p] for p in perm]]


def _reshape(n: Node) -> list[Shape]:
    x, target = n.shape(0), n.value(1)
    if target is None or (n.int_attr("allowzero", 0) and 0 in target):
        raise Unknown("reshape")
    out = [x[i] if d == 0 else d for i, d in enumerate(target)]
    if out.count(-1) > 1 or any(d < -1 for d in out):
        raise Unknown("reshape target")
    total, known = int(np.prod(x, dtype=np.int64)), int(np.prod([d for d in out if d != -1]))
    if -1 in out:
        if known == 0 or total % known:
            raise Unknown("reshape -1")
        out[out.index(-1)] = total // known
    elif known != total:
        raise Unknown("reshape size")
    return [out]


def _flatten(n: Node) -> list[Shape]:
    x = n.shape(0)
    axis = n.int_attr("axis", 1)
    axis = axis + len(x) if axis < 0 else axis
    if not 0 <= axis <= len(x):
        raise Unknown("flatten axis")
    return [[int(np.prod(x[:axis], dtype=np.int64)), int(np.prod(x[axis:], dtype=np.int64))]]


def _concat(n: Node) -> list[Shape]:
    shapes = [n.shape(i) for i in range(len(n.node.input))]
    axis = _axis(n.int_attr("axis", 0), len(shapes[0]))
    if any(len(s) != len(shapes[0]) for s in shapes):
        raise Unknown("concat rank")
    out = list(shapes[0])
    for s in shapes[1:]:
        if any(a != b for i, (a, b) in enumerate(zip(s, out, strict=True)) if i != axis):
            raise Unknown("concat dims")
        out[axis] += s[axis]
    return [out]


def _split(n: Node) -> list[Shape]:
    x = n.shape(0)
    axis = _axis(n.int_attr("axis", 0), len(x))
    sizes = n.ints("split") if n.opset < 13 else n.value(1)
    parts = len(n.node.output)
    if sizes is None:
        if "num_outputs" in n.attrs or x[axis] % parts:
            raise Unknown("split sizes")
        sizes = [x[axis] // parts] * parts
    if len(sizes) != parts or sum(sizes) != x[axis]:
        raise Unknown("split sizes")
    return [[*x[:axis], s, *x[axis + 1 :]] for s in sizes]


def _slice(n: Node) -> list[Shape]:
    x = n.shape(0)
    if n.opset < 10:
        starts, ends, axes, steps = n.ints("starts"), n.ints("ends"), n.ints("axes"), None
    else:
        starts, ends, axes, steps = n.value(1), n.value(2), n.value(3), n.value(4)
    if starts is None or ends is None or len(starts) != len(ends):
        raise Unknown("slice")
    axes = [_axis(a, len(x)) for a in axes] if axes is not None else list(range(len(starts)))
    steps = steps or [1] * len(starts)
    if len(set(axes)) != len(axes) or len(axes) != len(starts) or 0 in steps:
        raise Unknown("slice axes")
    out = list(x)
    for a, s, e, st in zip(axes, starts, ends, steps, strict=True):
        out[a] = len(range(*slice(s, e, st).indices(x[a])))
    return [out]


def _squeeze(n: Node) -> list[Shape]:
    x = n.shape(0)
    axes = n.axes()
    if axes is None:
        return [[d for d in x if d != 1]]
    drop = {_axis(a, len(x)) for a in axes}
    if any(x[a] != 1 for a in drop):
        raise Unknown("squeeze of a dimension that is not 1")
    return [[d for i, d in enumerate(x) if i not in drop]]


def _unsqueeze(n: Node) -> list[Shape]:
    x = n.shape(0)
    axes = n.axes()
    if axes is None:
        raise Unknown("unsqueeze axes")
    rank = len(x) + len(axes)
    put = {_axis(a, rank) for a in axes}
    if len(put) != len(axes):
        raise Unknown("unsqueeze axes")
    rest = iter(x)
    return [[1 if i in put else next(rest) for i in range(rank)]]


def _reduce(n: Node) -> list[Shape]:
    x = n.shape(0)
    axes = n.axes()
    keep = n.int_attr("keepdims", 1)
    if not axes:
        if n.int_attr("noop_with_empty_axes", 0):
            return [list(x)]
        axes = list(range(len(x)))
    drop = {_axis(a, len(x)) for a in axes}
    return [[1 if i in drop else d for i, d in enumerate(x) if keep or i not in drop]]


def _layernorm(n: Node) -> list[Shape]:
    x = n.shape(0)
    axis = _axis(n.int_attr("axis", -1), len(x))
    stat = [*x[:axis], *([1] * (len(x) - axis))]
    return [list(x), stat, stat][: len(n.node.output)]


def _constant(n: Node) -> list[Shape]:
    if len(n.attrs) != 1:
        raise Unknown("constant")
    if "value" in n.attrs:
        return [[int(d) for d in n.node.attribute[0].t.dims]]
    for name in ("value_float", "value_int", "value_string"):
        if name in n.attrs:
            return [[]]
    for name in ("value_floats", "value_ints", "value_strings"):
        value = n.attrs.get(name)
        if isinstance(value, list):
            return [[len(value)]]
    raise Unknown("constant")


RULES: dict[str, Callable[[Node], list[Shape]]] = {
    **dict.fromkeys(BROADCAST, _broadcast),
    "Conv": _conv, "MaxPool": _pool, "AveragePool": _pool,
    "GlobalAveragePool": _global_pool, "GlobalMaxPool": _global_pool, "Gemm": _gemm,
    "MatMul": _matmul, "Transpose": _transpose, "Reshape": _reshape, "Flatten": _flatten,
    "Concat": _concat, "Split": _split, "Slice": _slice, "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze, "ReduceMean": _reduce, "ReduceMax": _reduce,
    "ReduceSum": _reduce, "LayerNormalization": _layernorm, "Constant": _constant,
}  # fmt: skip
"""op type -> its output shapes (see the module docstring)."""


def _unary(n: Node) -> list[Shape]:
    x = n.shape(0)
    outs = len(n.node.output)
    if outs > 1 and n.node.op_type != "Dropout":  # BatchNormalization's training outputs
        raise Unknown("extra outputs")
    return [list(x)] * outs


def propagate(
    nodes: Sequence[GraphNode],
    shapes: Mapping[str, Shape],
    consts: Mapping[str, np.ndarray],
    opset: int,
) -> dict[str, Shape] | None:
    """Every node output's static shape (with ``shapes``' own entries), or None where a node
    is not one this module computes exactly. ``shapes``: the graph inputs and constants;
    ``consts``: the values of small constant tensors (shape operands); ``opset``: the
    default domain's."""
    out = dict(shapes)
    for node in nodes:
        op, ins, outs = node.op_type, node.input, node.output
        if node.domain not in ("", "ai.onnx"):
            return None
        if len(outs) == 1 and ins:  # the common cases, without a `Node`
            if op in UNARY and ins[0] in out:
                out[outs[0]] = list(out[ins[0]])
                continue
            if op in BROADCAST and all(i in out for i in ins):
                shape = broadcast([out[i] for i in ins])
                if shape is None:
                    return None
                out[outs[0]] = shape
                continue
        rule = _unary if op in UNARY else RULES.get(op)
        if rule is None:
            return None
        try:
            result = rule(Node(node, out, consts, opset))
        except (Unknown, IndexError, KeyError, ValueError, TypeError):
            return None
        for name, shape in zip(node.output, result, strict=False):
            if name:
                out[name] = shape
        if len(result) < sum(1 for o in node.output if o):
            return None
    return out
