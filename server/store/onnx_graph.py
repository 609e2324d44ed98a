"""An ONNX model's graph for prediction, read from a stored artifact.

A predictor needs a model's structure and shapes, and the values of its small constants
(reshape targets, scalars), never its weights. An archived ONNX (a zip of the ``.onnx``
file and its external data files, as uploaded) is therefore predicted from its ``.onnx``
member, with only the external tensors of at most `SMALL_ELEMS` elements read back from
their data files; the weights keep their dims, which is all kernel detection reads.
Nothing is unpacked to disk: the archive is checked the way an upload is
(``converters.archives.check_zip``), then only those members are read. An archive in a
remote store is copied to a scratch file first (a zip is read from its end).
"""

from __future__ import annotations

import math
import posixpath
import zipfile
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import onnx

from converters.archives import ArchiveRejected, check_zip
from server.artifacts import ArtifactStore

MAX_GRAPH_BYTES = 2 << 30
"""A protobuf message's limit: an ``.onnx`` member larger than this is not a graph file."""
SMALL_ELEMS = 4096
"""External tensors up to this many elements are read back (constants detection folds)."""
UNPACKED_ANY = 1 << 60
"""Only a few members are read, so the archive's unpacked total is not limited here."""


class GraphUnreadable(Exception):
    """The artifact holds no ONNX graph this module can read (the message says why)."""


def graph_of(store: ArtifactStore, sha256: str, meta: dict[str, Any]) -> onnx.ModelProto:
    """The ONNX model stored as ``sha256``; for an archive (``meta["archive"]``) its
    ``meta["entry"]`` member with small external tensors inlined and weights left out."""
    if not meta.get("archive"):
        return onnx.load_from_string(b"".join(store.iter_bytes(sha256)))
    entry = str(meta.get("entry") or "")
    if meta.get("archive") != "zip" or not entry.endswith(".onnx"):
        raise GraphUnreadable(f"archive kind {meta.get('archive')!r} with entry {entry!r}")
    with ExitStack() as stack:
        path = store.local_path(sha256)
        if path is None:
            scratch = stack.enter_context(store.scratch_dir("graph-"))
            path = scratch / "model.zip"
            with path.open("wb") as f:
                for chunk in store.iter_bytes(sha256):
                    f.write(chunk)
        return read_archived(path, entry)


def read_archived(path: Path, entry: str) -> onnx.ModelProto:
    """The ``entry`` graph of the zip at ``path`` (see the module docstring)."""
    try:  # entry count, ratio and paths as at upload
        infos = {i.filename: i for i in check_zip(path, max_total=UNPACKED_ANY)}
    except ArchiveRejected as exc:
        raise GraphUnreadable(str(exc)) from exc
    with zipfile.ZipFile(path) as zf:
        model = onnx.load_from_string(_member(zf, infos, entry, [(0, None)])[0])
        wanted: dict[str, list[tuple[int, onnx.TensorProto]]] = {}
        base = posixpath.dirname(entry)
        for t in model.graph.initializer:
            if t.data_location != onnx.TensorProto.EXTERNAL or math.prod(t.dims) > SMALL_ELEMS:
                continue
            info = {e.key: e.value for e in t.external_data}
            member = posixpath.normpath(posixpath.join(base, info.get("location", "")))
            wanted.setdefault(member, []).append((int(info.get("offset", 0)), t))
        for member, tensors in wanted.items():  # one forward pass over each data file
            tensors.sort(key=lambda ot: ot[0])
            ranges = [(offset, _length(t)) for offset, t in tensors]
            for (_, t), data in zip(tensors, _member(zf, infos, member, ranges), strict=True):
                t.raw_data = data
                del t.external_data[:]
                t.data_location = onnx.TensorProto.DEFAULT
    return model


def _length(t: onnx.TensorProto) -> int:
    info = {e.key: e.value for e in t.external_data}
    size = onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
    return int(info.get("length", size * math.prod(t.dims)))


def _member(
    zf: zipfile.ZipFile,
    infos: dict[str, zipfile.ZipInfo],
    name: str,
    ranges: Sequence[tuple[int, int | None]],
) -> list[bytes]:
    """The bytes of ``name`` at each ``(offset, length)`` (None: to its end), ``ranges``
    sorted by offset and read in one pass (a deflated member is decompressed from its start
    on every seek back)."""
    info = infos.get(name)
    if info is None:
        raise GraphUnreadable(f"the archive has no member {name!r}")
    out: list[bytes] = []
    with zf.open(info) as src:
        for offset, n in ranges:
            want = info.file_size - offset if n is None else n
            if offset < 0 or want < 0 or want > MAX_GRAPH_BYTES or offset + want > info.file_size:
                raise GraphUnreadable(f"{name!r}: {want} bytes at {offset} of its {info.file_size}")
            src.seek(offset)  # forward (or a rare overlap) within the one open stream
            data = src.read(want)
            if len(data) != want:  # the header overstated it
                raise GraphUnreadable(f"{name!r} ends before the {want} bytes it should hold")
            out.append(data)
    return out
