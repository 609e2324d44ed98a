"""Every accepted upload format, end to end on both backends, and the bad ones.

.pt2 programs, ready-made .tflite files, zipped .mlpackage directories and ONNX models with
external data are stored as they are; targets that need another format convert by themselves.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.conftest import FAST, Live
from tests.test_conversions_e2e import _wait_conversion


@pytest.fixture(scope="session")
def pt2_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from converters import zoo

    root = tmp_path_factory.mktemp("pt2")
    return {
        n: zoo.write_pt2(n, root / f"{n}.pt2")
        for n in ("efficientnet", "two_input", "dynamic_batch")
    }


def _store_files(live: Live) -> set[Path]:
    return {p for p in (live.data_dir / "artifacts").rglob("*") if p.is_file()}


def test_pt2_upload_benchmarks_on_every_cpu_runtime(live: Live, pt2_files: dict[str, Path]) -> None:
    with live.client() as c:
        m = c.upload_model(pt2_files["efficientnet"], name="effnet-pt2")
        assert m.format == "pt2" and m.inputs[0].shape == [1, 3, 64, 64]
        bench = c.benchmark(
            m.id, [{"runtime": r} for r in ("onnxruntime", "tflite", "openvino")], FAST
        )
        done = c.wait(bench.id, timeout=600)
    assert done.status == "succeeded", [(j.runtime, j.error) for j in done.jobs]
    assert {r.runtime for r in done.results} == {"onnxruntime", "tflite", "openvino"}


def test_two_input_and_dynamic_batch_programs(live: Live, pt2_files: dict[str, Path]) -> None:
    with live.client() as c:
        two = c.upload_model(pt2_files["two_input"])
        assert [i.name for i in two.inputs] == ["image", "features"]
        dyn = c.upload_model(pt2_files["dynamic_batch"])
        assert not isinstance(dyn.inputs[0].shape[0], int)  # the batch stays symbolic
        b1 = c.benchmark(two.id, [{"runtime": "onnxruntime"}], FAST)
        b2 = c.benchmark(dyn.id, [{"runtime": "onnxruntime", "batch_size": 4}], FAST)
        d1, d2 = c.wait(b1.id, timeout=600), c.wait(b2.id, timeout=600)
    assert d1.status == "succeeded", d1.jobs
    assert d2.status == "succeeded", d2.jobs
    assert d2.results[0].batch_size == 4


def test_ready_made_tflite_and_mlpackage_are_stored_as_they_are(
    live: Live, model_files: dict[str, Path]
) -> None:
    with live.http(live.user_token) as c:
        src = c.post(
            "/models", files={"file": ("mlp.onnx", model_files["mlp"].read_bytes())}
        ).json()
        arts = {}
        for target in ("tflite", "coreml"):
            conv = c.post("/conversions", json={"model_id": src["id"], "target": target}).json()
            conv = _wait_conversion(live, conv["id"])
            assert conv["status"] == "succeeded", conv
            arts[target] = c.get(f"/artifacts/{conv['artifact']['sha256']}").content
        r = c.post("/models", files={"file": ("mlp.tflite", arts["tflite"])})
        assert r.status_code == 201, r.text
        tfl = r.json()
        assert tfl["format"] == "tflite" and tfl["inputs"][0]["shape"][-1] == 256
        r = c.post("/models", files={"file": ("mlp.mlpackage.zip", arts["coreml"])})
        assert r.status_code == 201, r.text
        ml = r.json()
        assert ml["format"] == "coreml" and ml["inputs"][0]["shape"] == [1, 256]
        r = c.post(
            "/benchmarks",
            json={"model_id": tfl["id"], "settings": FAST, "targets": [{"runtime": "tflite"}]},
        )
        assert r.status_code == 202 and r.json()["jobs"][0]["status"] == "queued"  # no conversion
    with live.client() as cl:
        done = cl.wait(r.json()["id"], timeout=300)
    assert done.status == "succeeded", done.jobs


def test_onnx_with_external_data_as_a_zip(live: Live, tmp_path: Path) -> None:
    w = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32), "w"
    )
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "ext",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(
        model,
        str(tmp_path / "ext.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="ext.data",
        size_threshold=0,
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.write(tmp_path / "ext.onnx", "ext.onnx")
        zf.write(tmp_path / "ext.data", "ext.data")
    with live.client() as c:
        m = c.upload_model(_write(tmp_path / "ext.zip", buf.getvalue()))
        assert m.format == "onnx" and m.inputs[0].shape == [1, 64]
        done = c.wait(
            c.benchmark(m.id, [{"runtime": "onnxruntime"}, {"runtime": "openvino"}], FAST).id,
            timeout=300,
        )
    assert done.status == "succeeded", [(j.runtime, j.error) for j in done.jobs]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _zip_bomb() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("model/archive_format", b"pt2")
        zf.writestr("model/data/weights", b"\0" * (64 * 2**20))  # 64 MiB of zeros: ~64 KiB packed
    return buf.getvalue()


def _not_a_program() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", b"\x80\x04N.")  # a torch.save-style checkpoint
    return buf.getvalue()


@pytest.mark.parametrize(
    ("filename", "content", "needle"),
    [
        ("bomb.pt2", _zip_bomb(), "zip bomb"),
        ("ckpt.pt2", _not_a_program(), "not a torch.export program"),
        ("text.pt2", b"this is not a zip at all", "not a torch.export program"),
        (
            "weird.zip",
            _not_a_program().replace(b"archive/data.pkl", b"archive/data.bin"),
            "zip archive",
        ),
        ("model.tflite", b"\0\0\0\0TFL3" + b"\0" * 64, "tflite"),
    ],
)
def test_bad_model_archives_fail_fast_and_leave_nothing(
    live: Live, filename: str, content: bytes, needle: str
) -> None:
    before = _store_files(live)
    with live.http(live.user_token) as c:
        r = c.post("/models", files={"file": (filename, content)})
        assert 400 <= r.status_code < 500, r.text
        assert needle.lower() in r.json()["detail"].lower(), r.json()
        assert c.get("/health").status_code == 200
    assert _store_files(live) == before
    assert not list((live.data_dir / "artifacts" / "tmp").iterdir())
