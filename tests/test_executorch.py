"""ExecuTorch: the ``.pt2``/ONNX -> ``.pte`` conversions (XNNPACK; fp32, fp16, int8), the
runner (``executorch.runtime``: raw times, threadpool, ETDump op profile), ``.pte`` uploads
and ``.pt2`` uploads benchmarked with ``runtime: executorch`` through a live coordinator
(SQLite and PostgreSQL), and phones over the adb stand-in running the real runtime through
``tests/fakes/executor_runner``.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agents.android.adb import Adb
from agents.android.config import AndroidSettings
from agents.android.energy import METHOD as ENERGY_METHOD
from agents.android.executorch import (
    NO_TRACER_NOTE,
    PROFILE_NOTE,
    RAW_TIMES_NOTE,
    parse_executor_runner,
    steady_runs,
)
from agents.android.measure import PhoneMeasurer
from latencylab.schemas import MeasureSettings, MeasureSpec
from tests.conftest import (
    AGENT_ENV,
    FAST,
    REPO,
    SERVER_ENV,
    Live,
    _env,
    _stop,
    _wait_for,
    free_port,
)

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("executorch") is None,
    reason="executorch is not installed (the executorch extra; `make setup` installs it)",
)

FAKE_ADB = REPO / "tests" / "fakes" / "adb"
FAKE_RUNNER = REPO / "tests" / "fakes" / "executor_runner"
PHONES = REPO / "tests" / "fakes" / "phones.json"
NEXUS5, FLIP4 = "07e401a0d00b3699", "R3CTFAKE4FLIP"
NAMES = {NEXUS5: f"Nexus_5-{NEXUS5}", FLIP4: f"SM-F721B-{FLIP4}"}


# ------------------------------------------------------------------ models
def _net(cumsum: bool = True) -> Any:
    """A small conv net; its cumsum XNNPACK does not take (a portable fallback). The ONNX copy
    has none: onnx2torch reads CumSum's axis from a tensor, which torch.export cannot trace."""
    import torch

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1 = torch.nn.Conv2d(3, 16, 3, padding=1)
            self.c2 = torch.nn.Conv2d(16, 32, 3, stride=2, padding=1)
            self.fc = torch.nn.Linear(32, 10)

        def forward(self, x: Any) -> Any:
            y = torch.relu(self.c2(torch.relu(self.c1(x))))
            y = y.mean(dim=(2, 3))
            y = self.fc(y)
            return torch.cumsum(y, dim=1) if cumsum else y

    torch.manual_seed(0)
    return Net().eval()


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import torch

    root = tmp_path_factory.mktemp("et-models")
    x = torch.randn(1, 3, 32, 32)
    pt2, onnx = root / "cnn.pt2", root / "cnn.onnx"
    torch.export.save(torch.export.export(_net(), (x,)), pt2)
    torch.onnx.export(_net(cumsum=False), (x,), onnx, input_names=["image"], output_names=["logits"],
                      opset_version=17, dynamo=False)  # fmt: skip
    return {"pt2": pt2, "onnx": onnx}


@pytest.fixture(scope="module")
def pte(sources: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Any:
    from converters import ExecuTorchFromTorch

    return ExecuTorchFromTorch(sources["pt2"], out_dir=tmp_path_factory.mktemp("pte")).artifact()


# ------------------------------------------------------------------ converter
@pytest.mark.slow
def test_pt2_to_pte_fp32_validates_and_records_the_portable_fallback(pte: Any, sources: dict[str, Path]) -> None:  # fmt: skip
    from converters import validate

    assert pte.format == "executorch" and pte.path.suffix == ".pte"
    assert pte.path.read_bytes()[4:8] == b"ET12"
    d = pte.metadata["delegation"]
    assert d["backend"] == "XnnpackBackend" and d["delegated_subgraphs"] >= 1
    assert d["delegated_ops"]["aten_convolution_default"] == 2
    assert d["portable_ops"]["aten_cumsum_default"] == 1  # XNNPACK has no cumsum
    assert pte.metadata["inputs"][0] | {"perm": None} == {
        "name": "x", "source_name": "x", "shape": [1, 3, 32, 32], "dtype": "float32", "perm": None,
    }  # fmt: skip
    v = validate(pte, sources["pt2"])
    assert v["passed"] is True and v["max_rel_err"] <= 1e-4, v


@pytest.mark.slow
def test_pt2_to_pte_int8_is_pt2e_quantized_and_validates(sources: dict[str, Path], tmp_path: Path) -> None:  # fmt: skip
    from converters import ExecuTorchFromTorch, validate

    art = ExecuTorchFromTorch(sources["pt2"], precision="int8", out_dir=tmp_path).artifact()
    q = art.metadata["quantization"]
    assert (
        q["calibration_batches"] == 8
        and q["observers"] > 0
        and "XNNPACKQuantizer" in q["quantizer"]
    )
    ops = art.metadata["delegation"]["delegated_ops"]
    assert ops["quantized_decomposed_quantize_per_tensor_default"] > 0
    assert ops["quantized_decomposed_dequantize_per_channel_default"] == 3  # 2 convs + linear
    v = validate(art, sources["pt2"])
    assert v["passed"] is True and v["precision"] == "int8", v
    assert 0 < v["max_rel_err"] <= 0.1  # quantized: not bit-exact, within the int8 tolerance


@pytest.mark.slow
def test_onnx_to_pte_fp16_through_the_bridge(sources: dict[str, Path], tmp_path: Path) -> None:
    from converters import build_step, validate

    art = build_step(sources["onnx"], "executorch", precision="fp16", out_dir=tmp_path).artifact()
    assert art.metadata["backend"] == "onnx2torch+executorch+xnnpack"
    assert [i["dtype"] for i in art.metadata["inputs"]] == ["float16"]
    assert art.metadata["inputs"][0]["source_name"] == "image"
    v = validate(art, sources["onnx"])  # the reference is ONNX Runtime on the source
    assert v["passed"] is True and v["max_rel_err"] > 0, v


def test_precisions_outside_the_backend_are_refused(sources: dict[str, Path]) -> None:
    from converters import ExecuTorchFromTorch
    from converters.errors import ConversionInputError

    with pytest.raises(ConversionInputError, match="does not support precision 'bf16'"):
        ExecuTorchFromTorch(sources["pt2"], precision="bf16")


# ------------------------------------------------------------------ runner
def _spec(model: Path, **kw: Any) -> MeasureSpec:
    settings = MeasureSettings(**{**FAST, **kw.pop("settings", {})})
    return MeasureSpec(runtime="executorch", model_path=str(model), model_format="executorch",
                       inputs=[], settings=settings, **kw)  # fmt: skip


@pytest.mark.slow
def test_runner_measures_raw_times_threads_and_an_etdump_profile(pte: Any) -> None:
    from agents.measure.worker import measure

    r = measure(_spec(pte.path, threads=1, artifact_metadata=pte.metadata))
    assert r.status == "succeeded", r.error
    assert r.runs == len(r.times_ms) >= FAST["min_runs"] and len(r.warmup_ms) == FAST["warmup_runs"]
    assert r.latency_ms is not None and min(r.times_ms) <= r.latency_ms.p50 <= max(r.times_ms)
    env = r.environment
    assert env["threadpool_threads_set"] == 1 and env["threadpool_threads"] == 1
    assert "XnnpackBackend" in env["backends_registered"]
    assert env["delegation"]["portable_ops"]["aten_cumsum_default"] == 1
    assert env["inputs"] == [{"name": "input_0", "shape": [1, 3, 32, 32], "dtype": "float32"}]
    units = {p.compute_unit for p in r.profile}
    assert units == {"XNNPACK", "CPU (portable)"}, r.profile
    assert any(p.type == "cumsum.out" for p in r.profile)
    assert any(p.type and p.type.startswith("Convolution") for p in r.profile)
    assert all(p.time_ms >= 0 for p in r.profile)
    assert "ETDump" in env["profile_note"] and "Method::execute" in env["profile_note"]


def test_runner_refuses_what_is_not_a_pte_and_a_batch_it_cannot_apply(
    pte: Any, sources: dict[str, Path]
) -> None:
    from agents.measure.worker import measure

    wrong = measure(_spec(sources["onnx"]))
    assert wrong.status == "failed" and "not an ExecuTorch program" in (wrong.error or "")
    batch = measure(_spec(pte.path, batch_size=4))
    assert batch.status == "failed" and "batch_size 4 cannot be applied" in (batch.error or "")


# ------------------------------------------------------------------ live coordinator
def _upload(live: Live, path: Path) -> httpx.Response:
    with live.http(live.user_token) as h, path.open("rb") as fh:
        return h.post("/models", files={"file": (path.name, fh)})


@pytest.mark.slow
def test_pte_upload_is_measured_as_it_is(live: Live, pte: Any) -> None:
    up = _upload(live, pte.path)
    assert up.status_code == 201, up.text
    model = up.json()
    assert model["format"] == "executorch"
    assert model["inputs"] == [{"name": "input_0", "shape": [1, 3, 32, 32], "dtype": "float32"}]
    with live.client() as c:
        target = {"runtime": "executorch", "device": live.agent_name, "threads": 1}
        done = c.wait(c.benchmark(model["id"], [target], FAST).id, timeout=300)
        assert done.status == "succeeded", done.jobs
        (res,) = done.results
        assert res.runtime == "executorch" and res.environment["threadpool_threads"] == 1
        raw = c.raw_times(done.id, res.id).times_ms
        assert len(raw) == res.runs >= FAST["min_runs"]
        layers = c.profile(done.id, res.id).layers
    assert {p.compute_unit for p in layers} == {"XNNPACK", "CPU (portable)"}  # the ETDump rows
    with live.http(live.user_token) as h:
        convs = h.get(f"/models/{model['id']}/conversions")
    assert convs.status_code == 200 and convs.json() == []  # measured as uploaded


def test_a_file_posing_as_a_pte_is_refused(live: Live, tmp_path: Path) -> None:
    fake = tmp_path / "broken.pte"
    fake.write_bytes(b"\x1c\x00\x00\x00ET12" + b"\x00" * 64)
    up = _upload(live, fake)
    assert up.status_code == 422, up.text
    assert "not a valid ExecuTorch program" in up.json()["detail"]


@pytest.mark.slow
def test_pt2_upload_benchmarked_with_executorch_converts_validates_and_measures(
    live: Live, sources: dict[str, Path]
) -> None:
    up = _upload(live, sources["pt2"])
    assert up.status_code == 201, up.text
    with live.client() as c:
        target = {"runtime": "executorch", "device": live.agent_name}
        done = c.wait(c.benchmark(up.json()["id"], [target], FAST).id, timeout=600)
        assert done.status == "succeeded", done.jobs
        (res,) = done.results
        assert len(c.raw_times(done.id, res.id).times_ms) == res.runs
        assert res.environment["delegation"]["portable_ops"]["aten_cumsum_default"] == 1
        layers = c.profile(done.id, res.id).layers
    with live.http(live.user_token) as h:
        convs = h.get(f"/models/{up.json()['id']}/conversions").json()
    conv = next(cv for cv in convs if cv["target"] == "executorch")
    assert conv["status"] == "succeeded" and conv["validation"]["passed"] is True
    assert conv["artifact"]["format"] == "executorch"
    assert (
        conv["artifact"]["metadata"]["delegation"]["delegated_ops"]["aten_convolution_default"] == 2
    )
    assert any(p.compute_unit == "XNNPACK" for p in layers)


# ------------------------------------------------------------------ phones (adb stand-in)
def test_executor_runner_log_is_read_line_by_line() -> None:
    log = (
        "I 00:00:00.000120 executorch:executor_runner.cpp:333] Resetting threadpool with num threads = 4\n"
        "I 00:00:00.004211 executorch:executor_runner.cpp:630] Model loaded in 4.211000 ms.\n"
        "I 00:00:00.006324 executorch:executor_runner.cpp:797] Iteration 1 of 3: 2.113000 ms\n"
        "I 00:00:00.008324 executorch:executor_runner.cpp:797] Iteration 2 of 3: 1.990000 ms\n"
        "OutputX 0: tensor(sizes=[1, 10], [...])\n"
        "I 00:00:00.010324 executorch:executor_runner.cpp:797] Iteration 3 of 3: 2.001000 ms\n"
        "I 00:00:00.010400 executorch:executor_runner.cpp:807] Model executed successfully 3 time(s) in 6.104000 ms.\n"
    )  # fmt: skip
    out = parse_executor_runner(log)
    assert out.times_ms == [2.113, 1.99, 2.001] and out.announced == 3
    assert out.load_ms == 4.211 and out.executions == 3 and out.total_ms == 6.104
    with pytest.raises(ValueError, match="out of order"):
        parse_executor_runner(log.replace("Iteration 2 of 3", "Iteration 5 of 3"))
    spec = _spec(Path("m.pte"), settings={"min_runs": 20, "min_duration_s": 1.0, "max_runs": 500})
    assert steady_runs(10.0, spec) == 105  # 1 s at 10 ms, 5 % over
    assert steady_runs(0.5, spec) == 500  # capped by max_runs


class _Phones:
    """The stand-in's config with the two phones of tests/fakes/phones.json."""

    def __init__(self, root: Path) -> None:
        import json

        self.config = root / "adb.json"
        cfg = json.loads(PHONES.read_text())
        cfg.update(root=str(root / "phones"))
        for phone in cfg["phones"]:
            phone["disconnect_file"] = str(root / f"{phone['serial']}.gone")
        self.config.write_text(json.dumps(cfg))
        self.root = root / "phones"
        self.benchmark_model = root / "benchmark_model"
        self.benchmark_model.write_text("stand-in: tests/fakes/adb runs litert-benchmark\n")

    def calls(self, serial: str) -> list[dict[str, Any]]:
        import json

        path = self.root / serial / "calls.jsonl"
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def phones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> _Phones:
    fake = _Phones(tmp_path)
    monkeypatch.setenv("FAKE_ADB_CONFIG", str(fake.config))
    return fake


@pytest.mark.slow
def test_a_phone_runs_a_pte_with_raw_per_run_times(phones: _Phones, pte: Any, tmp_path: Path) -> None:  # fmt: skip
    settings = AndroidSettings(adb=str(FAKE_ADB), executor_runner=FAKE_RUNNER, cooldown_poll_s=0.1)
    measurer = PhoneMeasurer(Adb(str(FAKE_ADB), timeout_s=30), FLIP4, settings)
    assert measurer.phone.runtimes() == {
        "tflite": "benchmark_model",
        "executorch": "executor_runner",
    }
    spec = _spec(pte.path, threads=2, settings={"min_duration_s": 0.3, "max_duration_s": 3})
    r = measurer(spec, workdir=tmp_path)
    assert r.status == "succeeded", r.error
    assert r.runs == len(r.times_ms) >= FAST["min_runs"] and len(r.warmup_ms) == FAST["warmup_runs"]
    assert sum(r.times_ms) / 1000 >= 0.3 or r.warnings  # a second, longer pass if needed
    env = r.environment
    assert env["raw_times"] == RAW_TIMES_NOTE and env["tool"] == "executor_runner"
    assert env["soc"] == "SM8475" and env["runtime"] == "executorch"
    assert "--cpu_threads=2" in env["command"] and env["command"].startswith("taskset ")
    assert r.load_ms is not None and r.load_ms > 0 and r.first_inference_ms is not None
    assert env["power"]["method"] == ENERGY_METHOD  # the battery was sampled around the pass
    assert r.profile == [] and env["profile_note"] == PROFILE_NOTE  # no profiler build set
    assert "LATENCYLAB_ANDROID_EXECUTOR_RUNNER_PROFILER" in PROFILE_NOTE
    ran = [c["executor_runner"] for c in phones.calls(FLIP4) if "executor_runner" in c]
    assert ran and all(any(a.startswith("--model_path=") for a in cmd) for cmd in ran)
    no_runner = PhoneMeasurer(
        Adb(str(FAKE_ADB), timeout_s=30), FLIP4, AndroidSettings(adb=str(FAKE_ADB))
    )
    refused = no_runner(spec, workdir=tmp_path)
    assert refused.status == "failed" and "LATENCYLAB_ANDROID_EXECUTOR_RUNNER" in (
        refused.error or ""
    )


def _profiler_build(root: Path) -> Path:
    """The stand-in as built with EXECUTORCH_ENABLE_EVENT_TRACER=ON (tests/fakes/executor_runner
    says how a build differs: it takes --etdump_path and writes the ETDump)."""
    line = "ET_EVENT_TRACER_ENABLED = False"
    text = FAKE_RUNNER.read_text()
    assert line in text
    out = root / "executor_runner_profiler"
    out.write_text(text.replace(line, "ET_EVENT_TRACER_ENABLED = True", 1))
    return out


@pytest.mark.slow
def test_a_phone_profiles_operators_with_an_event_tracer_build(phones: _Phones, pte: Any, tmp_path: Path) -> None:  # fmt: skip
    def phone(profiler: Path | None) -> PhoneMeasurer:
        settings = AndroidSettings(adb=str(FAKE_ADB), executor_runner=FAKE_RUNNER, executor_runner_profiler=profiler,
                                   cooldown_poll_s=0.1, energy=False, profile_runs=5)  # fmt: skip
        return PhoneMeasurer(Adb(str(FAKE_ADB), timeout_s=30), NEXUS5, settings)

    spec = _spec(pte.path, settings={"min_duration_s": 0.05, "max_duration_s": 1})
    r = phone(_profiler_build(tmp_path))(spec, workdir=tmp_path)
    assert r.status == "succeeded", r.error
    assert {p.compute_unit for p in r.profile} == {"XNNPACK", "CPU (portable)"}, r.profile
    assert any(p.type == "cumsum.out" for p in r.profile)
    assert all(p.time_ms >= 0 for p in r.profile)
    env = r.environment
    assert "executor_runner --etdump_path on the phone" in env["profile_note"], env["profile_note"]
    assert "8 traced executions (the first 3 left out as warm-up)" in env["profile_note"]
    assert "/executor_runner_profiler " in env["profile_command"]
    assert (
        "--etdump_path=" in env["profile_command"]
        and "--num_executions=8" in env["profile_command"]
    )
    calls = phones.calls(NEXUS5)
    timed = [c["executor_runner"] for c in calls if "executor_runner" in c]
    assert (
        sum(any(a.startswith("--etdump_path=") for a in cmd) for cmd in timed) == 1
    )  # the timed passes run untraced
    (pulled,) = [c["pull"] for c in calls if "pull" in c]
    assert pulled[0].endswith(".etdump") and Path(pulled[1]).stat().st_size > 0
    assert not list(
        (phones.root / NEXUS5 / "fs/data/local/tmp").glob("latencylab-*")
    )  # nothing left
    # a profiler without the event tracer refuses --etdump_path: the timed runs stand, no profile
    (tmp_path / "plain").mkdir()
    plain = phone(FAKE_RUNNER)(spec, workdir=tmp_path / "plain")
    assert plain.status == "succeeded" and plain.runs >= FAST["min_runs"], plain.error
    assert plain.profile == [] and plain.environment["profile_note"] == NO_TRACER_NOTE
    missing = phone(tmp_path / "no-such-build")(spec, workdir=tmp_path / "plain")
    assert missing.status == "succeeded" and missing.profile == [], missing.error
    assert "executor_runner_profiler is not available" in missing.environment["profile_note"]


@pytest.fixture(scope="module")
def coordinator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A real coordinator subprocess (SQLite) with no agent of its own."""
    data_dir = tmp_path_factory.mktemp("et-coordinator")
    url = f"http://127.0.0.1:{free_port()}"
    log = data_dir / "server.log"
    env = _env({**SERVER_ENV, "LATENCYLAB_DATABASE_URL": f"sqlite:///{data_dir / 'db.sqlite'}"})
    argv = [sys.executable, "-m", "latencylab", "serve", "--no-local-agent",
            "--port", url.rsplit(":", 1)[1], "--data-dir", str(data_dir)]  # fmt: skip
    with log.open("wb") as fh:
        server = subprocess.Popen(argv, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)
    try:
        _wait_for(url, server, log)
        admin = (data_dir / "admin.token").read_text().strip()
        auth = {"Authorization": f"Bearer {admin}"}
        with httpx.Client(base_url=f"{url}/api/v1", headers=auth) as c:
            tokens = {s: c.post("/tokens", json={"scope": s, "name": f"et {s}"}).json()["token"]
                      for s in ("user", "agent")}  # fmt: skip
        yield {"url": url, **tokens}
    finally:
        _stop(server)


@pytest.mark.slow
def test_two_simulated_phones_run_executorch_at_once(
    coordinator: dict[str, str], phones: _Phones, pte: Any, tmp_path: Path
) -> None:
    from latencylab import Client

    env = _env({**AGENT_ENV, "FAKE_ADB_CONFIG": str(phones.config), "LATENCYLAB_ADB": str(FAKE_ADB),
                "LATENCYLAB_ANDROID_POLL_INTERVAL_S": "0.5", "LATENCYLAB_ANDROID_COOLDOWN_POLL_S": "0.1",
                "LATENCYLAB_ANDROID_EXECUTOR_RUNNER": str(FAKE_RUNNER),
                "LATENCYLAB_ANDROID_EXECUTOR_RUNNER_PROFILER": str(_profiler_build(tmp_path))})  # fmt: skip
    argv = [sys.executable, "-m", "agents.android.host", "--server", coordinator["url"],
            "--token", coordinator["agent"], "--data-dir", str(tmp_path / "host"),
            "--benchmark-model", str(phones.benchmark_model)]  # fmt: skip
    log = tmp_path / "host.log"
    with log.open("wb") as fh:
        host = subprocess.Popen(argv, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)
    try:
        with Client(server=coordinator["url"], token=coordinator["user"]) as c:
            m = c.upload_model(pte.path)
            assert m.format == "executorch"
            _wait_online(c, set(NAMES.values()))
            devices = {d.name: d for d in c.devices()}
            for name in NAMES.values():
                assert devices[name].runtimes == {
                    "tflite": "benchmark_model",
                    "executorch": "executor_runner",
                }
            targets = [{"runtime": "executorch", "device": name} for name in NAMES.values()]
            done = c.wait(c.benchmark(m.id, targets, FAST).id, timeout=300)
            assert done.status == "succeeded", done.jobs
            by_device = {r.device: r for r in done.results}
            assert set(by_device) == set(NAMES.values())
            for r in by_device.values():
                raw = c.raw_times(done.id, r.id).times_ms
                assert len(raw) == r.runs >= FAST["min_runs"], r
                assert r.environment["raw_times"] == RAW_TIMES_NOTE
                layers = c.profile(done.id, r.id).layers  # stored and served as any runtime's
                assert {p.compute_unit for p in layers} == {"XNNPACK", "CPU (portable)"}, r
            assert {r.environment["serial"] for r in by_device.values()} == set(NAMES)
    finally:
        _stop(host)
        print(log.read_text()[-5000:])


def _wait_online(c: Any, names: set[str], timeout: float = 60) -> None:
    import time

    deadline = time.monotonic() + timeout
    while {d.name for d in c.devices() if d.status == "online"} < names:
        assert time.monotonic() < deadline, f"phones never came online: {c.devices()}"
        time.sleep(0.3)
