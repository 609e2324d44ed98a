"""ONNX nodes (and composites) as ops: a fusion token plus the kernel configuration."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from predictor.graph import OnnxGraph
from predictor.nodes import GraphNode
from predictor.patterns import Composite

Config = dict[str, object]

# Nodes that move no data at run time (views, metadata) or fold away: never a kernel.
DUMMY = {
    "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Constant", "Shape",
    "Cast", "ConstantOfShape",
}  # fmt: skip

SIMPLE = {
    "BatchNormalization": "bn", "Relu": "relu", "LeakyRelu": "leakyrelu", "Sigmoid": "sigmoid",
    "Tanh": "tanh", "HardSwish": "hswish", "HardSigmoid": "hsigmoid", "Gelu": "gelu",
    "Softmax": "softmax", "LayerNormalization": "layernorm", "MaxPool": "maxpool",
    "AveragePool": "avgpool", "GlobalAveragePool": "gap", "GlobalMaxPool": "gmp",
    "Concat": "concat", "Split": "split", "Slice": "slice", "Transpose": "transpose",
    "Resize": "resize", "Pad": "pad", "Erf": "erf",
}  # fmt: skip


@dataclass
class Op:
    token: str
    kind: str
    nodes: list[GraphNode]
    inputs: list[str]
    output: str
    config: Config = field(default_factory=dict)


def _ints(value: object) -> list[int]:
    return [int(v) for v in value] if isinstance(value, list | tuple) else []


def _conv(g: OnnxGraph, node: GraphNode) -> tuple[str, str, Config]:
    xs, ws, ys = g.shape(node.input[0]), g.shape(node.input[1]), g.shape(node.output[0])
    groups = g.attr_int(node, "group", 1)
    cin, cout = xs[1], ws[0]
    k = _ints(g.attr(node, "kernel_shape")) or ws[2:]
    strides = _ints(g.attr(node, "strides")) or [1] * len(k)
    pads = _ints(g.attr(node, "pads")) or [0] * (2 * len(k))
    auto_pad = g.attr(node, "auto_pad", b"NOTSET")
    auto = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
    if groups > 1 and groups == cin and cout % cin == 0:
        token = kind = "dwconv"
    else:
        token = "conv"
        kind = "pwconv" if all(v == 1 for v in k) and groups == 1 else "conv"
    config: Config = {
        "hw": xs[2] if len(xs) > 2 else 1,
        "hw_w": xs[3] if len(xs) > 3 else 1,
        "cin": cin,
        "cout": cout,
        "kernel": k[0] if k else 1,
        "stride": strides[0] if strides else 1,
        "groups": groups,
        "padding": auto if auto != "NOTSET" else pads,
        "dilation": (_ints(g.attr(node, "dilations")) or [1])[0],
        "out_hw": ys[2] if len(ys) > 2 else 1,
    }
    return token, kind, config


def _fc(g: OnnxGraph, node: GraphNode, weight: str) -> Config:
    xs, ys, ws = g.shape(node.input[0]), g.shape(node.output[0]), g.shape(weight)
    trans_b = node.op_type == "Gemm" and bool(g.attr(node, "transB", 0))
    cin = ws[-1] if trans_b else ws[0]
    return {"cin": cin, "cout": ys[-1] if ys else 0, "tokens": math.prod(xs[:-1]) if xs else 1}


def _pool(g: OnnxGraph, node: GraphNode) -> Config:
    xs = g.shape(node.input[0])
    k = _ints(g.attr(node, "kernel_shape"))
    s = _ints(g.attr(node, "strides"))
    return {
        "hw": xs[2] if len(xs) > 2 else 1,
        "cin": xs[1] if len(xs) > 1 else 0,
        "kernel": k[0] if k else (xs[2] if len(xs) > 2 else 1),
        "stride": s[0] if s else 1,
    }


def node_op(g: OnnxGraph, node: GraphNode) -> Op | None:
    """The op of one node, or None for a node that is no kernel (`DUMMY`, constant folding)."""
    data = [i for i in node.input if i and not g.is_const(i)]
    if node.op_type in DUMMY or not data:
        return None
    op = node.op_type
    out = node.output[0]
    xs = g.shape(data[0])
    config: Config = {}
    if op == "Conv":
        token, kind, config = _conv(g, node)
    elif op == "Gemm" or (op == "MatMul" and g.is_const(node.input[1])):
        token = kind = "fc"
        config = _fc(g, node, node.input[1])
    elif op == "MatMul":
        token = kind = "matmul"
        a, b = g.shape(node.input[0]), g.shape(node.input[1])
        config = {
            "batch": math.prod(a[:-2]) if len(a) > 2 else 1,
            "m": a[-2],
            "k": a[-1],
            "n": b[-1],
        }
    elif op in ("Add", "Sub"):
        token = kind = "add" if len(data) == 2 else "bias"
    elif op in ("Mul", "Div"):
        token = kind = "mul" if len(data) == 2 else "scale"
    elif op == "Clip":
        lo, hi = (g.scalar(i) if i else None for i in [*node.input[1:3], "", ""][:2])
        token = kind = "relu6" if (lo, hi) == (0.0, 6.0) else "clip"
    elif op in ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"):
        token = kind = SIMPLE[op]
        config = _pool(g, node)
    elif op == "ReduceMean":  # a reduction kernel, not GAP (x.mean(3).mean(2) in OFA)
        token = kind = "reducemean"
    elif op in ("Concat", "Split"):
        token = kind = SIMPLE[op]
        config = {
            "axis": g.attr_int(node, "axis", 0),
            "parts": len(node.input if op == "Concat" else node.output),
        }
    else:
        token = kind = SIMPLE.get(op, op.lower())
        if token in ("layernorm", "gelu", "softmax"):
            config = {"tokens": math.prod(xs[:-1]) if xs else 1, "dim": xs[-1] if xs else 0}
    config.setdefault("input_shape", xs)
    config.setdefault("output_shape", g.shape(out))
    return Op(token, kind, [node], data, out, config)


def composite_op(g: OnnxGraph, comp: Composite) -> Op:
    xs = g.shape(comp.input)
    config: Config = {k: v for k, v in comp.config.items() if k not in ("k", "v")}
    inputs = [comp.input]
    if comp.token == "attention":
        inputs += [str(comp.config["k"]), str(comp.config["v"])]
    elif comp.token in ("layernorm", "gelu", "hswish", "silu"):
        config.update({"tokens": math.prod(xs[:-1]) if xs else 1, "dim": xs[-1] if xs else 0})
    config["input_shape"] = xs
    config["output_shape"] = g.shape(comp.output)
    return Op(comp.token, comp.token, comp.nodes, inputs, comp.output, config)
