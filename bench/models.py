"""Small ONNX models built in code with random weights (no hub downloads).

``onnx.helper`` only, so tests and benchmarks need neither torch nor an exporter.
BatchNorm is folded into the convolutions, as an exporter would leave it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


class GraphBuilder:
    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.n = 0

    def _name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}_{self.n}"

    def _const(self, prefix: str, arr: np.ndarray) -> str:
        name = self._name(prefix)
        self.inits.append(numpy_helper.from_array(arr.astype(np.float32), name))
        return name

    def conv(
        self, x: str, cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1
    ) -> str:
        fan_in = cin // groups * k * k
        w = self.rng.standard_normal((cout, cin // groups, k, k)) * np.sqrt(2.0 / fan_in)
        b = self.rng.standard_normal(cout) * 0.01
        out = self._name("conv")
        self.nodes.append(
            helper.make_node(
                "Conv",
                [x, self._const("w", w), self._const("b", b)],
                [out],
                name=out,
                kernel_shape=[k, k],
                strides=[stride, stride],
                pads=[k // 2] * 4,
                group=groups,
            )
        )
        return out

    def act(self, x: str, kind: str = "relu") -> str:
        out = self._name(kind)
        if kind == "relu6":
            lo = self._const("lo", np.array(0.0))
            hi = self._const("hi", np.array(6.0))
            self.nodes.append(helper.make_node("Clip", [x, lo, hi], [out], name=out))
        else:
            self.nodes.append(helper.make_node("Relu", [x], [out], name=out))
        return out

    def add(self, a: str, b: str) -> str:
        out = self._name("add")
        self.nodes.append(helper.make_node("Add", [a, b], [out], name=out))
        return out

    def head(self, x: str, cin: int, classes: int) -> str:
        gap = self._name("gap")
        self.nodes.append(helper.make_node("GlobalAveragePool", [x], [gap], name=gap))
        flat = self._name("flatten")
        self.nodes.append(helper.make_node("Flatten", [gap], [flat], name=flat, axis=1))
        w = self.rng.standard_normal((cin, classes)) * np.sqrt(1.0 / cin)
        out = "logits"
        self.nodes.append(
            helper.make_node(
                "Gemm",
                [flat, self._const("fc_w", w), self._const("fc_b", np.zeros(classes))],
                [out],
                name="fc",
            )
        )
        return out

    def model(
        self, inp: str, shape: list[int | str], out: str, classes: int, name: str
    ) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes,
            name,
            [helper.make_tensor_value_info(inp, TensorProto.FLOAT, shape)],
            [helper.make_tensor_value_info(out, TensorProto.FLOAT, [shape[0], classes])],
            self.inits,
        )
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="latencylab-bench"
        )
        onnx.checker.check_model(model, full_check=True)
        return model


def mobilenet_v2_like(
    resolution: int = 224,
    width: float = 1.0,
    classes: int = 1000,
    batch: int | str = 1,
    seed: int = 0,
) -> onnx.ModelProto:
    """MobileNetV2 layout (inverted residuals, depthwise 3x3, ReLU6), random weights."""

    def ch(c: float) -> int:
        return max(8, int(c * width + 4) // 8 * 8)

    g = GraphBuilder(seed)
    x = g.act(g.conv("input", 3, ch(32), 3, 2), "relu6")
    cin = ch(32)
    cfg = [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ]
    for t, c, n, s in cfg:
        cout = ch(c)
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = cin * t
            h = x
            if t != 1:
                h = g.act(g.conv(h, cin, hidden, 1), "relu6")
            h = g.act(g.conv(h, hidden, hidden, 3, stride, groups=hidden), "relu6")
            h = g.conv(h, hidden, cout, 1)
            x = g.add(x, h) if stride == 1 and cin == cout else h
            cin = cout
    last = ch(1280) if width > 1.0 else 1280
    x = g.act(g.conv(x, cin, last, 1), "relu6")
    out = g.head(x, last, classes)
    return g.model("input", [batch, 3, resolution, resolution], out, classes, "mobilenet_v2_like")


def resnet_like(
    resolution: int = 224,
    depths: tuple[int, ...] = (2, 2, 2, 2),
    classes: int = 1000,
    batch: int | str = 1,
    seed: int = 0,
) -> onnx.ModelProto:
    """ResNet-18 layout (basic blocks, 7x7 stem; stride-2 conv in place of max pooling)."""
    g = GraphBuilder(seed)
    x = g.act(g.conv("input", 3, 64, 7, 2))
    x = g.act(g.conv(x, 64, 64, 3, 2))
    cin = 64
    for stage, n in enumerate(depths):
        cout = 64 * 2**stage
        for i in range(n):
            stride = 2 if stage > 0 and i == 0 else 1
            h = g.act(g.conv(x, cin, cout, 3, stride))
            h = g.conv(h, cout, cout, 3, 1)
            short = x if stride == 1 and cin == cout else g.conv(x, cin, cout, 1, stride)
            x = g.act(g.add(h, short))
            cin = cout
    out = g.head(x, cin, classes)
    return g.model("input", [batch, 3, resolution, resolution], out, classes, "resnet_like")


def mlp(
    features: int = 256, hidden: int = 512, classes: int = 10, batch: int | str = "N", seed: int = 0
) -> onnx.ModelProto:
    """A two-layer MLP with a symbolic batch dimension: the quickest model to measure."""
    rng = np.random.default_rng(seed)
    w1 = numpy_helper.from_array(rng.standard_normal((features, hidden)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((hidden, classes)).astype(np.float32), "w2")
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["a"], name="relu"),
        helper.make_node("MatMul", ["a", "w2"], ["logits"], name="fc2"),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, features])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])],
        [w1, w2],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def shape_reshape(
    channels: int = 8, size: int = 4, features: int = 5, batch: int | str = "N", seed: int = 0
) -> onnx.ModelProto:
    """Tokens from a feature map the way TorchScript exports ``x.flatten(2).transpose(1, 2)``
    with ``b, c = x.shape[:2]``: ``Shape -> Gather -> Unsqueeze -> Concat -> Reshape``, then a
    projection. With a fixed input shape the reshape target is a constant."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((channels, features)).astype(np.float32)

    def i64(name: str, values: list[int]) -> onnx.TensorProto:
        return numpy_helper.from_array(np.array(values, dtype=np.int64), name)

    nodes = [
        helper.make_node("Shape", ["x"], ["shape"], name="shape"),
        helper.make_node("Gather", ["shape", "i0"], ["n"], name="gather_n", axis=0),
        helper.make_node("Gather", ["shape", "i1"], ["c"], name="gather_c", axis=0),
        helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"], name="unsqueeze_n"),
        helper.make_node("Unsqueeze", ["c", "axes0"], ["c1"], name="unsqueeze_c"),
        helper.make_node("Concat", ["n1", "c1", "minus1"], ["target"], name="concat", axis=0),
        helper.make_node("Reshape", ["x", "target"], ["flat"], name="reshape"),
        helper.make_node("Transpose", ["flat"], ["tokens"], name="transpose", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["tokens", "w"], ["y"], name="proj"),
    ]
    graph = helper.make_graph(
        nodes,
        "shape_reshape",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, channels, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, size * size, features])],
        [
            numpy_helper.from_array(np.array(0, np.int64), "i0"),  # scalar index: Gather -> scalar
            numpy_helper.from_array(np.array(1, np.int64), "i1"),
            i64("axes0", [0]),
            i64("minus1", [-1]),
            numpy_helper.from_array(w, "w"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(model, full_check=True)
    return model


def save(model: onnx.ModelProto, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
