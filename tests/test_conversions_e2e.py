"""Conversions end to end: real coordinator, real converter worker, real agent, both backends."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FAST, Live


def _wait_conversion(live: Live, conv_id: int, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with live.http(live.user_token) as c:
        while True:
            conv = c.get(f"/conversions/{conv_id}").json()
            if conv["status"] in ("succeeded", "failed"):
                return conv
            assert time.monotonic() < deadline, conv
            time.sleep(0.5)


@pytest.fixture(scope="module")
def mbv2_id(live: Live, model_files: dict[str, Path]) -> int:
    with live.http(live.user_token) as c:
        r = c.post(
            "/models",
            files={"file": ("mbv2.onnx", model_files["mbv2"].read_bytes())},
            data={"name": "mbv2-conv"},
        )
        return int(r.json()["id"])


# Every target on SQLite. A conversion itself is the converter worker's (the same bytes on any
# backend), so PostgreSQL, which proves the job flow and the storage of what comes back, gets one
# of each artifact kind: ONNX, a TFLite flatbuffer and an OpenVINO IR directory; the fp16 TFLite
# and Core ML conversions are not repeated there (about a minute of conversions on 2 cores).
SQLITE_ONLY = pytest.mark.backends("sqlite")


@pytest.mark.parametrize(
    ("target", "precision"),
    [
        ("onnx", "fp32"),
        ("tflite", "fp32"),
        pytest.param("tflite", "fp16", marks=SQLITE_ONLY),
        ("openvino", "fp32"),
        pytest.param("coreml", "fp16", marks=SQLITE_ONLY),
    ],
)
def test_convert_and_validate(live: Live, mbv2_id: int, target: str, precision: str) -> None:
    with live.http(live.user_token) as c:
        r = c.post(
            "/conversions", json={"model_id": mbv2_id, "target": target, "precision": precision}
        )
        assert r.status_code == 202, r.text
        conv = _wait_conversion(live, r.json()["id"])
        assert conv["status"] == "succeeded", conv
        art = conv["artifact"]
        assert art["format"] == target and art["size"] > 0
        blob = c.get(f"/artifacts/{art['sha256']}")
        assert blob.status_code == 200 and len(blob.content) == art["size"]
        log = c.get(conv["log"].removeprefix("/api/v1"))
        assert log.status_code == 200
        v = conv["validation"]
        if target == "coreml":
            assert v["passed"] is None and "needs macOS" in v["note"]
        else:
            assert v["passed"] is True, v
            assert v["max_abs_err"] is not None and v["max_rel_err"] is not None
        listed = c.get(f"/models/{mbv2_id}/conversions").json()
        assert conv["id"] in [x["id"] for x in listed]


def test_benchmark_on_tflite_and_openvino_converts_by_itself(
    live: Live, model_files: dict[str, Path]
) -> None:
    with live.client() as c:
        model = c.upload_model(model_files["resnet"], name="resnet-auto")
        bench = c.benchmark(
            model.id,
            [
                {"runtime": "tflite", "device": "local"},
                {"runtime": "openvino", "device": "local"},
                {"runtime": "onnxruntime", "device": "local"},
            ],
            FAST,
        )
        assert {j.status for j in bench.jobs} <= {"waiting", "queued"}
        done = c.wait(bench.id, timeout=600)
    assert done.status == "succeeded", [(j.runtime, j.error) for j in done.jobs]
    by_runtime = {r.runtime: r for r in done.results}
    assert set(by_runtime) == {"tflite", "openvino", "onnxruntime"}
    for runtime, r in by_runtime.items():
        assert r.latency_ms is not None and r.latency_ms.p50 > 0, runtime
        assert r.environment["runtime"] == runtime
    assert by_runtime["openvino"].environment["inference_precision_hint"] == "f32"
