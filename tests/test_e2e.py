"""End to end: real coordinator + real agent subprocess + onnxruntime, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import onnxruntime

from tests.conftest import FAST, QUICK_CLI, Live, cli


def test_health_needs_no_token_and_names_the_backend(live: Live) -> None:
    with live.http() as c:
        body = c.get("/health").json()
    assert body["status"] == "ok"
    assert body["database"] == live.backend


def test_upload_benchmark_and_read_results(live: Live, model_files: dict[str, Path]) -> None:
    with live.client() as c:
        model = c.upload_model(
            model_files["mbv2"], metadata={"accuracy": {"top1": 60.1}, "tags": ["mbv2"]}
        )
        assert model.format == "onnx" and model.opset == 17
        assert [i.name for i in model.inputs] == ["input"]
        assert model.inputs[0].shape == [1, 3, 96, 96]
        assert model.metadata["accuracy"] == {"top1": 60.1}

        bench = c.benchmark(model.id, [{"runtime": "onnxruntime", "device": "local"}], FAST)
        assert bench.status == "queued" and len(bench.jobs) == 1
        done = c.wait(bench.id, timeout=180)
        assert done.status == "succeeded", done.jobs
        (r,) = done.results
        lat = r.latency_ms
        assert r.status == "succeeded" and lat is not None
        assert lat.min <= lat.p50 <= lat.p90 <= lat.p95 <= lat.p99 <= lat.max
        assert lat.std >= 0 and lat.cov == lat.std / lat.mean
        assert r.runs >= FAST["min_runs"]
        assert r.steady_duration_s is not None and r.steady_duration_s >= FAST["min_duration_s"]
        assert r.stop_reason in {"ci_converged", "max_duration", "max_runs"}
        assert r.load_ms and r.load_ms > 0 and r.first_inference_ms and r.first_inference_ms > 0
        assert r.device == live.agent_name and r.threads == 1 and r.batch_size == 1
        for key in ("peak_rss_mb", "baseline_rss_mb", "load_peak_rss_mb", "steady_peak_rss_mb"):
            assert r.memory[key] > 0, key
        assert r.memory["peak_rss_mb"] >= r.memory["baseline_rss_mb"]
        env = r.environment
        assert env["cpu_model"] and env["logical_cores"] >= 1
        assert env["runtime"] == "onnxruntime"
        assert env["runtime_version"] == onnxruntime.__version__
        assert env["intra_op_num_threads"] == 1

        raw = c.raw_times(bench.id, r.id)
        assert len(raw.times_ms) == r.runs
        assert min(raw.times_ms) == lat.min and max(raw.times_ms) == lat.max
        assert len(raw.warmup_ms) == FAST["warmup_runs"]

        prof = c.profile(bench.id, r.id)
        assert prof.layers and all(layer.time_ms >= 0 for layer in prof.layers)
        assert {layer.type for layer in prof.layers} >= {"Conv"}


def test_symbolic_batch_is_filled_from_the_target(live: Live, model_files: dict[str, Path]) -> None:
    with live.client() as c:
        model = c.upload_model(model_files["mlp"])
        assert model.inputs[0].shape == ["N", 256]
        bench = c.benchmark(
            model.id, [{"runtime": "onnxruntime", "batch_size": 4, "threads": 2}], FAST
        )
        done = c.wait(bench.id, timeout=180)
    (r,) = done.results
    assert r.status == "succeeded", r.error
    assert r.batch_size == 4 and r.threads == 2


def test_a_runtime_crash_fails_that_job_and_the_agent_lives_on(
    live: Live, tmp_path: Path, model_files: dict[str, Path]
) -> None:
    from onnx import TensorProto, helper

    # Valid ONNX, but an op from a domain onnxruntime has no kernel for: session creation fails.
    node = helper.make_node("Mystery", ["x"], ["y"], domain="com.example")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    )
    path = tmp_path / "mystery.onnx"
    path.write_bytes(model.SerializeToString())
    with live.client() as c:
        bad = c.upload_model(path)
        good = c.upload_model(model_files["resnet"])
        b1 = c.benchmark(bad.id, [{"runtime": "onnxruntime"}], FAST)
        b2 = c.benchmark(good.id, [{"runtime": "onnxruntime"}], FAST)
        d1 = c.wait(b1.id, timeout=180)
        d2 = c.wait(b2.id, timeout=180)
    assert d1.status == "failed"
    assert d1.results[0].status == "failed" and "Mystery" in (d1.results[0].error or "")
    assert d1.jobs[0].error and "Mystery" in d1.jobs[0].error
    assert d2.status == "succeeded"


def test_cli_submit_json_and_results(live: Live, model_files: dict[str, Path]) -> None:
    env = {
        "LATENCYLAB_SERVER": live.url,
        "LATENCYLAB_TOKEN": live.user_token,
        "PATH": "/usr/bin:/bin",
    }
    out = cli(
        "submit", str(model_files["mlp"]), "--runtime", "onnxruntime", "--device", "local",
        *QUICK_CLI, "--json", env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    bench = body["benchmark"]
    assert bench["status"] == "succeeded"
    assert bench["results"][0]["latency_ms"]["p50"] > 0
    table = cli("results", str(bench["id"]), env={**env, "COLUMNS": "200"}, timeout=60)
    assert table.returncode == 0, table.stderr
    assert "succeeded" in table.stdout and "onnxruntime" in table.stdout
    devices = cli("devices", "--json", env=env, timeout=60)
    assert devices.returncode == 0, devices.stderr
    names = {d["name"]: d for d in json.loads(devices.stdout)}
    assert names[live.agent_name]["class"] == "cpu"
    assert "onnxruntime" in names[live.agent_name]["runtimes"]


def test_concurrent_uploads_of_the_same_file(live: Live, model_files: dict[str, Path]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    data = model_files["resnet"].read_bytes()

    def upload(i: int) -> tuple[int, str]:
        with live.http(live.user_token) as c:
            r = c.post("/models", files={"file": (f"r{i}.onnx", data)})
            return r.status_code, r.json().get("sha256", r.text)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(upload, range(4)))
    assert [code for code, _ in results] == [201] * 4, results
    assert len({sha for _, sha in results}) == 1
    sha = results[0][1]
    stored = [p for p in (live.data_dir / "artifacts").rglob(sha)]
    assert len(stored) == 1
