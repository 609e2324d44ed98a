"""A small ONNX graph builder (``onnx.helper`` only) that writes ops the way exporters do.

Used to build the single-kernel models a predictor is trained on
(`predictor.kernel_models`) and the whole networks it is validated on
(`predictor.validation_set`). Shapes are tracked per tensor (NCHW for feature maps,
``[1, tokens, dim]`` for token tensors); weights are random and seeded.

Forms follow ``torch.onnx.export`` of the usual PyTorch modules (opset 17): BatchNorm
left as ``BatchNormalization``, ReLU6 as ``Clip(0, 6)``, h-swish as ``HardSwish``,
SiLU as ``x * Sigmoid(x)``, GELU in its Erf form, ``nn.LayerNorm`` as
``LayerNormalization``, ``nn.Linear`` on 3-D input as ``MatMul`` + ``Add`` and on 2-D
input as ``Gemm``.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
UNARY = {
    "relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "hswish": "HardSwish",
    "hsigmoid": "HardSigmoid", "leakyrelu": "LeakyRelu",
}  # fmt: skip
ACTS = (*UNARY, "relu6", "silu", "gelu")


class NetBuilder:
    """Append ops to one graph; every method returns the name of the tensor it writes."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.shapes: dict[str, list[int]] = {}
        self.extra_outputs: list[str] = []  # graph outputs besides the main one (Split)
        self.n = 0

    # ------------------------------------------------------------------ plumbing
    def name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}_{self.n}"

    def const(self, arr: np.ndarray, dtype: type = np.float32) -> str:
        n = self.name("c")
        self.inits.append(numpy_helper.from_array(np.asarray(arr, dtype=dtype), n))
        self.shapes[n] = list(np.shape(arr))
        return n

    def node(self, op: str, inputs: list[str], shape: list[int], **attrs: object) -> str:
        out = self.name(op.lower())
        node = helper.make_node(op, inputs, [out], name=out)
        node.attribute.extend(helper.make_attribute(k, v) for k, v in attrs.items())
        self.nodes.append(node)
        self.shapes[out] = list(shape)
        return out

    def input(self, shape: list[int], name: str | None = None) -> str:
        n = name or self.name("x")
        self.inputs.append(helper.make_tensor_value_info(n, TensorProto.FLOAT, shape))
        self.shapes[n] = list(shape)
        return n

    def model(self, outputs: list[str], name: str = "net") -> onnx.ModelProto:
        outs = [
            helper.make_tensor_value_info(o, TensorProto.FLOAT, self.shapes[o]) for o in outputs
        ]
        graph = helper.make_graph(self.nodes, name, self.inputs, outs, self.inits)
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="latencylab"
        )
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model

    # ------------------------------------------------------------------ conv-like
    def conv(
        self,
        x: str,
        cout: int,
        k: int = 3,
        s: int = 1,
        groups: int = 1,
        bias: bool = True,
        pad: int | None = None,
    ) -> str:
        """``k``x``k`` conv, stride ``s``, padding ``pad`` (default 'same': ``k // 2``)."""
        n, cin, h, w = self.shapes[x]
        fan_in = cin // groups * k * k
        wt = self.rng.standard_normal((cout, cin // groups, k, k)) * math.sqrt(2.0 / fan_in)
        ins = [x, self.const(wt)] + ([self.const(np.zeros(cout))] if bias else [])
        p = k // 2 if pad is None else pad
        oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        return self.node(
            "Conv", ins, [n, cout, oh, ow], kernel_shape=[k, k], strides=[s, s],
            pads=[p] * 4, group=groups,
        )  # fmt: skip

    def bn(self, x: str) -> str:
        c = self.shapes[x][1]
        ps = [self.const(np.ones(c)), self.const(np.zeros(c))]
        ps += [self.const(np.zeros(c)), self.const(np.ones(c))]
        return self.node("BatchNormalization", [x, *ps], self.shapes[x])

    def act(self, x: str, kind: str) -> str:
        shape = self.shapes[x]
        if kind == "relu6":
            lo, hi = self.const(np.array(0.0)), self.const(np.array(6.0))
            return self.node("Clip", [x, lo, hi], shape)
        if kind == "silu":
            return self.node("Mul", [x, self.node("Sigmoid", [x], shape)], shape)
        if kind == "gelu":
            d = self.node("Div", [x, self.const(np.array(math.sqrt(2.0)))], shape)
            e = self.node("Add", [self.node("Erf", [d], shape), self.const(np.array(1.0))], shape)
            return self.node(
                "Mul", [self.node("Mul", [x, e], shape), self.const(np.array(0.5))], shape
            )
        if kind not in UNARY:
            raise ValueError(f"unknown activation {kind!r}; known: {', '.join(ACTS)}")
        return self.node(UNARY[kind], [x], shape)

    def add(self, a: str, b: str) -> str:
        return self.node("Add", [a, b], self.shapes[a])

    def mul(self, a: str, b: str) -> str:
        return self.node("Mul", [a, b], self.shapes[a])

    def scale(self, x: str) -> str:
        """Multiply by a constant per-channel (last axis) vector (layer scale)."""
        c = self.shapes[x][-1]
        return self.node("Mul", [x, self.const(np.full(c, 0.5))], self.shapes[x])

    def bias(self, x: str) -> str:
        shape = self.shapes[x]
        return self.node("Add", [x, self.const(self.rng.standard_normal(shape[1:]) * 0.02)], shape)

    def pool(self, x: str, kind: str, k: int = 3, s: int = 2) -> str:
        n, c, h, w = self.shapes[x]
        if kind == "gap":
            return self.node("GlobalAveragePool", [x], [n, c, 1, 1])
        p = k // 2
        oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        op = "MaxPool" if kind == "maxpool" else "AveragePool"
        return self.node(op, [x], [n, c, oh, ow], kernel_shape=[k, k], strides=[s, s], pads=[p] * 4)

    def se(self, x: str, mid: int, act: str = "relu", gate: str = "hsigmoid") -> str:
        c = self.shapes[x][1]
        s = self.act(self.conv(self.pool(x, "gap"), mid, 1), act)
        s = self.conv(s, c, 1)
        s = (
            self.node("HardSigmoid", [s], self.shapes[s], alpha=1 / 6, beta=0.5)
            if gate == "hsigmoid"
            else self.act(s, "sigmoid")
        )
        return self.mul(x, s)

    def shuffle(self, x: str, groups: int) -> str:
        n, c, h, w = self.shapes[x]
        r = self.reshape(x, [n, groups, c // groups, h, w])
        t = self.transpose(r, [0, 2, 1, 3, 4])
        return self.reshape(t, [n, c, h, w])

    # ------------------------------------------------------------------ tensors
    def reshape(self, x: str, shape: list[int]) -> str:
        return self.node("Reshape", [x, self.const(np.array(shape), np.int64)], shape)

    def transpose(self, x: str, perm: list[int]) -> str:
        shape = [self.shapes[x][p] for p in perm]
        return self.node("Transpose", [x], shape, perm=perm)

    def concat(self, xs: list[str], axis: int = 1) -> str:
        shape = list(self.shapes[xs[0]])
        shape[axis] = sum(self.shapes[x][axis] for x in xs)
        return self.node("Concat", xs, shape, axis=axis)

    def slice(self, x: str, axis: int, start: int, end: int) -> str:
        shape = list(self.shapes[x])
        shape[axis] = end - start
        ins = [x] + [self.const(np.array([v]), np.int64) for v in (start, end, axis)]
        return self.node("Slice", ins, shape)

    def softmax(self, x: str) -> str:
        return self.node("Softmax", [x], self.shapes[x], axis=-1)

    # ------------------------------------------------------------------ tokens
    def fc(self, x: str, cout: int, bias: bool = True) -> str:
        shape = self.shapes[x]
        cin = shape[-1]
        wt = self.rng.standard_normal((cin, cout)) * math.sqrt(1.0 / cin)
        if len(shape) == 2:
            ins = [x, self.const(wt.T)] + ([self.const(np.zeros(cout))] if bias else [])
            return self.node("Gemm", ins, [shape[0], cout], transB=1)
        y = self.node("MatMul", [x, self.const(wt)], [*shape[:-1], cout])
        return self.node("Add", [y, self.const(np.zeros(cout))], self.shapes[y]) if bias else y

    def matmul(self, a: str, b: str) -> str:
        sa, sb = self.shapes[a], self.shapes[b]
        return self.node("MatMul", [a, b], [*sa[:-1], sb[-1]])

    def layernorm(self, x: str) -> str:
        d = self.shapes[x][-1]
        ins = [x, self.const(np.ones(d)), self.const(np.zeros(d))]
        return self.node("LayerNormalization", ins, self.shapes[x], axis=-1, epsilon=1e-6)

    def attention(self, q: str, kt: str, v: str, scaled: bool = True) -> str:
        """softmax(q @ kt * scale) @ v (``kt`` already transposed: ``[.., dim, seq]``)."""
        s = self.matmul(q, kt)
        if scaled:
            s = self.node(
                "Mul", [s, self.const(np.array(self.shapes[q][-1] ** -0.5))], self.shapes[s]
            )
        return self.matmul(self.softmax(s), v)

    def mhsa(self, x: str, heads: int) -> str:
        """Multi-head self-attention as exported from a ViT/DeiT ``Attention`` module."""
        b, n, d = self.shapes[x]
        hd = d // heads
        qkv = self.fc(x, 3 * d)
        r = self.transpose(self.reshape(qkv, [b, n, 3, heads, hd]), [2, 0, 3, 1, 4])
        q, k, v = (self.reshape(self.slice(r, 0, i, i + 1), [b, heads, n, hd]) for i in range(3))
        o = self.attention(q, self.transpose(k, [0, 1, 3, 2]), v)
        o = self.reshape(self.transpose(o, [0, 2, 1, 3]), [b, n, d])
        return self.fc(o, d)
