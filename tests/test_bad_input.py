"""Bad input gets a clear 4xx, nothing half-written stays behind, the server keeps serving."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest
from onnx import TensorProto, helper

from tests.conftest import FAST, Live


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
        assert needle in r.json()["detail"]
        assert len(c.get("/jobs").json()) == n_jobs  # nothing half-created


def test_unknown_ids_are_404(live: Live) -> None:
    with live.http(live.user_token) as c:
        assert c.get("/models/424242").status_code == 404
        assert c.get("/benchmarks/424242").status_code == 404
        assert c.get("/benchmarks/424242/results/1/raw").status_code == 404
        assert c.get("/jobs/424242").status_code == 404
        assert c.get("/artifacts/" + "0" * 64).status_code == 404
        assert c.get("/artifacts/not-a-hash").status_code == 404


# ------------------------------------------------------------------ request validation
# Each bad input below is a 4xx whose `detail` names the field, with `code` set, and leaves
# no row behind (checked through the list endpoints), on SQLite and PostgreSQL alike.
TARGET = {"runtime": "onnxruntime", "device": "local", "threads": 1}


def _ids(c: httpx.Client, path: str, **params: object) -> list[int]:
    r = c.get(path, params=params)
    assert r.status_code == 200, r.text
    return [row["id"] for row in r.json()]


def _rows(c: httpx.Client) -> tuple[list[int], ...]:
    return (
        _ids(c, "/models", limit=5000),
        _ids(c, "/benchmarks", limit=2000),
        _ids(c, "/tables", limit=2000),
        _ids(c, "/devices"),
    )


def _refused(r: httpx.Response, status: int, *needles: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) <= {"detail", "code", "errors"} and isinstance(body["detail"], str), body
    assert body["code"] == ("validation_error" if status == 422 else "bad_request"), body
    for needle in needles:
        assert needle in body["detail"], body


@pytest.fixture(scope="module")
def mlp_id(live: Live, model_files: dict[str, Path]) -> int:
    with live.http(live.user_token) as c:
        r = c.post("/models", files={"file": ("mlp.onnx", model_files["mlp"].read_bytes())})
        assert r.status_code == 201, r.text
        return int(r.json()["id"])


@pytest.fixture(scope="module")
def device_id(live: Live) -> int:
    with live.http(live.user_token) as c:
        return next(d["id"] for d in c.get("/devices").json() if d["name"] == live.agent_name)


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/models/{n}", "model_id"),
        ("/models/{n}/conversions", "model_id"),
        ("/benchmarks/{n}", "bench_id"),
        ("/benchmarks/1/results/{n}/raw", "result_id"),
        ("/benchmarks/{n}/results/1/profile", "bench_id"),
        ("/jobs/{n}", "job_id"),
        ("/conversions/{n}", "conversion_id"),
        ("/tables/{n}", "table_id"),
        ("/benchmarks?model_id={n}", "model_id"),
        ("/pareto?device=x&model_ids=1,{n}", "model_ids"),
    ],
)
@pytest.mark.parametrize("n", [2**31, 2**63, 2**64, 10**30])
def test_ids_beyond_the_id_columns_are_refused(live: Live, path: str, field: str, n: int) -> None:
    """Ids are INTEGER columns (32-bit on PostgreSQL): larger ones are a 422, not a 500."""
    with live.http(live.user_token) as c:
        _refused(c.get(path.format(n=n)), 422, field)
        assert c.get("/health").status_code == 200


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/models?offset={n}", "offset"),
        ("/models?limit={n}", "limit"),
        ("/benchmarks?limit={n}", "limit"),
        ("/tables?limit={n}", "limit"),
        ("/pareto?device=x&threads={n}", "threads"),
    ],
)
def test_counts_beyond_64_bits_are_refused(live: Live, path: str, field: str) -> None:
    with live.http(live.user_token) as c:
        _refused(c.get(path.format(n=2**64)), 422, field)
        r = c.get("/models", params={"offset": 2**63 - 1})  # the largest offset is served
        assert r.status_code == 200 and r.json() == [], r.text


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/benchmarks", {"model_id": 2**64, "targets": [TARGET]}, "model_id"),
        ("/benchmarks", {"model_id": 2**31, "targets": [TARGET]}, "model_id"),
        ("/conversions", {"model_id": 2**63, "target": "tflite"}, "model_id"),
        ("/tables", {"space": "fbnet", "seed": 2**64}, "seed"),
        ("/tables", {"space": "fbnet", "resolution": 2**64}, "resolution"),
    ],
)
def test_body_integers_out_of_range_are_refused(
    live: Live, path: str, body: dict[str, object], field: str
) -> None:
    with live.http(live.user_token) as c:
        before = _rows(c)
        _refused(c.post(path, json=body), 422, field)
        assert _rows(c) == before


def test_agent_ids_out_of_range_are_refused(live: Live, device_id: int) -> None:
    with live.http(live.agent_token) as c:
        r = c.post(f"/agents/{device_id}/heartbeat", json={"job_id": 2**64, "progress": {}})
        _refused(r, 422, "job_id")
        _refused(c.post(f"/agents/{2**63}/lease"), 422, "device_id")
        _refused(c.post(f"/agents/{device_id}/jobs/{2**40}/report", json={}), 422, "job_id")


@pytest.mark.parametrize(
    "field", ["min_duration_s", "max_duration_s", "timeout_s", "target_rel_ci"]
)
@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_settings_are_refused(live: Live, mlp_id: int, field: str, value: str) -> None:
    # Python's json (like FastAPI's parser) reads these non-standard tokens as floats.
    raw = json.dumps({"model_id": mlp_id, "targets": [TARGET], "settings": {field: 1.0}})
    raw = raw.replace('": 1.0}', f'": {value}}}')
    with live.http(live.user_token) as c:
        before = _rows(c)
        r = c.post("/benchmarks", content=raw, headers={"Content-Type": "application/json"})
        _refused(r, 422, f"settings.{field}", "finite number")
        assert _rows(c) == before


@pytest.mark.parametrize(
    ("settings", "needles"),
    [
        ({"min_duraton_s": 0.2}, ("settings.min_duraton_s", "Extra inputs")),
        ({"seed": -1}, ("settings.seed", "greater than or equal to 0")),
        ({"seed": 2**32}, ("settings.seed", "less than or equal to 4294967295")),
        ({"min_runs": 500, "max_runs": 100}, ("min_runs (500) is above max_runs (100)",)),
        (
            {"min_duration_s": 5, "max_duration_s": 2},
            ("min_duration_s (5) is above max_duration_s (2)",),
        ),
    ],
)
def test_bad_settings_are_refused(
    live: Live, mlp_id: int, settings: dict[str, object], needles: tuple[str, ...]
) -> None:
    with live.http(live.user_token) as c:
        before = _rows(c)
        body = {"model_id": mlp_id, "targets": [TARGET], "settings": settings}
        _refused(c.post("/benchmarks", json=body), 422, *needles)
        assert _rows(c) == before


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/benchmarks", {"targets": [TARGET], "model": 1}, "model"),
        ("/benchmarks", {"targets": [{**TARGET, "thread": 2}]}, "targets.0.thread"),
        ("/conversions", {"target": "tflite", "precison": "fp16"}, "precison"),
        ("/tables", {"space": "fbnet", "validaten": 3}, "validaten"),
        ("/tables", {"space": "fbnet", "settings": {"warmup": 1}}, "settings.warmup"),
        ("/tables/{table}/predict", {"architectures": [], "resolutions": 224}, "resolutions"),
    ],
)
def test_unknown_fields_are_named(
    live: Live, mlp_id: int, path: str, body: dict[str, object], field: str
) -> None:
    if path.startswith("/benchmarks") or path == "/conversions":
        body = {"model_id": mlp_id, **body}
    with live.http(live.user_token) as c:
        before = _rows(c)
        conversions = _ids(c, f"/models/{mlp_id}/conversions")
        r = c.post(path.format(table=1), json=body)
        _refused(r, 422, field, "Extra inputs are not permitted")
        assert _rows(c) == before
        assert _ids(c, f"/models/{mlp_id}/conversions") == conversions


def test_nul_characters_are_refused(live: Live, mlp_id: int, device_id: int) -> None:
    """PostgreSQL cannot store NUL in text (SQLite would): refused alike on both."""
    name = f"nul-{uuid.uuid4().hex[:6]}"
    with live.http(live.user_token) as c:
        before = _rows(c)
        bad_target = {"model_id": mlp_id, "targets": [{**TARGET, "device": "local\x00"}]}
        _refused(c.post("/benchmarks", json=bad_target), 422, "targets.0.device", "NUL")
        _refused(c.get("/pareto", params={"device": "cpu\x00"}), 422, "device", "NUL")
        _refused(c.get("/jobs", params={"status": "queued\x00"}), 422, "status")
        with live.http(live.agent_token) as agent:
            r = agent.post("/agents/register", json={"name": f"{name}\x00"})
            _refused(r, 422, "name", "NUL")
            r = agent.post("/agents/register", json={"name": name, "attributes": {"a": "\x00"}})
            _refused(r, 422, "attributes.a contains a NUL character")
            r = agent.post("/agents/register", json={"name": name, "clas": "gpu"})
            _refused(r, 422, "clas", "Extra inputs")
            r = agent.post(f"/agents/{device_id}/heartbeat", json={"progress": {"x\x00": 1}})
            _refused(r, 422, "progress", "NUL")
        assert _rows(c) == before
        assert name not in {d["name"] for d in c.get("/devices").json()}


def _nested(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


BAD_METADATA = {
    "40 KB of brackets": ("[" * 20_000 + "]" * 20_000, "metadata is nested deeper than 32"),
    "33 levels": (_nested(33), "is nested deeper than 32 levels"),
    "NaN accuracy": ('{"accuracy": {"top1": NaN}}', "NaN"),
    "Infinity accuracy": ('{"accuracy": {"top1": Infinity}}', "Infinity"),
    "overflowing accuracy": ('{"accuracy": {"top1": 1e999}}', "metadata.accuracy.top1 is inf"),
    "5000-digit integer": ('{"size": ' + "9" * 5000 + "}", "metadata is not valid JSON"),
    "NUL in a tag": ('{"tags": ["mb\\u0000v2"]}', "metadata.tags[0] contains a NUL"),
    "NUL in a key": ('{"notes": {"a\\u0000": 1}}', "a key in metadata.notes contains a NUL"),
}


@pytest.mark.parametrize("case", list(BAD_METADATA))
def test_bad_metadata_is_refused(live: Live, model_files: dict[str, Path], case: str) -> None:
    metadata, needle = BAD_METADATA[case]
    before_files = _store_files(live)
    with live.http(live.user_token) as c:
        before = _rows(c)
        files = {"file": ("mlp.onnx", model_files["mlp"].read_bytes())}
        r = c.post("/models", files=files, data={"metadata": metadata})
        _refused(r, 422, needle)
        assert _rows(c) == before
        assert c.get("/health").status_code == 200
    assert _store_files(live) == before_files


def test_metadata_at_the_depth_limit_is_stored(live: Live, model_files: dict[str, Path]) -> None:
    with live.http(live.user_token) as c:
        files = {"file": ("mlp.onnx", model_files["mlp"].read_bytes())}
        r = c.post("/models", files=files, data={"metadata": _nested(32)})
        assert r.status_code == 201, r.text
        assert c.get(f"/models/{r.json()['id']}").json()["metadata"] == json.loads(_nested(32))


def test_nul_in_a_model_name_is_refused(live: Live, model_files: dict[str, Path]) -> None:
    before_files = _store_files(live)
    with live.http(live.user_token) as c:
        before = _rows(c)
        files = {"file": ("mlp.onnx", model_files["mlp"].read_bytes())}
        _refused(c.post("/models", files=files, data={"name": "mb\x00v2"}), 422, "name", "NUL")
        assert _rows(c) == before
    assert _store_files(live) == before_files


def test_a_body_nested_too_deeply_to_parse_is_400(live: Live) -> None:
    with live.http(live.user_token) as c:
        before = _rows(c)
        r = c.post(
            "/benchmarks",
            content="[" * 20_000 + "]" * 20_000,
            headers={"Content-Type": "application/json"},
        )
        _refused(r, 400, "body is not valid JSON", "nests too deeply")
        assert _rows(c) == before


def test_settings_at_their_bounds_are_accepted(live: Live, mlp_id: int) -> None:
    """The checks refuse what is wrong, not what is unusual: equal bounds, the largest seed."""
    settings = {**FAST, "min_runs": 20, "max_runs": 20, "min_duration_s": 0.2,
                "max_duration_s": 0.2, "seed": 2**32 - 1, "profile": False}  # fmt: skip
    with live.http(live.user_token) as c:
        r = c.post(
            "/benchmarks", json={"model_id": mlp_id, "targets": [TARGET], "settings": settings}
        )
        assert r.status_code == 202, r.text
        assert r.json()["settings"]["seed"] == 2**32 - 1
