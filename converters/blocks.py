"""Standalone ONNX models of latency-table blocks and of whole search-space networks.

:func:`block_model` builds ONE :class:`~latencylab.spaces.Block` (so a table builder can
time it alone); :func:`network_model` chains exactly ``space.blocks_for(arch, resolution)``
(so the sum of the table's entries can be checked against the measured network). Both
build the layers documented in :mod:`latencylab.spaces.base`, in inference form, the way a
deployment exporter leaves them:

* BatchNorm folded into the conv weights and bias (no ``BatchNormalization`` node); a conv
  has a bias iff the block has ``bn`` or ``bias``;
* ``relu6`` -> ``Clip(0, 6)``, ``relu`` -> ``Relu``, ``h_swish`` -> ``HardSwish``;
* SE -> ``GlobalAveragePool`` -> 1x1 ``Conv`` -> ``Relu`` -> 1x1 ``Conv`` ->
  ``HardSigmoid(alpha=1/6, beta=0.5)`` (OFA's ``Hsigmoid``) -> ``Mul``;
* channel shuffle -> ``Reshape`` -> ``Transpose`` -> ``Reshape``; identity skip -> ``Add``;
* head -> [``GlobalAveragePool`` when the input is not 1x1] -> ``Flatten`` -> ``Gemm``
  (``transB=1``, PyTorch ``Linear`` layout).

Random seeded float32 weights, opset 17 (IR 8), NCHW, static shapes. Tensors are NCHW
``[batch, C, H, W]`` except the head's output, ``[batch, classes]``. ``onnx.helper`` only.

>>> from latencylab.spaces import get_space
>>> space = get_space("ofa-mbv3")
>>> net = network_model(space, space.sample(), 224)  # doctest: +SKIP
>>> save(block_model(space.expand(224)[5]), "block5.onnx")  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from converters.block_layers import KINDS, LayerGraph, add_block
from latencylab.spaces.base import Arch, Block, SearchSpace

OPSET = 17
IR_VERSION = 8
"""Lowest IR version that carries opset 17; older on-device runtimes load it."""

__all__ = [
    "IR_VERSION",
    "KINDS",
    "OPSET",
    "block_model",
    "io_shapes",
    "network_model",
    "save",
    "tensor_shape",
]


# ------------------------------------------------------------------ public API
def tensor_shape(shape: tuple[int, int, int], batch_size: int, kind: str = "") -> list[int]:
    """ONNX shape of a block's ``(H, W, C)`` tensor: NCHW, or ``[N, C]`` after a head."""
    h, w, c = shape
    return [batch_size, c] if kind == "head" else [batch_size, c, h, w]


def io_shapes(block: Block, batch_size: int = 1) -> tuple[list[int], list[int]]:
    """The ONNX input and output shapes of :func:`block_model` for ``block``."""
    return (
        tensor_shape(block.in_shape, batch_size),
        tensor_shape(block.out_shape, batch_size, block.kind),
    )


def _finish(
    g: LayerGraph,
    out: str,
    in_shape: list[int],
    out_shape: list[int],
    name: str,
    meta: dict[str, str],
) -> onnx.ModelProto:
    """Rename the last tensor to ``output``, wrap the graph, check it."""
    for node in g.nodes:
        node.input[:] = ["output" if i == out else i for i in node.input]
        node.output[:] = ["output" if o == out else o for o in node.output]
    graph = helper.make_graph(
        g.nodes,
        name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, out_shape)],
        g.inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="latencylab-blocks",
        ir_version=IR_VERSION,
    )
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model)
    return model


def _check_batch(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")


def block_model(block: Block, batch_size: int = 1, seed: int = 0) -> onnx.ModelProto:
    """A standalone ONNX model of ``block`` alone: input ``input``, output ``output``.

    Raises ValueError for a no-op block (:attr:`Block.is_noop`: measure it as 0 ms) and
    for an unknown kind. Same ``block`` and ``seed`` give byte-identical models.
    """
    _check_batch(batch_size)
    if block.is_noop:
        raise ValueError(
            f"block {block.key} is an identity (no-op): it has no layers to build; "
            "record 0 ms for it"
        )
    g = LayerGraph(np.random.default_rng(seed), batch_size)
    out = add_block(g, "input", block)
    in_shape, out_shape = io_shapes(block, batch_size)
    meta = {"latencylab.block_key": block.key, "latencylab.kind": block.kind}
    return _finish(g, out, in_shape, out_shape, f"block_{block.kind}", meta)


def network_model(
    space: SearchSpace,
    arch: Arch,
    resolution: int | None = None,
    batch_size: int = 1,
    seed: int = 0,
) -> onnx.ModelProto:
    """The whole network of ``arch``: exactly ``space.blocks_for(arch, resolution)`` chained.

    Input ``[batch, 3, R, R]``, output ``[batch, classes]`` (when the space ends in a head).
    No-op blocks add nothing; every other block adds exactly the nodes :func:`block_model`
    builds for it, and nothing is added between blocks.
    """
    _check_batch(batch_size)
    blocks = space.blocks_for(arch, resolution)
    res = space.arch_resolution(space.normalize(arch), resolution)
    g = LayerGraph(np.random.default_rng(seed), batch_size)
    x = "input"
    for i, block in enumerate(blocks):
        g.prefix = f"b{i:02d}_"
        x = add_block(g, x, block)
    if x == "input":
        raise ValueError("the network has no layers (every block is a no-op)")
    first, last = blocks[0], blocks[-1]
    meta = {
        "latencylab.space": space.name,
        "latencylab.resolution": str(res),
        "latencylab.arch": json.dumps(space.normalize(arch)),
        "latencylab.block_keys": json.dumps([b.key for b in blocks]),
    }
    return _finish(
        g,
        x,
        tensor_shape(first.in_shape, batch_size),
        tensor_shape(last.out_shape, batch_size, last.kind),
        f"{space.name}_r{res}",
        meta,
    )


def save(model: onnx.ModelProto, path: str | Path) -> Path:
    """Write ``model`` to ``path`` (parent folders created); returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, p)
    return p
