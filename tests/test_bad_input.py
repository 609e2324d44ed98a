"""Bad input gets a clear 4xx, nothing half-written stays behind, the server keeps serving."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from onnx import TensorProto, helper

from tests.conftest import Live


def _store_files(live: Live) -> set[Path]:
    root = live.data_dir / "artifacts"
    return {p for p in root.rglob("*") if p.is_file()}


def _dangling_input_model() -> bytes:
    # 'ghost' is read by a node but is neither a graph input, an initializer nor produced.
    node = helper.make_node("Add", ["x", "ghost"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _dynamic_spatial_model() -> bytes:
    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, "H", "W"])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


BAD_UPLOADS = {
    "random bytes": ("model.onnx", bytes(range(256)) * 64, {}, 422, "not a valid ONNX model"),
    "empty file": ("model.onnx", b"", {}, 422, "empty"),
    "plaintext": ("notes.onnx", b"hello, this is not a model\n" * 20, {}, 422, "ONNX"),
    "dangling input": ("dangling.onnx", _dangling_input_model(), {}, 422, "ghost"),
    "path traversal": ("../../etc/model.onnx", None, {}, 400, "plain file name"),
    "metadata not json": ("m.onnx", None, {"metadata": "{accuracy: 1"}, 422, "not valid JSON"),
    "metadata not object": ("m.onnx", None, {"metadata": "[1, 2]"}, 422, "JSON object"),
    "accuracy not numbers": (
        "m.onnx",
        None,
        {"metadata": '{"accuracy": {"top1": "high"}}'},
        422,
        "accuracy",
    ),
    "unknowable shape": ("dyn.onnx", _dynamic_spatial_model(), {}, 422, "input_shapes"),
    "pt2 that is no archive": ("model.pt2", b"PK\x03\x04" + b"\0" * 100, {}, 422, "torch.export"),
    "unsupported format": ("model.h5", b"\x89HDF\r\n" + b"\0" * 100, {}, 415, "Supported"),
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_bad_upload_is_rejected_cleanly(
    live: Live, model_files: dict[str, Path], case: str
) -> None:
    filename, content, data, code, needle = BAD_UPLOADS[case]
    if content is None:
        content = model_files["mlp"].read_bytes()
    before_files = _store_files(live)
    with live.http(live.user_token) as c:
        n_models = len(c.get("/models").json())
        r = c.post("/models", files={"file": (filename, content)}, data=data)
        assert r.status_code == code, r.text
        assert needle.lower() in r.json()["detail"].lower()
        assert len(c.get("/models").json()) == n_models
        assert c.get("/health").status_code == 200
    assert _store_files(live) == before_files


def test_truncated_onnx_is_rejected(live: Live, model_files: dict[str, Path]) -> None:
    data = model_files["mbv2"].read_bytes()
    before = _store_files(live)
    with live.http(live.user_token) as c:
        r = c.post("/models", files={"file": ("cut.onnx", data[: len(data) // 2])})
    assert r.status_code == 422, r.text
    assert "truncated" in r.json()["detail"] or "ONNX" in r.json()["detail"]
    assert _store_files(live) == before


def test_oversized_upload_is_stopped_at_the_limit(live: Live) -> None:
    before = _store_files(live)
    big = b"\0" * (31 * 1024 * 1024)  # the test server's limit is 30 MB
    with live.http(live.user_token) as c:
        r = c.post("/models", files={"file": ("big.onnx", big)})
        assert r.status_code == 413, r.text
        assert "30 MB" in r.json()["detail"]
        assert c.get("/health").status_code == 200
    assert _store_files(live) == before


def test_oversized_upload_without_content_length_is_stopped(live: Live) -> None:
    """A chunked body (no Content-Length) is cut off by the streaming parser itself."""
    boundary = "XyZ"

    def body():  # type: ignore[no-untyped-def]
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="b.onnx"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        for _ in range(40):
            yield b"\0" * (1024 * 1024)
        yield f"\r\n--{boundary}--\r\n".encode()

    before = _store_files(live)
    with live.http(live.user_token) as c:
        try:
            r = c.post(
                "/models",
                content=body(),
                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
            )
            assert r.status_code == 413, r.text
        except httpx.RemoteProtocolError:
            pass  # the server may close the connection before reading the rest: also a refusal
    with live.http(live.user_token) as c:
        assert c.get("/health").status_code == 200
    assert _store_files(live) == before


def test_not_multipart_and_missing_file_part(live: Live) -> None:
    with live.http(live.user_token) as c:
        r = c.post("/models", json={"file": "x"})
        assert r.status_code == 415 and "multipart" in r.json()["detail"]
        r = c.post("/models", data={"name": "x"}, files={"other": ("a.onnx", b"abc")})
        assert r.status_code == 400 and "'file'" in r.json()["detail"]


@pytest.mark.parametrize(
    ("body", "code", "needle"),
    [
        ({"model_id": 999999, "targets": [{"runtime": "onnxruntime"}]}, 404, "does not exist"),
        ({"model_id": "MODEL", "targets": [{"runtime": "tensorflowjs"}]}, 422, "runtime"),
        (
            {"model_id": "MODEL", "targets": [{"runtime": "onnxruntime", "device": "pixel-99"}]},
            422,
            "no registered device matches 'pixel-99'",
        ),
        (
            {"model_id": "MODEL", "targets": [{"runtime": "onnxruntime", "device": "class:gpu"}]},
            422,
            "class:gpu",
        ),
        # no device here runs CoreML (it predicts only on macOS)
        (
            {"model_id": "MODEL", "targets": [{"runtime": "coreml"}]},
            422,
            "do not offer runtime 'coreml'",
        ),
        ({"model_id": "MODEL", "targets": []}, 422, "targets"),
        (
            {"model_id": "MODEL", "targets": [{"runtime": "onnxruntime", "batch_size": 0}]},
            422,
            "batch_size",
        ),
        (
            {
                "model_id": "MODEL",
                "targets": [{"runtime": "onnxruntime"}],
                "settings": {"min_runs": -5},
            },
            422,
            "min_runs",
        ),
    ],
)
def test_bad_benchmark_requests(
    live: Live, model_files: dict[str, Path], body: dict, code: int, needle: str
) -> None:
    with live.http(live.user_token) as c:
        if body["model_id"] == "MODEL":
            r = c.post("/models", files={"file": ("mlp.onnx", model_files["mlp"].read_bytes())})
            body = {**body, "model_id": r.json()["id"]}
        n_jobs = len(c.get("/jobs").json())
        r = c.post("/benchmarks", json=body)
        assert r.status_code == code, r.text
        assert needle in json.dumps(r.json()["detail"])
        assert len(c.get("/jobs").json()) == n_jobs  # nothing half-created


def test_unknown_ids_are_404(live: Live) -> None:
    with live.http(live.user_token) as c:
        assert c.get("/models/424242").status_code == 404
        assert c.get("/benchmarks/424242").status_code == 404
        assert c.get("/benchmarks/424242/results/1/raw").status_code == 404
        assert c.get("/jobs/424242").status_code == 404
        assert c.get("/artifacts/" + "0" * 64).status_code == 404
        assert c.get("/artifacts/not-a-hash").status_code == 404
