"""Normalise an exported ONNX graph to the ops a latency table measured.

PyTorch modules written like the reference NAS code export ops the runtime does not fuse
(measured in docs/tables.md, "Generated and exported networks"):

* OFA's ``MyGlobalAvgPool2d`` / SE pooling ``x.mean(3).mean(2)`` -> two ``ReduceMean``
  (each a pass over the tensor, plus NCHWc reorders around them in onnxruntime) instead of
  one ``GlobalAveragePool``;
* OFA's ``Hswish`` ``x * relu6(x + 3) / 6`` -> ``Add``, ``Clip``, ``Mul``, ``Div`` (four
  elementwise passes) instead of ``HardSwish``; ``Hsigmoid`` ``relu6(x + 3) / 6`` ->
  ``Add``, ``Clip``, ``Div`` instead of ``HardSigmoid``;
* BatchNorm left unfolded (``do_constant_folding=False`` or a training-mode export) ->
  ``BatchNormalization`` after a ``Conv``.

:func:`normalize` rewrites exactly these patterns into the single ops (numerically the same
function; tested against onnxruntime) and returns the counts of what it rewrote. ``onnx``
and NumPy only.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

__all__ = ["normalize"]


class _Graph:
    def __init__(self, model: onnx.ModelProto) -> None:
        self.g = model.graph
        self.consts: dict[str, np.ndarray] = {
            i.name: numpy_helper.to_array(i) for i in self.g.initializer
        }
        for n in self.g.node:
            if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
                self.consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
        self.refresh()

    def refresh(self) -> None:
        self.producer = {o: n for n in self.g.node for o in n.output}
        self.uses: Counter[str] = Counter(i for n in self.g.node for i in n.input)
        self.uses.update(o.name for o in self.g.output)

    def scalar(self, name: str) -> float | None:
        v = self.consts.get(name)
        return float(v.reshape(-1)[0]) if v is not None and v.size == 1 else None

    def single(self, name: str) -> onnx.NodeProto | None:
        """The producer of ``name`` when ``name`` has exactly one consumer."""
        return self.producer.get(name) if self.uses[name] == 1 else None

    def axes(self, n: onnx.NodeProto) -> list[int] | None:
        for a in n.attribute:
            if a.name == "axes":
                return list(a.ints)
        if len(n.input) > 1 and n.input[1] in self.consts:
            return [int(x) for x in self.consts[n.input[1]].reshape(-1)]
        return None

    @staticmethod
    def attr(n: onnx.NodeProto, name: str, default: Any) -> Any:
        for a in n.attribute:
            if a.name == name:
                return helper.get_attribute_value(a)
        return default


def _near(x: float | None, want: float) -> bool:
    return x is not None and abs(x - want) <= 1e-6 * max(1.0, abs(want))


def _clip_bounds(gr: _Graph, n: onnx.NodeProto) -> tuple[float | None, float | None]:
    if len(n.input) > 1:
        lo = gr.scalar(n.input[1]) if n.input[1] else None
        hi = gr.scalar(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        return lo, hi
    return gr.attr(n, "min", None), gr.attr(n, "max", None)


def _relu6_of_x_plus_3(gr: _Graph, name: str) -> tuple[str, list[onnx.NodeProto]] | None:
    """``Clip(Add(x, 3), 0, 6)`` producing ``name`` -> ``(x, [clip, add])``."""
    clip = gr.single(name)
    if clip is None or clip.op_type != "Clip" or _clip_bounds(gr, clip) != (0.0, 6.0):
        return None
    add = gr.single(clip.input[0])
    if add is None or add.op_type != "Add":
        return None
    for x, c in ((add.input[0], add.input[1]), (add.input[1], add.input[0])):
        if _near(gr.scalar(c), 3.0) and x not in gr.consts:
            return x, [clip, add]
    return None


def _div6(gr: _Graph, n: onnx.NodeProto) -> str | None:
    """The input ``y`` when ``n`` is ``y / 6`` or ``y * (1/6)``."""
    if n.op_type == "Div" and _near(gr.scalar(n.input[1]), 6.0):
        return n.input[0]
    if n.op_type == "Mul":
        for y, c in ((n.input[0], n.input[1]), (n.input[1], n.input[0])):
            if _near(gr.scalar(c), 1 / 6):
                return y
    return None


def _replace(gr: _Graph, old: list[onnx.NodeProto], new: onnx.NodeProto) -> None:
    """Put ``new`` where the last of ``old`` (the one producing the output) was."""
    nodes = list(gr.g.node)
    at = nodes.index(old[0])
    drop = {id(n) for n in old}
    kept = [n for n in nodes[:at] if id(n) not in drop] + [new]
    kept += [n for n in nodes[at + 1 :] if id(n) not in drop]
    del gr.g.node[:]
    gr.g.node.extend(kept)
    gr.refresh()


def _hard_swish(gr: _Graph, stats: Counter[str]) -> bool:
    """``(x * relu6(x + 3)) / 6`` or ``x * (relu6(x + 3) / 6)`` -> ``HardSwish(x)``."""
    for n in gr.g.node:
        y = _div6(gr, n)
        if y is not None and (mul := gr.single(y)) is not None and mul.op_type == "Mul":
            for x, r in ((mul.input[0], mul.input[1]), (mul.input[1], mul.input[0])):
                hit = _relu6_of_x_plus_3(gr, r)
                if hit and hit[0] == x:
                    new = helper.make_node("HardSwish", [x], [n.output[0]], name=n.name or None)
                    _replace(gr, [n, mul, *hit[1]], new)
                    stats["HardSwish"] += 1
                    return True
        if n.op_type == "Mul":
            for x, r in ((n.input[0], n.input[1]), (n.input[1], n.input[0])):
                div = gr.single(r)
                y = _div6(gr, div) if div is not None else None
                hit = _relu6_of_x_plus_3(gr, y) if y is not None else None
                if div is not None and hit and hit[0] == x:
                    new = helper.make_node("HardSwish", [x], [n.output[0]], name=n.name or None)
                    _replace(gr, [n, div, *hit[1]], new)
                    stats["HardSwish"] += 1
                    return True
    return False


def _hard_sigmoid(gr: _Graph, stats: Counter[str]) -> bool:
    """``relu6(x + 3) / 6`` -> ``HardSigmoid(x, alpha=1/6, beta=0.5)``."""
    for n in gr.g.node:
        y = _div6(gr, n)
        hit = _relu6_of_x_plus_3(gr, y) if y is not None else None
        if hit:
            new = helper.make_node(
                "HardSigmoid", [hit[0]], [n.output[0]], alpha=1 / 6, beta=0.5, name=n.name or None
            )
            _replace(gr, [n, *hit[1]], new)
            stats["HardSigmoid"] += 1
            return True
    return False


def _global_pool(gr: _Graph, stats: Counter[str]) -> bool:
    """``ReduceMean(axis 3)`` then ``ReduceMean(axis 2)`` of an NCHW tensor -> GAP
    (+ ``Flatten`` when ``keepdims=0``)."""
    for n in gr.g.node:
        if n.op_type != "ReduceMean" or gr.axes(n) not in ([2], [-2]):
            continue
        first = gr.single(n.input[0])
        if first is None or first.op_type != "ReduceMean" or gr.axes(first) not in ([3], [-1]):
            continue
        keep = gr.attr(n, "keepdims", 1)
        if gr.attr(first, "keepdims", 1) != keep or (keep == 0 and gr.axes(n) != [2]):
            continue
        x, out = first.input[0], n.output[0]
        if keep:
            _replace(gr, [n, first], helper.make_node("GlobalAveragePool", [x], [out]))
        else:
            pooled = f"{out}__gap"
            _replace(gr, [n, first], helper.make_node("GlobalAveragePool", [x], [pooled]))
            at = next(i for i, m in enumerate(gr.g.node) if pooled in m.output)
            gr.g.node.insert(at + 1, helper.make_node("Flatten", [pooled], [out], axis=1))
            gr.refresh()
        stats["GlobalAveragePool"] += 1
        return True
    return False


def _fold_bn(gr: _Graph, stats: Counter[str]) -> bool:
    """``BatchNormalization(Conv(x, W, b))`` with constant parameters -> ``Conv(x, W', b')``."""
    for n in gr.g.node:
        if n.op_type != "BatchNormalization" or len(n.output) != 1:
            continue
        conv = gr.single(n.input[0])
        params = [gr.consts.get(i) for i in n.input[1:5]]
        if conv is None or conv.op_type != "Conv" or any(p is None for p in params):
            continue
        w = gr.consts.get(conv.input[1])
        if w is None:
            continue
        gamma, beta, mean, var = (np.asarray(p, dtype=np.float64) for p in params)
        b0 = gr.consts.get(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else None
        b = np.zeros(w.shape[0]) if b0 is None else np.asarray(b0, dtype=np.float64)
        scale = gamma / np.sqrt(var + float(gr.attr(n, "epsilon", 1e-5)))
        w2 = (w * scale.reshape(-1, *([1] * (w.ndim - 1)))).astype(w.dtype)
        b2 = ((b - mean) * scale + beta).astype(w.dtype)
        wn, bn = f"{conv.output[0]}__w_folded", f"{conv.output[0]}__b_folded"
        gr.g.initializer.extend([numpy_helper.from_array(w2, wn), numpy_helper.from_array(b2, bn)])
        gr.consts[wn], gr.consts[bn] = w2, b2
        new = helper.make_node("Conv", [conv.input[0], wn, bn], [n.output[0]], name=conv.name)
        new.attribute.extend(conv.attribute)
        _replace(gr, [n, conv], new)
        stats["BatchNormalization folded"] += 1
        return True
    return False


def _prune(model: onnx.ModelProto) -> None:
    """Drop initializers and Constant nodes nothing reads any more."""
    g = model.graph
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    keep = [n for n in g.node if n.op_type != "Constant" or n.output[0] in used]
    del g.node[:]
    g.node.extend(keep)
    inits = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(inits)
    known = {o for n in g.node for o in n.output}
    vi = [v for v in g.value_info if v.name in known]
    del g.value_info[:]
    g.value_info.extend(vi)


def _constants_to_initializers(model: onnx.ModelProto) -> None:
    """``Constant`` nodes (the TorchScript exporter's Clip bounds, divisors, axes) become
    initializers, as in the generated networks (no op: onnxruntime folds them anyway)."""
    g = model.graph
    keep = []
    for n in g.node:
        if n.op_type == "Constant" and len(n.attribute) == 1 and n.attribute[0].name == "value":
            t = onnx.TensorProto()
            t.CopyFrom(n.attribute[0].t)
            t.name = n.output[0]
            g.initializer.append(t)
        else:
            keep.append(n)
    del g.node[:]
    g.node.extend(keep)


def normalize(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, int]]:
    """A copy of ``model`` with the patterns above rewritten, and ``{rewrite: count}``
    (``Constant`` nodes also become initializers; not counted)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    _constants_to_initializers(out)
    gr = _Graph(out)
    stats: Counter[str] = Counter()
    for rewrite in (_fold_bn, _hard_swish, _hard_sigmoid, _global_pool):
        while rewrite(gr, stats):
            pass
    _prune(out)
    onnx.checker.check_model(out)
    return out, dict(stats)
