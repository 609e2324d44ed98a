"""Kernel detection (predictor/) on real graphs, fusion rules as data, and fusion-rule
discovery by measurement on this machine's onnxruntime."""

from __future__ import annotations

import io
import time
from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bench import models
from predictor import FusionRules, default_rules, detect_kernels
from predictor.discovery import decide, discover_fusion_rules
from predictor.probes import ProbeShape, chain_model


def _types(detection) -> Counter[str]:
    return Counter(k.type for k in detection.kernels)


def test_mobilenet_v2_inverted_residuals() -> None:
    det = detect_kernels(models.mobilenet_v2_like())
    cfg = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1)]
    cfg += [(6, 160, 3, 2), (6, 320, 1, 1)]
    expected = []
    cin, hw = 32, 112
    for t, c, n, s in cfg:
        for i in range(n):
            stride = s if i == 0 else 1
            expected.append(
                {"hw": hw, "cin": cin, "cout": c, "expansion": float(t), "kernel": 3}
                | {"stride": stride, "residual": stride == 1 and cin == c}
            )
            cin, hw = c, hw // stride
    blocks = [b for b in det.blocks if b.type == "inverted_residual"]
    assert [b.config for b in blocks] == expected
    by_name = {k.name: k for k in det.kernels}
    for block, exp in zip(blocks, expected, strict=True):
        ks = [by_name[n] for n in block.kernels]
        project = "pwconv+add" if exp["residual"] else "pwconv"
        dw = ks[-2]
        if exp["expansion"] == 1.0:
            assert [k.type for k in ks] == ["dwconv+relu6", project]
        else:
            assert [k.type for k in ks] == ["pwconv+relu6", "dwconv+relu6", project]
            assert ks[0].config["cin"] == exp["cin"]
            assert ks[0].config["cout"] == exp["cin"] * 6 == dw.config["cin"]
        assert dw.config["stride"] == exp["stride"] and dw.config["groups"] == dw.config["cin"]
        assert dw.config["hw"] == exp["hw"] and dw.config["kernel"] == 3
        assert ks[-1].config["cout"] == exp["cout"] and ks[-1].config["kernel"] == 1
        assert all(k.config["expansion"] == exp["expansion"] for k in ks)
    # stem conv, 1*2 + 16*3 block kernels, last 1x1 conv, global pool, classifier
    assert len(det.kernels) == 1 + 2 + 16 * 3 + 1 + 1 + 1
    assert _types(det)["pwconv+add"] == 10
    assert [k.type for k in det.kernels[-3:]] == ["pwconv+relu6", "gap", "fc"]
    assert det.kernels[-1].config["cin"] == 1280 and det.kernels[-1].config["cout"] == 1000


def test_resnet_conv_relu_and_conv_add_relu() -> None:
    det = detect_kernels(models.resnet_like())
    assert _types(det) == {"conv+relu": 10, "conv+add+relu": 8, "pwconv": 3, "gap": 1, "fc": 1}
    stem = det.kernels[0]
    assert (stem.config["kernel"], stem.config["stride"], stem.config["hw"]) == (7, 2, 224)
    assert (stem.config["cin"], stem.config["cout"]) == (3, 64)
    fused = [k for k in det.kernels if k.type == "conv+add+relu"]
    assert [k.config["hw"] for k in fused] == [56, 56, 28, 28, 14, 14, 7, 7]
    assert [k.config["cout"] for k in fused] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert all(k.config["stride"] == 1 and k.config["residual"] for k in fused)
    assert all(len(k.inputs) == 2 for k in fused)  # main path and shortcut
    shortcuts = [k for k in det.kernels if k.type == "pwconv"]
    assert [(k.config["stride"], k.config["cin"], k.config["cout"]) for k in shortcuts] == [
        (2, 64, 128),
        (2, 128, 256),
        (2, 256, 512),
    ]


def test_rule_switched_off_splits_kernels() -> None:
    resnet = models.resnet_like(resolution=64)
    det = detect_kernels(resnet, default_rules().without("conv", "add"))
    assert _types(det) == {
        "conv+relu": 10, "conv": 8, "add": 8, "relu": 8, "pwconv": 3, "gap": 1, "fc": 1
    }  # fmt: skip
    mbv2 = detect_kernels(
        models.mobilenet_v2_like(resolution=64), default_rules().without("dwconv")
    )
    assert _types(mbv2)["dwconv"] == 17 and _types(mbv2)["relu6"] == 17
    assert "dwconv+relu6" not in _types(mbv2)
    # no rules: one kernel per ONNX node that does work
    bare = detect_kernels(resnet, FusionRules(patterns=[]))
    assert len(bare.kernels) == sum(n.op_type != "Flatten" for n in resnet.graph.node)


def _vit(opset: int, gelu: str) -> onnx.ModelProto:
    torch = pytest.importorskip("torch", reason="the ViT graph is exported from a torch module")
    nn = torch.nn

    class Attention(torch.nn.Module):  # type: ignore[name-defined]  # torch from importorskip
        def __init__(self, dim: int, heads: int) -> None:
            super().__init__()
            self.heads, self.scale = heads, (dim // heads) ** -0.5
            self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

        def forward(self, x):
            b, n, c = x.shape
            qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads)
            q, k, v = qkv.permute(2, 0, 3, 1, 4)
            a = ((q @ k.transpose(-2, -1)) * self.scale).softmax(-1)
            return self.proj((a @ v).transpose(1, 2).reshape(b, n, c))

    class Block(torch.nn.Module):  # type: ignore[name-defined]  # torch from importorskip
        def __init__(self, dim: int, heads: int) -> None:
            super().__init__()
            self.n1, self.n2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
            self.attn = Attention(dim, heads)
            self.mlp = nn.Sequential(
                nn.Linear(dim, 4 * dim), nn.GELU(approximate=gelu), nn.Linear(4 * dim, dim)
            )

        def forward(self, x):
            x = x + self.attn(self.n1(x))
            return x + self.mlp(self.n2(x))

    class ViT(torch.nn.Module):  # type: ignore[name-defined]  # torch from importorskip
        def __init__(self, dim: int = 64, heads: int = 4, depth: int = 2) -> None:
            super().__init__()
            self.patch = nn.Conv2d(3, dim, 4, 4)
            self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(depth)])
            self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, 10)

        def forward(self, x):
            x = self.blocks(self.patch(x).flatten(2).transpose(1, 2))
            return self.head(self.norm(x).mean(1))

    buf = io.BytesIO()
    torch.manual_seed(0)
    torch.onnx.export(
        ViT().eval(), (torch.randn(1, 3, 32, 32),), buf, opset_version=opset, dynamo=False
    )
    return onnx.load_from_string(buf.getvalue())


@pytest.mark.parametrize(
    ("opset", "gelu", "form"),
    [(17, "none", "erf"), (12, "tanh", "tanh")],
    ids=["opset17-LayerNormalization-erf-gelu", "opset12-decomposed-layernorm-tanh-gelu"],
)
def test_vit_layernorm_attention_mlp(opset: int, gelu: str, form: str) -> None:
    det = detect_kernels(_vit(opset, gelu))
    types = _types(det)
    norms = det.of_type("layernorm")
    assert len(norms) == 5  # two per block, one final
    assert all((k.config["tokens"], k.config["dim"]) == (64, 64) for k in norms)
    if opset < 17:
        assert all(k.config["form"] == "decomposed" for k in norms)
    attention = det.of_type("attention")
    by_name = {k.name: k for k in det.kernels}
    assert len(attention) == 2
    for k in attention:
        assert {key: k.config[key] for key in ("heads", "seq", "seq_kv", "dim", "scaled")} == {
            "heads": 4, "seq": 64, "seq_kv": 64, "dim": 16, "scaled": True
        }  # fmt: skip
        # q and v straight from the qkv split, k through its own transpose kernel
        assert sorted(by_name[i].type for i in k.inputs) == ["split", "transpose"]
    gelus = det.of_type("gelu")
    assert [k.config["form"] for k in gelus] == [form, form]
    assert all((k.config["tokens"], k.config["dim"]) == (64, 256) for k in gelus)
    mlps = [b for b in det.blocks if b.type == "mlp"]
    assert [b.config for b in mlps] == [{"tokens": 64, "dim": 64, "hidden": 256, "out": 64}] * 2
    assert types["fc+bias"] == 8  # qkv, proj, fc1, fc2 per block
    assert types["softmax"] == 0 and types["matmul"] == 0  # both inside the attention kernels
    assert types["conv"] == 1  # the patch embedding


class _Graph:
    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def const(self, name: str, arr) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name))
        return name

    def op(self, op: str, inputs: list[str], out: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def conv(self, x: str, cin: int, cout: int, k: int, name: str) -> str:
        w = self.const(name + "_w", self.rng.standard_normal((cout, cin, k, k)) * 0.1)
        return self.op("Conv", [x, w], name, kernel_shape=[k, k], pads=[k // 2] * 4)


def _mobile_ops_model() -> onnx.ModelProto:
    """conv+BN+ReLU, decomposed h-swish, SE, channel shuffle, SiLU, x*HardSigmoid(x)."""
    g = _Graph()
    c = 32
    x = g.conv("input", 3, c, 3, "conv1")
    ones, zeros = g.const("one", np.ones(c)), g.const("zero", np.zeros(c))
    x = g.op("BatchNormalization", [x, ones, zeros, zeros, ones], "bn1")
    x = g.op("Relu", [x], "relu1")
    x = g.conv(x, c, c, 1, "conv2")  # h-swish: x * relu6(x + 3) / 6
    a = g.op("Add", [x, g.const("three", 3.0)], "hs_add")
    r6 = g.op("Clip", [a, g.const("lo", 0.0), g.const("hi", 6.0)], "hs_clip")
    x = g.op("Div", [g.op("Mul", [x, r6], "hs_mul"), g.const("six", 6.0)], "hs_div")
    s = g.op("GlobalAveragePool", [x], "se_pool")  # SE
    s = g.op("Relu", [g.conv(s, c, 8, 1, "se_reduce")], "se_relu")
    s = g.op("HardSigmoid", [g.conv(s, 8, c, 1, "se_expand")], "se_gate")
    x = g.op("Mul", [x, s], "se_mul")
    shape5 = numpy_helper.from_array(np.array([1, 4, 8, 16, 16], dtype=np.int64), "shape5")
    shape4 = numpy_helper.from_array(np.array([1, 32, 16, 16], dtype=np.int64), "shape4")
    g.inits += [shape5, shape4]
    x = g.op("Reshape", [x, "shape5"], "shuffle_in")
    x = g.op("Transpose", [x], "shuffle_t", perm=[0, 2, 1, 3, 4])
    x = g.op("Reshape", [x, "shape4"], "shuffle_out")
    x = g.conv(x, c, c, 3, "conv3")
    x = g.op("Mul", [x, g.op("Sigmoid", [x], "silu_sig")], "silu_mul")
    x = g.conv(x, c, c, 1, "conv4")
    x = g.op("Mul", [x, g.op("HardSigmoid", [x], "hs2_sig")], "hs2_mul")
    x = g.op("MaxPool", [x], "pool", kernel_shape=[2, 2], strides=[2, 2])
    graph = helper.make_graph(
        g.nodes,
        "mobile_ops",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", c, 8, 8])],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    return model


def test_se_hswish_silu_channel_shuffle() -> None:
    det = detect_kernels(_mobile_ops_model())
    # the written-out h-swish x * relu6(x + 3) / 6 is its four ops (onnxruntime runs them one
    # by one; bench.predictor_exported), x * HardSigmoid(x) one h-swish fused into the conv
    assert [k.type for k in det.kernels] == [
        "conv+bn+relu", "pwconv", "bias", "relu6", "mul", "scale", "se", "channel_shuffle",
        "conv", "silu", "pwconv+hswish", "maxpool",
    ]  # fmt: skip
    # conv+silu is no default rule; switching conv+hswish off leaves h-swish on its own
    split = detect_kernels(_mobile_ops_model(), default_rules().without("conv", "hswish"))
    assert [k.type for k in split.kernels][10:12] == ["pwconv", "hswish"]
    assert split.kernels[11].config["form"] == "decomposed"
    by_type = {k.type: k for k in det.kernels}
    assert by_type["se"].config | {"input_shape": None, "output_shape": None} == {
        "hw": 16, "cin": 32, "mid": 8, "gate": "hsigmoid", "input_shape": None,
        "output_shape": None,
    }  # fmt: skip
    assert by_type["se"].nodes == [
        "se_pool", "se_reduce", "se_relu", "se_expand", "se_gate", "se_mul"
    ]  # fmt: skip
    shuffle = by_type["channel_shuffle"].config
    assert (shuffle["groups"], shuffle["cin"], shuffle["hw"]) == (4, 32, 16)
    assert det.kernels[0].config["bn"] is True and det.kernels[0].config["activation"] == "relu"
    pool = det.kernels[-1].config
    assert (pool["kernel"], pool["stride"], pool["hw"], pool["cin"]) == (2, 2, 16, 32)
    # batch 4 by name: shapes follow the symbolic dimension (up to the fixed-shape Reshape)
    det4 = detect_kernels(_mobile_ops_model(), dims={"N": 4})
    assert det4.kernels[0].config["input_shape"] == [4, 3, 16, 16]
    assert det4.kernels[0].config["output_shape"] == [4, 32, 16, 16]


def _ort_measure(runs: int = 60):
    ort = pytest.importorskip("onnxruntime", reason="discovery is tested on onnxruntime")

    def measure(model: onnx.ModelProto) -> float:
        """Minimum over ``runs`` timed runs in one 1-thread session, after 5 warm-ups."""
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(model.SerializeToString(), opts, ["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        feed = {i.name: rng.standard_normal(i.shape).astype(np.float32) for i in sess.get_inputs()}
        for _ in range(5):
            sess.run(None, feed)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter_ns()
            sess.run(None, feed)
            times.append(time.perf_counter_ns() - t0)
        return min(times) / 1e6

    return measure


def test_decision_rule() -> None:
    assert decide(["conv", "relu"], 1.0, 0.2, 1.0).fuses  # saved 0.2 > 0.5 * 0.2
    assert not decide(["conv", "relu"], 1.0, 0.2, 1.15).fuses  # saved 0.05 < 0.1
    probe = decide(["a", "b"], 0.4, 0.3, 0.5, margin=0.25)
    assert probe.saved_ms == pytest.approx(0.2) and probe.threshold_ms == pytest.approx(0.075)


def test_probe_models_are_valid_and_keep_shape() -> None:
    for tokens in (["conv", "bn", "relu6"], ["dwconv", "add"], ["fc", "bias", "gelu"]):
        model = chain_model(tokens, ProbeShape(hw=8, channels=8, features=16))
        onnx.checker.check_model(model, full_check=True)
        ins, outs = model.graph.input, model.graph.output
        assert ins[0].type.tensor_type.shape == outs[0].type.tensor_type.shape
    with pytest.raises(ValueError, match="no probe model"):
        chain_model(["conv", "unknown"])


def test_discovery_on_onnxruntime_finds_conv_relu() -> None:
    measure = _ort_measure()
    rules = discover_fusion_rules(
        measure,
        candidates=[["conv", "relu"], ["conv", "bn"], ["add", "relu"], ["conv", "relu", "relu"]],
        shape=ProbeShape(hw=56, channels=32, kernel=1),
        device="local",
        runtime="onnxruntime",
    )
    assert rules.source == "measured" and rules.runtime == "onnxruntime"
    probes = {tuple(p.pattern): p for p in rules.probes}
    assert ("conv", "relu") in probes and ("add", "relu") in probes
    assert ["conv", "relu"] in rules.patterns, probes[("conv", "relu")]
    assert ["add", "relu"] not in rules.patterns, probes[("add", "relu")]
    # the measured rules drive detection: ResNet's convs take their ReLU
    det = detect_kernels(models.resnet_like(resolution=64), rules)
    assert _types(det)["conv+relu"] == 10


def test_masked_attention_concat_and_fc_epilogue() -> None:
    """Attention with a Div scale and an additive mask, a Concat, and MatMul+Add+Relu."""
    g = _Graph()
    q = g.op("MatMul", ["x", g.const("wq", np.eye(32))], "q")
    k = g.op(
        "Transpose", [g.op("MatMul", ["x", g.const("wk", np.eye(32))], "k")], "kt", perm=[0, 2, 1]
    )
    s = g.op("Div", [g.op("MatMul", [q, k], "qk"), g.const("sqrt_d", np.sqrt(32.0))], "scaled")
    s = g.op("Softmax", [g.op("Add", [s, "mask"], "masked")], "probs", axis=-1)
    a = g.op("MatMul", [s, "x"], "attn")
    h = g.op(
        "Add",
        [g.op("MatMul", [a, g.const("w1", np.eye(32))], "fc1"), g.const("b1", np.zeros(32))],
        "fc1_bias",
    )
    h = g.op("Relu", [h], "fc1_relu")
    out = g.op("Concat", [h, "x"], "cat", axis=-1)
    f32 = TensorProto.FLOAT
    graph = helper.make_graph(
        g.nodes,
        "attn",
        [
            helper.make_tensor_value_info("x", f32, [2, 16, 32]),
            helper.make_tensor_value_info("mask", f32, [2, 16, 16]),
        ],
        [helper.make_tensor_value_info(out, f32, [2, 16, 64])],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    det = detect_kernels(model)
    assert [k.type for k in det.kernels] == [
        "fc",
        "fc",
        "transpose",
        "attention",
        "fc+bias+relu",
        "concat",
    ]
    att = det.of_type("attention")[0].config
    assert (att["heads"], att["seq"], att["seq_kv"], att["dim"]) == (1, 16, 16, 32)
    assert att["scaled"] is True and att["masked"] is True
    fc = det.kernels[4].config
    assert (fc["cin"], fc["cout"], fc["tokens"], fc["activation"]) == (32, 32, 32, "relu")
    cat = det.kernels[5].config
    assert (cat["axis"], cat["parts"], cat["output_shape"]) == (-1, 2, [2, 16, 64])
