"""ONNX layers of each :attr:`~latencylab.spaces.Block.kind` (used by :mod:`converters.blocks`).

:class:`LayerGraph` accumulates nodes and initializers; :func:`add_block` appends one
block's layers, exactly as ``latencylab/spaces/base.py`` documents them, in inference form
(BatchNorm folded into conv weight and bias). ``onnx.helper`` and NumPy only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
from numpy.typing import ArrayLike
from onnx import helper, numpy_helper

from latencylab.spaces.base import Block

BN_EPS = 1e-5
KINDS = (
    "stem",
    "first_mbconv",
    "mbconv",
    "fbnet_block",
    "skip",
    "final_expand",
    "feature_mix",
    "pool",
    "head",
)
"""Every :attr:`Block.kind` this module builds."""


class LayerGraph:
    """Nodes and initializers of one model; names carry a per-block ``prefix``."""

    def __init__(self, rng: np.random.Generator, batch: int) -> None:
        self.rng, self.batch = rng, batch
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.prefix = ""
        self._n = 0

    def name(self, op: str) -> str:
        """A fresh tensor / node name."""
        self._n += 1
        return f"{self.prefix}{op}_{self._n}"

    def const(self, op: str, arr: ArrayLike, dtype: type = np.float32) -> str:
        """An initializer holding ``arr``."""
        name = self.name(op)
        self.inits.append(numpy_helper.from_array(np.asarray(arr, dtype=dtype), name))
        return name

    def node(self, op: str, inputs: list[str], **attrs: Any) -> str:
        """Append one ``op`` node; return its (single) output name."""
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def conv(
        self,
        x: str,
        cin: int,
        cout: int,
        k: int = 1,
        stride: int = 1,
        groups: int = 1,
        bn: bool = True,
        bias: bool = False,
        gain: float = 2.0,
    ) -> str:
        """'Same'-padded conv; with ``bn`` a random BatchNorm is folded into weight and bias."""
        fan_in = cin // groups * k * k
        w = self.rng.standard_normal((cout, cin // groups, k, k)) * np.sqrt(gain / fan_in)
        b = self.rng.standard_normal(cout) * 0.01 if bias else np.zeros(cout)
        if bn:  # fold y = gamma * (conv(x) + b - mean) / sqrt(var + eps) + beta
            gamma, var = self.rng.uniform(0.8, 1.2, cout), self.rng.uniform(0.8, 1.2, cout)
            beta, mean = self.rng.normal(0, 0.05, cout), self.rng.normal(0, 0.05, cout)
            scale = gamma / np.sqrt(var + BN_EPS)
            w, b = w * scale[:, None, None, None], (b - mean) * scale + beta
        inputs = [x, self.const("w", w)]
        if bn or bias:
            inputs.append(self.const("b", b))
        return self.node(
            "Conv",
            inputs,
            kernel_shape=[k, k],
            strides=[stride, stride],
            pads=[k // 2] * 4,
            group=groups,
        )

    def act(self, x: str, kind: str) -> str:
        """The activation ``kind`` (``none``, ``relu``, ``relu6``, ``h_swish``)."""
        if kind == "none":
            return x
        if kind == "relu":
            return self.node("Relu", [x])
        if kind == "relu6":
            return self.node("Clip", [x, self.const("lo", 0.0), self.const("hi", 6.0)])
        if kind == "h_swish":
            return self.node("HardSwish", [x])
        raise ValueError(f"unknown activation {kind!r}")


# ------------------------------------------------------------------ layers per kind
def _conv_act(g: LayerGraph, x: str, b: Block) -> str:
    """stem / final_expand / feature_mix / non-identity skip: conv (+BN) (+bias) + act."""
    cin, cout = b.in_shape[2], b.out_shape[2]
    y = g.conv(x, cin, cout, b.kernel, b.stride, b.groups, bn=b.bn, bias=b.bias)
    return g.act(y, b.act)


def _se(g: LayerGraph, x: str, channels: int, mid: int) -> str:
    """OFA ``SEModule``: GAP, reduce conv, ReLU, expand conv, h-sigmoid, scale."""
    y = g.node("GlobalAveragePool", [x])
    y = g.node("Relu", [g.conv(y, channels, mid, bn=False, bias=True)])
    y = g.conv(y, mid, channels, bn=False, bias=True, gain=1.0)
    return g.node("Mul", [x, g.node("HardSigmoid", [y], alpha=1.0 / 6.0, beta=0.5)])


def _shuffle(g: LayerGraph, x: str, b: Block, channels: int) -> str:
    """``x.view(N, g, C/g, H, W).transpose(1, 2).view(N, C, H, W)``."""
    h, w, n, grp = b.in_shape[0], b.in_shape[1], g.batch, b.groups
    five = g.const("shape", [n, grp, channels // grp, h, w], np.int64)
    y = g.node("Reshape", [x, five])
    y = g.node("Transpose", [y], perm=[0, 2, 1, 3, 4])
    return g.node("Reshape", [y, g.const("shape", [n, channels, h, w], np.int64)])


def _mbconv(g: LayerGraph, x: str, b: Block) -> str:
    """OFA ``MBConvLayer`` (also FBNet ``ConvBlock``, whose 1x1 convs are grouped)."""
    cin, cout, mid = b.in_shape[2], b.out_shape[2], b.mid
    fbnet = b.kind == "fbnet_block"
    y = x
    if b.expand_conv or fbnet:
        y = g.act(g.conv(y, cin, mid, groups=b.groups), b.act)
        if b.shuffle:
            y = _shuffle(g, y, b, mid)
    y = g.act(g.conv(y, mid, mid, b.kernel, b.stride, groups=mid), b.act)
    if b.se:
        y = _se(g, y, mid, b.se_mid)
    y = g.conv(y, mid, cout, groups=b.groups, gain=1.0)
    return g.node("Add", [y, x]) if b.skip else y


def _pool(g: LayerGraph, x: str, b: Block) -> str:
    """Global average pooling to 1x1."""
    return g.node("GlobalAveragePool", [x])


def _head(g: LayerGraph, x: str, b: Block) -> str:
    """[GAP unless already 1x1], flatten, ``Linear(C_in, C_out)`` as ``Gemm(transB=1)``."""
    cin, cout = b.in_shape[2], b.out_shape[2]
    if b.in_shape[:2] != (1, 1):
        x = g.node("GlobalAveragePool", [x])
    x = g.node("Flatten", [x], axis=1)
    w = g.rng.standard_normal((cout, cin)) * np.sqrt(1.0 / cin)
    bias = g.rng.standard_normal(cout) * 0.01
    return g.node("Gemm", [x, g.const("fc_w", w), g.const("fc_b", bias)], transB=1)


LAYERS: dict[str, Callable[[LayerGraph, str, Block], str]] = {
    "stem": _conv_act,
    "first_mbconv": _mbconv,
    "mbconv": _mbconv,
    "fbnet_block": _mbconv,
    "skip": _conv_act,
    "final_expand": _conv_act,
    "feature_mix": _conv_act,
    "pool": _pool,
    "head": _head,
}


def add_block(g: LayerGraph, x: str, block: Block) -> str:
    """Append ``block``'s layers after tensor ``x``; returns the block's output tensor."""
    if block.kind not in LAYERS:
        raise ValueError(f"unknown block kind {block.kind!r}; known: {', '.join(KINDS)}")
    if block.is_noop:
        return x
    if block.kind in ("mbconv", "first_mbconv", "fbnet_block") and block.mid <= 0:
        raise ValueError(f"block {block.key} has no mid channel count")
    return LAYERS[block.kind](g, x, block)
