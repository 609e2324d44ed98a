"""Shared helpers: ONNX -> torch bridge (onnx2torch), seeded example tensors, layouts."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import numpy as np

from converters.errors import ConversionError
from converters.simplify import convert_opset, simplify_model


def _ensure_torchvision_importable() -> None:
    """onnx2torch imports torchvision for its NMS/RoiAlign converters only.

    PyPI only has CUDA builds of torchvision, which cannot load next to CPU torch; when
    torchvision is missing we register a stub so the rest of onnx2torch works, and models
    that really use NonMaxSuppression/RoiAlign fail with a clear message.
    """
    try:
        import torchvision  # noqa: F401

        return
    except Exception:
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]

    def _missing(*_a: Any, **_k: Any) -> Any:
        raise ConversionError(
            "this model uses NonMaxSuppression/RoiAlign, which the onnx2torch bridge needs "
            "torchvision for, and torchvision is not installed",
            step="onnx2torch",
            hint="install torchvision matching your torch build, or use TFLiteFromOnnx(backend='onnx2tf')",
        )

    tv = types.ModuleType("torchvision")
    ops = types.ModuleType("torchvision.ops")
    ops.nms = ops.batched_nms = ops.roi_align = _missing  # type: ignore[attr-defined]
    tv.ops = ops  # type: ignore[attr-defined]
    sys.modules["torchvision"] = tv
    sys.modules["torchvision.ops"] = ops
    try:
        import onnx2torch  # noqa: F401  (binds the stub inside onnx2torch's modules)
    finally:  # keep the stub out of sight of torch.onnx/coremltools, which probe torchvision
        del sys.modules["torchvision"], sys.modules["torchvision.ops"]


def onnx_to_torch(
    src: str | Path, input_shapes: dict[str, list[int]] | None = None, *, simplify: bool = True
) -> Any:
    """Load an ONNX file as a ``torch.fx.GraphModule`` with onnx2torch (eval mode).

    With ``simplify`` (the default) the graph first goes through the shape-folding pass of
    ``converters.simplify`` with its inputs fixed to ``input_shapes`` (where given), so
    ``Shape``-driven reshapes reach onnx2torch as constants; the pass's report is in
    ``module.meta["simplify"]``."""
    _ensure_torchvision_importable()
    import onnx
    from onnx2torch import convert

    model = onnx.load(str(src))
    report = None
    if simplify:
        model, rep = simplify_model(model, input_shapes)
        report = rep.to_dict()
    model = prepare_for_onnx2torch(model)
    try:
        module = convert(model)
    except NotImplementedError as exc:
        raise ConversionError(
            f"onnx2torch cannot translate this model: {exc}", step="onnx2torch"
        ) from exc
    _fold_constant_reshapes(module)
    _contiguous_tensors(module)
    module.meta["simplify"] = report
    return module.eval()


def _contiguous_tensors(module: Any) -> None:
    """onnx2torch stores a Gemm's ``transB=0`` weight as a transposed *view* (``weights.T``);
    litert-torch serializes a parameter's storage as if it were contiguous, so such a weight
    came out transposed in the .tflite (rel. error ~1 on onnxsim-fused MatMul+Add -> Gemm).
    Give every parameter and buffer its own contiguous storage."""
    for t in [*module.parameters(), *module.buffers()]:
        if not t.is_contiguous():
            t.data = t.data.contiguous()


def _fold_constant_reshapes(gm: Any) -> None:
    """onnx2torch's Reshape, Slice, Gather, Split, Resize and (Un)Squeeze read sizes, bounds,
    scales or axes from buffers at run time, which torch.export sees as data-dependent; bake
    the constants in (``torch.reshape`` with fixed sizes, a slicing module with fixed python
    slices, split, resize and static-axes modules with python lists)."""
    import torch
    from onnx2torch.node_converters.gather import OnnxGather
    from onnx2torch.node_converters.reshape import OnnxReshape
    from onnx2torch.node_converters.resize import OnnxResize, _onnx_mode_to_torch_mode
    from onnx2torch.node_converters.slice import OnnxSlice, _do_slice, _get_slices
    from onnx2torch.node_converters.split import OnnxSplit, OnnxSplit13
    from onnx2torch.node_converters.squeeze import OnnxSqueezeDynamicAxes, OnnxSqueezeStaticAxes
    from onnx2torch.node_converters.unsqueeze import (
        OnnxUnsqueezeDynamicAxes,
        OnnxUnsqueezeStaticAxes,
    )

    static_axes = {
        OnnxSqueezeDynamicAxes: OnnxSqueezeStaticAxes,
        OnnxUnsqueezeDynamicAxes: OnnxUnsqueezeStaticAxes,
    }

    class StaticSlice(torch.nn.Module):
        def __init__(self, flip: list[int], pos: list[Any], neg: list[Any]) -> None:
            super().__init__()
            self.flip, self.pos, self.neg = flip, pos, neg

        def forward(self, x: Any) -> Any:
            return _do_slice(x, self.flip, self.pos, self.neg)

    class StaticResize(torch.nn.Module):
        def __init__(self, mode: str, align: Any, size: Any, scale: Any) -> None:
            super().__init__()
            self.mode, self.align, self.size, self.scale = mode, align, size, scale

        def forward(self, x: Any) -> Any:
            mode = _onnx_mode_to_torch_mode(self.mode, x.dim() - 2)
            return torch.nn.functional.interpolate(
                x, size=self.size, scale_factor=self.scale, mode=mode, align_corners=self.align
            )

    def resize_args(mod: Any, consts: list[Any], named: dict[str, Any]) -> tuple[Any, Any] | None:
        """(sizes, scales) of the spatial dims, or None where onnx2torch would refuse."""
        pos = dict(zip(("roi", "scales", "sizes"), consts, strict=False)) | named
        roi, scales, sizes = (pos.get(k) for k in ("roi", "scales", "sizes"))
        if roi is not None and roi.nelement() and not mod.ignore_roi:
            return None
        if sizes is not None and sizes.nelement():
            return [int(v) for v in sizes.tolist()[2:]], None
        if scales is not None and scales.nelement() and scales.tolist()[:2] == [1, 1]:
            return None, [float(v) for v in scales.tolist()[2:]]
        return None

    def const(arg: Any) -> Any:
        if arg is None:
            return None
        if getattr(arg, "op", None) != "get_attr":
            raise LookupError
        value = gm
        for part in arg.target.split("."):
            value = getattr(value, part)
        return value

    for node in list(gm.graph.nodes):
        if node.op != "call_module":
            continue
        mod = gm.get_submodule(node.target)
        try:
            consts = [const(a) for a in node.args[1:]]
            named = {k: const(v) for k, v in node.kwargs.items()}
        except LookupError:
            continue
        if isinstance(mod, OnnxReshape):
            sizes = [int(v) for v in consts[0].tolist()]
            if 0 in sizes:
                continue
            with gm.graph.inserting_before(node):
                new = gm.graph.call_function(torch.reshape, (node.args[0], tuple(sizes)))
        elif isinstance(mod, OnnxGather) and consts[0].dim() == 0:  # x[..., i, ...] == select
            with gm.graph.inserting_before(node):
                new = gm.graph.call_function(
                    torch.select, (node.args[0], mod._axis, int(consts[0]))
                )
        elif type(mod) in static_axes and consts and consts[0] is not None:
            name = node.target.replace(".", "_") + "_static"
            gm.add_submodule(name, static_axes[type(mod)]([int(a) for a in consts[0].tolist()]))
            with gm.graph.inserting_before(node):
                new = gm.graph.call_module(name, (node.args[0],))
        elif isinstance(mod, OnnxSplit13) and consts and consts[0] is not None:
            sizes = [int(v) for v in consts[0].tolist()]
            name = node.target.replace(".", "_") + "_static"
            gm.add_submodule(name, OnnxSplit(mod.num_splits, mod.axis, sizes))
            with gm.graph.inserting_before(node):
                new = gm.graph.call_module(name, (node.args[0],))
        elif isinstance(mod, OnnxResize) and (args := resize_args(mod, consts, named)) is not None:
            name = node.target.replace(".", "_") + "_static"
            gm.add_submodule(name, StaticResize(mod.onnx_mode, mod.align_corners, *args))
            with gm.graph.inserting_before(node):
                new = gm.graph.call_module(name, (node.args[0],))
        elif isinstance(mod, OnnxSlice):
            starts, ends = ([int(v) for v in c.tolist()] for c in consts[:2])
            axes, steps = [*consts[2:], None, None][:2]
            flip, pos, neg = _get_slices(starts, ends, axes, steps)
            clean = lambda sl: [  # noqa: E731
                slice(*(None if v is None else int(v) for v in (x.start, x.stop, x.step)))
                if isinstance(x, slice)
                else x
                for x in sl
            ]
            name = node.target.replace(".", "_") + "_static"
            gm.add_submodule(name, StaticSlice([int(d) for d in flip], clean(pos), clean(neg)))
            with gm.graph.inserting_before(node):
                new = gm.graph.call_module(name, (node.args[0],))
        else:
            continue
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()


def prepare_for_onnx2torch(model: Any) -> Any:
    """Rewrite what onnx2torch 1.5 refuses although it is equivalent.

    * opset 18 -> 17 (onnx2torch lacks the opset-18 Reduce* forms);
    * ``Reshape(allowzero=1)`` (emitted by the dynamo exporter) -> ``allowzero=0``, which
      means the same when the target shape is a constant without zeros.
    """
    from onnx import numpy_helper

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    if opset > 17:
        from converters.onnx_steps import _strip_reduce_noop

        model = convert_opset(model, 17)
        _strip_reduce_noop(model)
    consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    for node in model.graph.node:
        if node.op_type != "Reshape":
            continue
        shape = consts.get(node.input[1]) if len(node.input) > 1 else None
        for a in node.attribute:
            if a.name == "allowzero" and a.i == 1 and shape is not None and 0 not in shape.tolist():
                a.i = 0
    return model


def seeded_inputs(specs: list[tuple[str, list[int], str]], seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic inputs: N(0,1) floats, small non-negative ints, random bools."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for name, shape, dtype in specs:
        dt = np.dtype("float32" if dtype in ("unknown", "") else dtype)
        if dt.kind == "f":
            out[name] = rng.standard_normal(shape).astype(dt)
        elif dt.kind in "iu":
            out[name] = rng.integers(0, 8, size=shape).astype(dt)
        elif dt.kind == "b":
            out[name] = rng.integers(0, 2, size=shape).astype(bool)
        else:
            raise ConversionError(f"cannot make example data of dtype {dtype} for input {name!r}")
    return out


def channel_last_perm(rank: int) -> list[int]:
    """NCHW -> NHWC (and NCW -> NWC, NCDHW -> NDHWC)."""
    return [0, *range(2, rank), 1]


def infer_perm(
    src_shape: list[Any], art_shape: list[Any], prefer_channel_last: bool
) -> list[int] | None:
    """The permutation p with ``artifact = source.transpose(p)``, or None when identical."""
    src = [int(d) if isinstance(d, (int, np.integer)) and int(d) > 0 else None for d in src_shape]
    art = [int(d) if int(d) > 0 else None for d in art_shape]
    if len(src) != len(art) or len(src) < 3:
        return None
    perm = channel_last_perm(len(src))
    moved = [src[i] for i in perm]
    same = all(a is None or s is None or a == s for s, a in zip(src, art, strict=True))
    last = all(a is None or s is None or a == s for s, a in zip(moved, art, strict=True))
    if last and (prefer_channel_last or not same):
        return perm
    return None
