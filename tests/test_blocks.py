"""Standalone ONNX models of table blocks and whole networks (``converters.blocks``).

Every unique block of every space (two resolutions each) is built, fully checked and run in
onnxruntime; op-type multisets are compared against the layer list that
``latencylab/spaces/base.py`` documents per kind; a sample of blocks is compared
numerically with an independent torch implementation of that spec; whole networks of
sampled archs must be exactly the concatenation of their blocks.
"""

from __future__ import annotations

import random
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from converters.blocks import block_model, io_shapes, network_model, save
from latencylab.spaces import Block, FBNetSpace, SearchSpace, get_space

CASES: dict[str, tuple[SearchSpace, int]] = {
    "ofa-proxyless-224": (get_space("ofa-proxyless"), 224),
    "ofa-proxyless-160": (get_space("ofa-proxyless"), 160),
    "ofa-mbv3-224": (get_space("ofa-mbv3"), 224),
    "ofa-mbv3-128": (get_space("ofa-mbv3"), 128),
    "fbnet-224": (get_space("fbnet"), 224),
    "fbnet-cifar100-32": (FBNetSpace("cifar100"), 32),
}
ACT_OPS = {"relu": ["Relu"], "relu6": ["Clip"], "h_swish": ["HardSwish"], "none": []}


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return _session(model).run(None, {"input": x})[0]


@cache
def built(case: str) -> list[tuple[Block, onnx.ModelProto]]:
    """Every non-no-op block of ``expand()`` with its model (built once per module)."""
    space, res = CASES[case]
    return [(b, block_model(b)) for b in space.expand(res) if not b.is_noop]


def expected_ops(b: Block) -> Counter[str]:
    """The op types each kind must contain, straight from the ``base.py`` docstring."""
    ops: list[str] = []
    if b.kind in ("stem", "skip", "final_expand", "feature_mix"):
        ops += ["Conv", *ACT_OPS[b.act]]
    elif b.kind in ("mbconv", "first_mbconv", "fbnet_block"):
        if b.expand_conv or b.kind == "fbnet_block":
            ops += ["Conv", *ACT_OPS[b.act]]
        ops += ["Reshape", "Transpose", "Reshape"] if b.shuffle else []
        ops += ["Conv", *ACT_OPS[b.act]]
        ops += ["GlobalAveragePool", "Conv", "Relu", "Conv", "HardSigmoid", "Mul"] if b.se else []
        ops += ["Conv", *(["Add"] if b.skip else [])]
    elif b.kind == "pool":
        ops += ["GlobalAveragePool"]
    elif b.kind == "head":
        ops += [] if b.in_shape[:2] == (1, 1) else ["GlobalAveragePool"]
        ops += ["Flatten", "Gemm"]
    return Counter(ops)


@pytest.mark.parametrize("case", list(CASES))
def test_every_block_checks_runs_and_has_its_shape(case: str) -> None:
    rng = np.random.default_rng(0)
    for block, model in built(case):
        onnx.checker.check_model(model, full_check=True)
        assert model.opset_import[0].version == 17
        in_shape, out_shape = io_shapes(block)
        assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == in_shape
        y = _run(model, rng.standard_normal(in_shape).astype(np.float32))
        assert list(y.shape) == out_shape, block.key
        assert y.dtype == np.float32 and np.isfinite(y).all(), block.key


@pytest.mark.parametrize("case", list(CASES))
def test_node_types_per_kind(case: str) -> None:
    for block, model in built(case):
        nodes = model.graph.node
        assert Counter(n.op_type for n in nodes) == expected_ops(block), block.key
        convs = [n for n in nodes if n.op_type == "Conv"]
        attrs = [{a.name: helper_value(a) for a in n.attribute} for n in convs]
        if block.kind in ("mbconv", "first_mbconv", "fbnet_block"):
            dw = [a for a in attrs if a["kernel_shape"] == [block.kernel] * 2]
            assert any(a["group"] == block.mid and a["strides"] == [block.stride] * 2 for a in dw)
            if block.kind == "fbnet_block":  # both 1x1 convs carry the block's groups
                assert [a["group"] for a in attrs if a["kernel_shape"] == [1, 1]] == [
                    block.groups
                ] * 2
        for n in nodes:
            if n.op_type == "HardSigmoid":  # OFA's Hsigmoid: relu6(x + 3) / 6
                a = {x.name: helper_value(x) for x in n.attribute}
                assert a["alpha"] == pytest.approx(1 / 6) and a["beta"] == pytest.approx(0.5)
        if block.kind in ("stem", "skip", "final_expand", "feature_mix"):
            assert len(convs[0].input) == (3 if block.bn or block.bias else 2), block.key
            assert attrs[0]["kernel_shape"] == [block.kernel] * 2
            assert attrs[0]["strides"] == [block.stride] * 2


def helper_value(attr: onnx.AttributeProto) -> object:
    """Attribute value as a plain Python object."""
    v = onnx.helper.get_attribute_value(attr)
    return list(v) if isinstance(v, list | tuple) else v


def test_kinds_and_counts_cover_the_spaces() -> None:
    kinds = {b.kind for case in CASES for b, _ in built(case)}
    assert kinds == {
        "stem",
        "first_mbconv",
        "mbconv",
        "fbnet_block",
        "skip",
        "final_expand",
        "feature_mix",
        "pool",
        "head",
    }
    assert any(b.se and b.act == "h_swish" for b, _ in built("ofa-mbv3-224"))
    assert any(b.shuffle for b, _ in built("fbnet-224"))


def test_noop_block_raises() -> None:
    noop = next(b for b in get_space("fbnet").expand(224) if b.is_noop)
    with pytest.raises(ValueError, match="no-op"):
        block_model(noop)
    with pytest.raises(ValueError, match="batch_size"):
        block_model(built("fbnet-224")[0][0], batch_size=0)


def test_batch_size_is_static_and_used() -> None:
    kinds: dict[tuple[str, bool], Block] = {}
    for case in ("fbnet-224", "ofa-mbv3-128"):
        for b, _ in built(case):
            kinds.setdefault((b.kind, b.shuffle), b)
    for block in kinds.values():
        in_shape, out_shape = io_shapes(block, 3)
        assert in_shape[0] == out_shape[0] == 3
        x = np.ones(in_shape, np.float32)
        assert list(_run(block_model(block, batch_size=3), x).shape) == out_shape, block.key


# ------------------------------------------------------------- numerics vs a torch spec
def torch_reference(block: Block, model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """The block computed by torch from the ``base.py`` spec, with the model's weights."""
    torch = pytest.importorskip("torch")
    f = torch.nn.functional
    init = {
        t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in model.graph.initializer
    }
    convs = iter(
        (init[n.input[1]], init[n.input[2]] if len(n.input) > 2 else None)
        for n in model.graph.node
        if n.op_type == "Conv"
    )

    def conv(t: Any, k: int = 1, s: int = 1, groups: int = 1) -> Any:
        w, b = next(convs)
        return f.conv2d(t, w, b, s, k // 2, 1, groups)

    def act(t: Any, kind: str) -> Any:
        fns = {"relu": f.relu, "relu6": f.relu6, "h_swish": f.hardswish, "none": lambda v: v}
        return fns[kind](t)

    t = torch.from_numpy(x)
    with torch.no_grad():
        if block.kind in ("stem", "skip", "final_expand", "feature_mix"):
            return act(conv(t, block.kernel, block.stride), block.act).numpy()
        if block.kind == "pool":
            return t.mean((2, 3), keepdim=True).numpy()
        if block.kind == "head":
            gemm = next(n for n in model.graph.node if n.op_type == "Gemm")
            return f.linear(t.mean((2, 3)), init[gemm.input[1]], init[gemm.input[2]]).numpy()
        y = t
        if block.expand_conv or block.kind == "fbnet_block":
            y = act(conv(y, groups=block.groups), block.act)
            if block.shuffle:
                y = torch.nn.ChannelShuffle(block.groups)(y)
        y = act(conv(y, block.kernel, block.stride, block.mid), block.act)
        if block.se:
            s = f.relu(conv(y.mean((2, 3), keepdim=True)))
            y = y * f.hardsigmoid(conv(s))  # torch hardsigmoid == relu6(x + 3) / 6
        y = conv(y, groups=block.groups)
        return (y + t if block.skip else y).numpy()


@pytest.mark.parametrize("case", ["ofa-proxyless-160", "ofa-mbv3-128", "fbnet-cifar100-32"])
def test_blocks_match_torch_reference(case: str) -> None:
    rng = np.random.default_rng(1)
    seen: set[tuple[object, ...]] = set()
    for block, model in built(case):
        sig = (block.kind, block.se, block.act, block.skip, block.shuffle, block.expand_conv)
        if sig in seen:
            continue
        seen.add(sig)
        x = rng.standard_normal(io_shapes(block)[0]).astype(np.float32)
        ref = torch_reference(block, model, x)
        np.testing.assert_allclose(_run(model, x), ref, rtol=1e-4, atol=1e-4, err_msg=block.key)
    assert len(seen) >= 6


# ------------------------------------------------------------- whole networks
def _archs(space: SearchSpace) -> list[object]:
    rng = random.Random(7)
    archs = [space.sample(rng) for _ in range(3)]
    if isinstance(space, FBNetSpace):
        return [*archs, [8] * space.num_layers, [7] * space.num_layers]
    return [*archs, {"ks": 7, "e": 6, "d": 4}, {"ks": 3, "e": 3, "d": 2}]


@pytest.mark.parametrize("case", ["ofa-proxyless-224", "ofa-mbv3-128", "fbnet-224"])
def test_network_is_exactly_its_blocks(case: str) -> None:
    space, res = CASES[case]
    for i, arch in enumerate(_archs(space)):
        blocks = space.blocks_for(arch, res)
        batch = 2 if i == 0 else 1
        net = network_model(space, arch, res, batch_size=batch, seed=i)
        onnx.checker.check_model(net, full_check=True)
        y = _run(net, np.random.default_rng(i).standard_normal((batch, 3, res, res), np.float32))
        assert y.shape == (batch, blocks[-1].out_shape[2]) and np.isfinite(y).all()
        parts = [block_model(b, batch) for b in blocks if not b.is_noop]
        assert len(net.graph.node) == sum(len(m.graph.node) for m in parts)
        assert [n.op_type for n in net.graph.node] == [
            n.op_type for m in parts for n in m.graph.node
        ]
        weights = [tuple(t.dims) for t in net.graph.initializer]
        assert weights == [tuple(t.dims) for m in parts for t in m.graph.initializer]


def test_seeded_weights_are_deterministic(tmp_path: Path) -> None:
    space, res = CASES["ofa-mbv3-224"]
    block = next(b for b in space.expand(res) if b.se)
    a, b = block_model(block, seed=3), block_model(block, seed=3)
    assert a.SerializeToString() == b.SerializeToString()
    assert block_model(block, seed=4).SerializeToString() != a.SerializeToString()
    arch = space.sample(random.Random(0))
    n1, n2 = network_model(space, arch, res, seed=5), network_model(space, arch, res, seed=5)
    assert n1.SerializeToString() == n2.SerializeToString()
    path = save(a, tmp_path / "sub" / "block.onnx")
    assert onnx.load(path).SerializeToString() == a.SerializeToString()
