"""Small test models for fusion-rule discovery: a chain of op tokens built with onnx.helper.

Spatial chains read ``[1, channels, hw, hw]`` and keep that shape (convs are
``channels -> channels``, stride 1, 'same' padding; pools use stride 1 and padding), so
any token can follow any other; ``add`` adds the chain's input (a residual). FC chains
read ``[rows, features]``. Weights are random (seeded).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from pydantic import BaseModel, ConfigDict

OPSET = 17
FLAT = {"fc", "bias", "gelu"}
UNARY = {
    "relu": "Relu", "leakyrelu": "LeakyRelu", "sigmoid": "Sigmoid", "tanh": "Tanh",
    "hswish": "HardSwish", "hsigmoid": "HardSigmoid",
}  # fmt: skip
PROBE_TOKENS = (
    {"conv", "dwconv", "bn", "relu6", "add", "silu", "maxpool", "avgpool"} | FLAT | set(UNARY)
)


class ProbeShape(BaseModel):
    """Sizes of the probe models (nn-Meter's rule tests use 28x28x64, kernel 3, 428 FC)."""

    model_config = ConfigDict(extra="forbid")

    hw: int = 28
    channels: int = 64
    kernel: int = 3
    rows: int = 1
    features: int = 428
    seed: int = 0


class _Chain:
    def __init__(self, shape: ProbeShape) -> None:
        self.s = shape
        self.rng = np.random.default_rng(shape.seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.n = 0

    def name(self, p: str) -> str:
        self.n += 1
        return f"{p}{self.n}"

    def const(self, arr: np.ndarray) -> str:
        n = self.name("c")
        self.inits.append(numpy_helper.from_array(np.asarray(arr, dtype=np.float32), n))
        return n

    def node(self, op: str, inputs: list[str], **attrs: int | list[int]) -> str:
        out = self.name(op.lower())
        node = helper.make_node(op, inputs, [out], name=out)
        node.attribute.extend(helper.make_attribute(k, v) for k, v in attrs.items())
        self.nodes.append(node)
        return out

    def input(self, flat: bool) -> str:
        n = self.name("x")
        dims = (
            [self.s.rows, self.s.features] if flat else [1, self.s.channels, self.s.hw, self.s.hw]
        )
        self.inputs.append(helper.make_tensor_value_info(n, TensorProto.FLOAT, dims))
        return n

    def apply(self, token: str, x: str, residual: str | None) -> str:
        c, k, f = self.s.channels, self.s.kernel, self.s.features
        r = self.rng
        if token in ("conv", "dwconv"):
            groups = c if token == "dwconv" else 1
            w = r.standard_normal((c, c // groups, k, k)) * 0.1
            return self.node(
                "Conv", [x, self.const(w), self.const(np.zeros(c))], kernel_shape=[k, k],
                pads=[k // 2] * 4, group=groups,
            )  # fmt: skip
        if token == "bn":
            ones, zeros = self.const(np.ones(c)), self.const(np.zeros(c))
            return self.node("BatchNormalization", [x, ones, zeros, zeros, ones])
        if token == "identity":
            return self.node("Identity", [x])
        if token == "relu6":
            return self.node("Clip", [x, self.const(np.array(0.0)), self.const(np.array(6.0))])
        if token in UNARY:
            return self.node(UNARY[token], [x])
        if token == "silu":
            return self.node("Mul", [x, self.node("Sigmoid", [x])])
        if token == "add":
            return self.node("Add", [x, residual or self.input(flat=False)])
        if token in ("maxpool", "avgpool"):
            op = "MaxPool" if token == "maxpool" else "AveragePool"
            return self.node(op, [x], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
        if token == "fc":
            return self.node("MatMul", [x, self.const(r.standard_normal((f, f)) * 0.05)])
        if token == "bias":
            return self.node("Add", [x, self.const(r.standard_normal(f) * 0.01)])
        if token == "gelu":  # the Erf form exporters write at opset < 20
            e = self.node("Erf", [self.node("Div", [x, self.const(np.array(np.sqrt(2.0)))])])
            h = self.node("Mul", [x, self.node("Add", [e, self.const(np.array(1.0))])])
            return self.node("Mul", [h, self.const(np.array(0.5))])
        raise ValueError(f"no probe model for token {token!r}")


def chain_model(
    tokens: list[str], shape: ProbeShape | None = None, flat: bool | None = None
) -> onnx.ModelProto:
    """One model running ``tokens`` in sequence (see the module docstring); ``flat`` picks
    the FC input shape (default: when the first token is an FC-chain token)."""
    unknown = [t for t in tokens if t not in PROBE_TOKENS | {"identity"}]
    if unknown or not tokens:
        raise ValueError(f"no probe model for tokens {unknown or tokens}")
    b = _Chain(shape or ProbeShape())
    x0 = b.input(flat=tokens[0] in FLAT if flat is None else flat)
    x = x0
    for token in tokens:
        x = b.apply(token, x, x0 if len(tokens) > 1 else None)
    dims = b.inputs[0].type.tensor_type.shape.dim
    out = helper.make_tensor_value_info(x, TensorProto.FLOAT, [d.dim_value for d in dims])
    graph = helper.make_graph(b.nodes, "probe-" + "-".join(tokens), b.inputs, [out], b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(model)
    return model
