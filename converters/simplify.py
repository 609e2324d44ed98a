"""Shape folding and simplification of ONNX graphs before the bridges (onnxsim).

Exported transformers and detection heads compute their reshape targets at run time:
``Shape -> Gather/Slice -> Concat -> Reshape`` (``x.reshape(b, n, 3, h, d)`` with ``b, n`` read
from the tensor). With the input shapes fixed, those chains are constants; onnx2torch turns
them into data-dependent tensor ops that ``torch.export`` refuses (".numpy() is not supported
for tensor subclasses"), and onnx2tf into ``tf.constant`` of unknown shape. onnxsim fixes the
input shapes, infers every shape, folds the constant subgraphs (the shape arithmetic among
them) and cleans up (identity/no-op removal, BatchNorm into Conv, MatMul+Add into Gemm).

The simplified graph is the bridges' input only: validation still compares the artifact with
the *uploaded* model, so a simplification that changed the numbers would fail the conversion.
If onnxsim is not installed or fails on a model, the conversion goes on with the original
graph and the artifact metadata says why (``simplify.applied: false``, ``simplify.note``).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

log = logging.getLogger("converters")

SHAPE_OPS = ("Shape", "Size", "ConstantOfShape")
# Above this size the graph is saved with its tensors in a side file (protobuf caps at 2 GiB).
EXTERNAL_DATA_BYTES = 1 << 30


@dataclass
class SimplifyReport:
    """What the pass did, stored as ``metadata["simplify"]`` of the artifact."""

    tool: str
    version: str | None
    applied: bool
    nodes_before: int
    nodes_after: int
    shape_ops_before: int  # Shape/Size/ConstantOfShape nodes: run-time shape arithmetic
    shape_ops_after: int
    folded_ops: dict[str, int]  # op type -> how many fewer after the pass
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _tool_version() -> str | None:
    try:
        return version("onnxsim")
    except PackageNotFoundError:
        return None


def _counts(model: Any) -> Counter[str]:
    return Counter(n.op_type for n in model.graph.node)


def _fixed_shapes(model: Any, input_shapes: dict[str, list[int]] | None) -> dict[str, list[int]]:
    """Input shapes for onnxsim: the given ones, and the graph's own where fully static.

    Initializers listed as graph inputs (old exporters) are not inputs to fix."""
    given = dict(input_shapes or {})
    inits = {i.name for i in model.graph.initializer}
    out: dict[str, list[int]] = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        if vi.name in given:
            out[vi.name] = [int(d) for d in given[vi.name]]
            continue
        dims = vi.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") and d.dim_value > 0 for d in dims):
            out[vi.name] = [int(d.dim_value) for d in dims]
    return out


def _constants_as_initializers(model: Any) -> None:
    """Turn ``Constant`` nodes into initializers. onnxsim shares one Constant among every
    layer that uses the same value (the attention scale of each layer of a ViT); onnx2tf
    then took that scalar for a graph output ("Output tensors of a Functional model must be
    the output of a TensorFlow Layer")."""
    outputs = {o.name for o in model.graph.output}
    keep = []
    for node in model.graph.node:
        attr = node.attribute[0] if len(node.attribute) == 1 else None
        if (
            node.op_type == "Constant"
            and attr is not None
            and attr.name == "value"
            and node.output[0] not in outputs
        ):
            tensor = model.graph.initializer.add()
            tensor.CopyFrom(attr.t)
            tensor.name = node.output[0]
        else:
            keep.append(node)
    del model.graph.node[:]
    model.graph.node.extend(keep)


def simplify_model(
    model: Any, input_shapes: dict[str, list[int]] | None = None
) -> tuple[Any, SimplifyReport]:
    """Simplify ``model`` (an ``onnx.ModelProto``) with the inputs fixed to ``input_shapes``.

    Returns the simplified model, or the original one with ``applied=False`` and the reason
    when onnxsim is missing or fails; never raises for a model onnxsim cannot handle."""
    before = _counts(model)
    n_shape = sum(before[o] for o in SHAPE_OPS)
    tool_version = _tool_version()

    def unchanged(note: str) -> tuple[Any, SimplifyReport]:
        log.warning("simplify: %s; converting the graph as it is", note)
        report = SimplifyReport(
            "onnxsim", tool_version, False, len(model.graph.node), len(model.graph.node),
            n_shape, n_shape, {}, note,
        )  # fmt: skip
        return model, report

    if tool_version is None:
        return unchanged("onnxsim is not installed")
    import onnxsim

    shapes = _fixed_shapes(model, input_shapes)
    try:
        simplified, ok = onnxsim.simplify(
            model, check_n=0, overwrite_input_shapes=shapes or None, certify=False
        )
    except Exception as exc:  # onnxsim raises plain RuntimeError/ValueError on what it can't do
        return unchanged(f"onnxsim failed: {type(exc).__name__}: {str(exc)[:300]}")
    if not ok:
        return unchanged("onnxsim could not check the simplified graph")
    _constants_as_initializers(simplified)
    after = _counts(simplified)
    folded = {op: before[op] - after[op] for op in before if before[op] > after[op]}
    report = SimplifyReport(
        "onnxsim", tool_version, True, len(model.graph.node), len(simplified.graph.node),
        n_shape, sum(after[o] for o in SHAPE_OPS), dict(sorted(folded.items())),
    )  # fmt: skip
    return simplified, report


@contextmanager
def simplified_onnx(
    src: str | Path, input_shapes: dict[str, list[int]] | None, workdir: str | Path
) -> Iterator[tuple[Path, dict[str, Any]]]:
    """The simplified copy of ``src`` in ``workdir`` (removed afterwards) and the report.

    Yields ``src`` itself when nothing was simplified."""
    import onnx

    src = Path(src)
    model = onnx.load(str(src))
    simplified, report = simplify_model(model, input_shapes)
    if not report.applied:
        yield src, report.to_dict()
        return
    out = Path(workdir) / f"{src.name.split('.')[0]}.simplified.onnx"
    data = out.with_name(out.name + ".data")
    big = sum(i.ByteSize() for i in simplified.graph.initializer) > EXTERNAL_DATA_BYTES
    onnx.save(simplified, str(out), save_as_external_data=big, location=data.name)
    try:
        yield out, report.to_dict()
    finally:
        out.unlink(missing_ok=True)
        data.unlink(missing_ok=True)


_SPLIT_PARKED = "latencylab.split18"  # a private domain the version converter leaves alone


def convert_opset(model: Any, opset: int) -> Any:
    """``onnx.version_converter.convert_version``, also for graphs with opset-18 ``Split``.

    onnx has no 18 -> 17 adapter for Split (opset 18 added ``num_outputs``), so the dynamo
    exporter's output of any model using ``chunk``/``split`` (YOLO's C2f, attention heads)
    could not be expressed at opset 17. Split-13 without a ``split`` input cuts into
    ``len(outputs)`` equal parts, which is what Split-18's ``num_outputs`` means wherever the
    axis divides evenly (and the only case opset 13 can express): park the Split nodes in a
    private domain while converting, then bring them back without ``num_outputs``."""
    import onnx
    from onnx import helper

    current = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), opset)
    parked = [
        n
        for n in model.graph.node
        if current >= 18 > opset and n.op_type == "Split" and n.domain in ("", "ai.onnx")
    ]
    if not parked:
        return onnx.version_converter.convert_version(model, opset)
    for node in parked:
        node.domain = _SPLIT_PARKED
    model.opset_import.append(helper.make_opsetid(_SPLIT_PARKED, 1))
    try:
        converted = onnx.version_converter.convert_version(model, opset)
    finally:  # the caller's model is left as it was
        for node in parked:
            node.domain = ""
        ops = [o for o in model.opset_import if o.domain != _SPLIT_PARKED]
        del model.opset_import[:]
        model.opset_import.extend(ops)
    for node in converted.graph.node:
        if node.domain == _SPLIT_PARKED:
            node.domain = ""
            keep = [a for a in node.attribute if a.name != "num_outputs"]
            del node.attribute[:]
            node.attribute.extend(keep)
    ops = [o for o in converted.opset_import if o.domain != _SPLIT_PARKED]
    del converted.opset_import[:]
    converted.opset_import.extend(ops)
    return converted
