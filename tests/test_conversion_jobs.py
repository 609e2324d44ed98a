"""Conversion jobs through the queue, over real HTTP, with a hand-driven converter worker.

The real converter worker (``latencylab converter``) is exercised in the conversion
end-to-end tests; here a test plays it through the public agent routes, so failures,
retries and reuse can be provoked on purpose.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import FAST, Live


class Worker:
    """A converter (class 'converter') or a measuring device, registered with its own token."""

    def __init__(self, live: Live, cls: str, runtimes: dict[str, str]) -> None:
        self.name = f"{cls}-{uuid.uuid4().hex[:8]}"
        with live.http(live.admin_token) as c:
            token = c.post("/tokens", json={"scope": "agent", "name": self.name}).json()["token"]
        self.http = live.http(token)
        r = self.http.post(
            "/agents/register",
            json={"name": self.name, "class": cls, "runtimes": runtimes, "attributes": {}},
        )
        assert r.status_code == 200, r.text
        self.id = r.json()["id"]

    def lease(self) -> dict[str, Any] | None:
        r = self.http.post(f"/agents/{self.id}/lease")
        assert r.status_code in (200, 204), r.text
        return r.json() if r.status_code == 200 else None

    def upload(self, job_id: int, content: bytes, fmt: str) -> str:
        r = self.http.post(
            f"/agents/{self.id}/jobs/{job_id}/artifacts",
            params={"format": fmt},
            files={"file": ("artifact", content)},
        )
        assert r.status_code == 201, r.text
        return str(r.json()["sha256"])

    def conversion(self, job_id: int, body: dict[str, Any]) -> httpx.Response:
        return self.http.post(f"/agents/{self.id}/jobs/{job_id}/conversion", json=body)


@pytest.fixture
def model_id(live: Live, model_files: dict[str, Path]) -> int:
    with live.http(live.user_token) as c:
        # a fresh name per test; the bytes (and so the conversion reuse key) vary by a tag
        r = c.post("/models", files={"file": ("mlp.onnx", model_files["mlp"].read_bytes())})
        return int(r.json()["id"])


def _fresh_model(live: Live, tmp_path: Path) -> int:
    from bench.models import mlp, save

    path = save(mlp(seed=int(uuid.uuid4().int % 10_000)), tmp_path / "m.onnx")
    with live.http(live.user_token) as c:
        return int(c.post("/models", files={"file": ("m.onnx", path.read_bytes())}).json()["id"])


def test_benchmark_waits_for_its_conversion_then_runs_on_the_converted_artifact(
    live: Live, tmp_path: Path
) -> None:
    # TensorRT engines are built on the GPU that runs them: the conversion job is addressed
    # to this hand-driven GPU agent by name, so the fixture's real converter cannot take it.
    model = _fresh_model(live, tmp_path)
    gpu = conv = Worker(live, "gpu-sim", {"convert:tensorrt": "test", "tensorrt": "10.0"})
    with live.http(live.user_token) as c:
        r = c.post(
            "/benchmarks",
            json={
                "model_id": model,
                "settings": FAST,
                "targets": [{"runtime": "tensorrt", "device": gpu.name}],
            },
        )
        assert r.status_code == 202, r.text
        bench = r.json()
        assert bench["status"] == "running" and bench["jobs"][0]["status"] == "waiting"
        assert bench["jobs"][0]["progress"]["phase"] == "converting"

        job = conv.lease()  # the convert job; the benchmark job is not leasable yet
        assert job is not None and job["kind"] == "convert"
        assert job["conversion"]["target"] == "tensorrt"
        assert job["conversion"]["input_shapes"] == {"x": [1, 256]}
        convs = c.get(f"/models/{model}/conversions").json()
        assert [x["status"] for x in convs] == ["running"]

        art = conv.upload(job["id"], b"fake-serialized-engine", "tensorrt")
        log = conv.upload(job["id"], b"converted fine\n", "log")
        outcome = {
            "status": "succeeded",
            "artifact_sha256": art,
            "artifact_format": "tensorrt",
            "artifact_metadata": {"trt_version": "10.0"},
            "log_sha256": log,
            "validation": {"max_abs_err": 1e-6, "max_rel_err": 2e-6, "passed": True},
        }
        first = conv.conversion(job["id"], outcome)
        assert first.status_code == 200, first.text
        again = conv.conversion(job["id"], outcome)  # idempotent
        assert again.json() == first.json()
        body = first.json()
        assert body["status"] == "succeeded" and body["artifact"]["sha256"] == art
        assert body["validation"]["passed"] is True
        assert c.get(body["log"].removeprefix("/api/v1")).text == "converted fine\n"

        leased = gpu.lease()  # now the benchmark job, on the converted artifact
        assert leased is not None and leased["kind"] == "benchmark"
        assert leased["artifact_sha256"] == art
        assert leased["artifact_format"] == "tensorrt"
        assert leased["artifact_metadata"] == {"trt_version": "10.0"}

        # An identical request reuses the stored artifact: no new conversion job.
        r = c.post(
            "/conversions", json={"model_id": model, "target": "tensorrt", "device": gpu.name}
        )
        assert r.status_code == 202 and r.json()["id"] == body["id"]
        r = c.post(
            "/benchmarks",
            json={
                "model_id": model,
                "settings": FAST,
                "targets": [{"runtime": "tensorrt", "device": gpu.name}],
            },
        )
        assert r.json()["jobs"][0]["status"] == "queued"


def test_a_failed_conversion_fails_its_benchmark_jobs_with_the_reason(
    live: Live, tmp_path: Path
) -> None:
    model = _fresh_model(live, tmp_path)
    # Addressed to this hand-driven GPU agent (TensorRT), out of the real converter's reach.
    conv = cpu = Worker(live, "gpu-sim", {"convert:tensorrt": "test", "tensorrt": "10.0"})
    with live.http(live.user_token) as c:
        bench = c.post(
            "/benchmarks",
            json={
                "model_id": model,
                "settings": FAST,
                "targets": [{"runtime": "tensorrt", "device": cpu.name}],
            },
        ).json()
        job = conv.lease()
        assert job is not None
        log = conv.upload(job["id"], b"Traceback...\nUnsupported op Foo\n", "log")
        r = conv.conversion(
            job["id"],
            {
                "status": "failed",
                "log_sha256": log,
                "error": {
                    "step": "TensorRTFromOnnx",
                    "op": "Foo",
                    "message": "op Foo is not supported",
                    "hint": "replace Foo or export with opset 17",
                },
            },
        )
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "failed" and "op Foo" in r.json()["error"]
        done = c.get(f"/benchmarks/{bench['id']}").json()
        assert done["status"] == "failed"
        err = done["jobs"][0]["error"]
        assert "conversion to tensorrt failed" in err and "replace Foo" in err
        # A failed conversion is not reused: asking again queues a new attempt.
        again = c.post(
            "/conversions",
            json={"model_id": model, "target": "tensorrt", "device": cpu.name},
        ).json()
        assert again["status"] == "queued" and again["id"] != r.json()["id"]


def test_conversion_requests_are_checked(live: Live, model_id: int) -> None:
    with live.http(live.user_token) as c:
        r = c.post("/conversions", json={"model_id": 999999, "target": "tflite"})
        assert r.status_code == 404
        r = c.post("/conversions", json={"model_id": model_id, "target": "caffe"})
        assert r.status_code == 422
        r = c.post("/conversions", json={"model_id": model_id, "target": "tensorrt"})
        assert r.status_code == 422 and "device" in r.json()["detail"]
        r = c.post(
            "/conversions",
            json={"model_id": model_id, "target": "tensorrt", "device": "gpu:NVIDIA H100"},
        )
        assert r.status_code == 422 and "TensorRT" in r.json()["detail"]
        assert c.get("/conversions/999999").status_code == 404
        assert c.get("/models/999999/conversions").status_code == 404


def test_only_the_holder_uploads_and_reports(live: Live, tmp_path: Path) -> None:
    model = _fresh_model(live, tmp_path)
    conv = Worker(live, "gpu-sim", {"convert:tensorrt": "test"})
    other = Worker(live, "gpu-sim", {"convert:tensorrt": "test"})
    with live.http(live.user_token) as c:
        c.post("/conversions", json={"model_id": model, "target": "tensorrt", "device": conv.name})
    job = conv.lease()
    assert job is not None
    r = other.http.post(
        f"/agents/{other.id}/jobs/{job['id']}/artifacts",
        params={"format": "x"},
        files={"file": ("a", b"x")},
    )
    assert r.status_code == 409
    r = other.conversion(job["id"], {"status": "failed", "error": {"message": "x"}})
    assert r.status_code == 409
    r = conv.conversion(job["id"], {"status": "succeeded", "artifact_sha256": "0" * 64})
    assert r.status_code == 422 and "not uploaded" in r.json()["detail"]
