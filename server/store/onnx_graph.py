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
        model = onnx.load_from_string(_read(zf, infos, entry, 0, None))
        base = posixpath.dirname(entry)
        for t in model.graph.initializer:
            if t.data_location != onnx.TensorProto.EXTERNAL or math.prod(t.dims) > SMALL_ELEMS:
                continue
            info = {e.key: e.value for e in t.external_data}
            member = posixpath.normpath(posixpath.join(base, info.get("location", "")))
            size = onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
            length = int(info.get("length", size * math.prod(t.dims)))
            t.raw_data = _read(zf, infos, member, int(info.get("offset", 0)), length)
            del t.external_data[:]
            t.data_location = onnx.TensorProto.DEFAULT
    return model


def _read(
    zf: zipfile.ZipFile, infos: dict[str, zipfile.ZipInfo], name: str, offset: int, n: int | None
) -> bytes:
    info = infos.get(name)
    if info is None:
        raise GraphUnreadable(f"the archive has no member {name!r}")
    want = info.file_size - offset if n is None else n
    if want > MAX_GRAPH_BYTES or offset + want > info.file_size:
        raise GraphUnreadable(f"{name!r}: {want} bytes at {offset} of its {info.file_size}")
    with zf.open(info) as src:
        src.seek(offset)
        out = bytearray()
        while len(out) < want and (chunk := src.read(min(1 << 20, want - len(out)))):
            out += chunk
    if len(out) != want:  # the header overstated it
        raise GraphUnreadable(f"{name!r} ends before the {want} bytes it should hold")
    return bytes(out)
