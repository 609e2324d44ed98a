"""Predicting an archived ONNX (external data in a zip) from its graph member alone
(``server.store.onnx_graph``): the same kernels as the single-file model, no weight read."""

from __future__ import annotations

import copy
import zipfile
from pathlib import Path

import onnx
import pytest

from predictor.archs import convnext, mobilenet_v2
from predictor.detect import detect_kernels
from predictor.fusion import default_rules
from server.store.onnx_graph import GraphUnreadable, read_archived


def _archive(model: onnx.ModelProto, tmp: Path, threshold: int) -> Path:
    """``model`` saved with external data under ``sub/`` and zipped, as users upload it."""
    (tmp / "sub").mkdir()
    onnx.save(
        copy.deepcopy(model), tmp / "sub" / "m.onnx", save_as_external_data=True,
        all_tensors_to_one_file=True, location="m.data", size_threshold=threshold,
    )  # fmt: skip
    path = tmp / "m.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in ("sub/m.onnx", "sub/m.data"):
            zf.write(tmp / name, name)
    return path


@pytest.mark.parametrize("build", [mobilenet_v2, convnext], ids=["mobilenet_v2", "convnext"])
@pytest.mark.parametrize("threshold", [1024, 0], ids=["default-threshold", "all-external"])
def test_archived_graph_detects_the_same_kernels(build, threshold: int, tmp_path: Path) -> None:
    model = build(96)
    path = _archive(model, tmp_path, threshold)
    archived = read_archived(path, "sub/m.onnx")
    weights = [
        t for t in archived.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
    ]
    assert weights, "the weights must stay external (never read)"
    assert archived.ByteSize() < path.stat().st_size / 2
    want = detect_kernels(model, default_rules())
    got = detect_kernels(archived, default_rules())
    assert [(k.type, k.config) for k in got.kernels] == [(k.type, k.config) for k in want.kernels]


def test_unreadable_archives_say_why(tmp_path: Path) -> None:
    path = _archive(mobilenet_v2(64), tmp_path, 1024)
    with pytest.raises(GraphUnreadable, match="no member"):
        read_archived(path, "other.onnx")
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(GraphUnreadable, match="not a readable zip"):
        read_archived(bad, "m.onnx")
    (tmp_path / "all").mkdir()
    full = _archive(mobilenet_v2(64), tmp_path / "all", 0)  # small constants in m.data too
    short = tmp_path / "short.zip"  # the data file lost its tail: a clear error, not garbage
    with zipfile.ZipFile(full) as src, zipfile.ZipFile(short, "w") as dst:
        dst.writestr("sub/m.onnx", src.read("sub/m.onnx"))
        dst.writestr("sub/m.data", src.read("sub/m.data")[:10])
    with pytest.raises(GraphUnreadable, match="bytes"):
        read_archived(short, "sub/m.onnx")
