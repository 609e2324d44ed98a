"""Upload checks that need no runtime: ONNX external data that must be really there, and
inputs that no device could hold.

Both read only the graph (``onnx.load(..., load_external_data=False)``) and file sizes, so a
model with gigabytes of weights is checked without reading them. ``check_external_data`` runs
in the upload check's sandboxed process (``server.inspect_worker``), ``check_input_size`` in
the coordinator on the signature that comes back (``server.formats.apply_input_shapes``). Messages name tensors and
files as the uploader knows them (the entry names inside the zip), never server paths.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

MAX_STATIC_INPUT_BYTES = 16 * 2**30
"""Refuse a model whose inputs for one inference at batch size 1 exceed this: no device
LatencyLab measures on holds them next to the model, and measuring would only fail later."""

# Bits per element of the packed ONNX types numpy has no itemsize for (TensorProto.DataType).
_PACKED_BITS = {"UINT4": 4, "INT4": 4, "FLOAT4E2M1": 4, "UINT2": 2, "INT2": 2}


class ModelCheckFailed(ValueError):
    """A check refused the model; ``str()`` is the message for the uploader."""


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def _tensors(graph: Any) -> Iterator[Any]:
    """Every TensorProto of a graph: initializers, sparse ones, node attributes, subgraphs."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    yield from _node_tensors(graph.node)


def _node_tensors(nodes: Any) -> Iterator[Any]:
    for node in nodes:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("sparse_tensor"):
                yield attr.sparse_tensor.values
                yield attr.sparse_tensor.indices
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for sub in attr.graphs:
                yield from _tensors(sub)


def _model_tensors(model: Any) -> Iterator[Any]:
    yield from _tensors(model.graph)
    for function in model.functions:  # model-local functions: constants in their nodes
        yield from _node_tensors(function.node)


def tensor_nbytes(tensor: Any) -> int | None:
    """Bytes of the tensor's raw data from dims x type, or None where the type has no fixed
    size (strings)."""
    from onnx import TensorProto, helper

    count = math.prod(int(d) for d in tensor.dims)
    type_name = TensorProto.DataType.Name(tensor.data_type)
    if type_name in _PACKED_BITS:
        return math.ceil(count * _PACKED_BITS[type_name] / 8)
    if type_name in ("STRING", "UNDEFINED"):
        return None
    try:
        itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
    except (KeyError, TypeError, ValueError):
        return None
    return count * itemsize


def check_external_data(model: Any, model_file: Path, root: Path, in_archive: bool) -> None:
    """Every external-data tensor's bytes (offset + length, or dims x type) must lie inside a
    file shipped beside the model. ``root`` is where the archive was unpacked: names are
    shown relative to it."""
    from onnx import TensorProto

    base = model_file.parent
    model_name = model_file.relative_to(root).as_posix() if in_archive else model_file.name
    for tensor in _model_tensors(model):
        if tensor.data_location != TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        where = f"tensor '{tensor.name}' of {model_name}"
        if not in_archive:
            raise ModelCheckFailed(
                f"{where} keeps its data in an external file '{location}': upload a .zip "
                f"holding {model_name} and its data files"
            )
        parts = PurePosixPath(location).parts
        if not location or location.startswith(("/", "\\")) or ".." in parts or ":" in location:
            raise ModelCheckFailed(
                f"{where} has an unsafe external data location {location!r}: it must be a "
                "file name relative to the .onnx file"
            )
        data_file = base / location
        shown = data_file.relative_to(root).as_posix()
        if not data_file.is_file():
            raise ModelCheckFailed(
                f"{where} keeps its data in '{shown}', which is not in the uploaded archive"
            )
        try:
            offset = int(info.get("offset") or 0)
            declared = int(info["length"]) if info.get("length") else None
        except ValueError as exc:
            raise ModelCheckFailed(
                f"{where} has a non-numeric external data offset/length"
            ) from exc
        needed = tensor_nbytes(tensor)
        dims = list(tensor.dims)
        type_name = TensorProto.DataType.Name(tensor.data_type).lower()
        if declared is not None and needed is not None and declared != needed:
            raise ModelCheckFailed(
                f"{where} declares {declared} bytes of external data in '{shown}', but its "
                f"shape {dims} of {type_name} needs {needed} bytes"
            )
        length = declared if declared is not None else needed
        if length is None:
            continue
        have = data_file.stat().st_size
        if offset < 0 or offset + length > have:
            raise ModelCheckFailed(
                f"{where} needs bytes {offset}..{offset + length} of '{shown}' (shape {dims} of "
                f"{type_name}), but '{shown}' holds only {have} bytes: the data file is "
                "truncated or belongs to another export"
            )


def _itemsize(dtype: str) -> int:
    key = dtype.strip().lower().removeprefix("torch.")
    try:
        return int(np.dtype(key).itemsize)
    except TypeError:
        return 1  # unknown to numpy: count a byte, a lower bound


def check_input_size(inputs: list[dict[str, Any]]) -> None:
    """Refuse inputs whose static size (a symbolic batch counted as 1) exceeds the bound."""
    sizes = []
    for spec in inputs:
        dims = [d if isinstance(d, int) else 1 for d in spec["shape"]]
        sizes.append((math.prod(dims) * _itemsize(str(spec["dtype"])), spec))
    total = sum(n for n, _ in sizes)
    if total <= MAX_STATIC_INPUT_BYTES:
        return
    n, big = max(sizes, key=lambda t: t[0])
    raise ModelCheckFailed(
        f"the model's inputs need {_gib(total)} for one inference at batch size 1 (input "
        f"'{big['name']}' {big['shape']} of {big['dtype']} alone is {_gib(n)}); LatencyLab "
        f"refuses models whose inputs exceed {_gib(MAX_STATIC_INPUT_BYTES)}, since no device "
        "could hold them"
    )
