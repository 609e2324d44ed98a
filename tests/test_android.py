"""Android phones over adb, without a phone: the ``tests/fakes/adb`` stand-in simulates two
phones and runs the REAL ``litert-benchmark`` for ``benchmark_model``.

Unit level: the adb wrapper, the phone facts, the Measurer (success, disconnect mid-run,
timeouts, cool-down), the output -> MeasureResult conversion on verbatim device outputs.
End to end: a real coordinator subprocess + ``python -m agents.android.host``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agents.android.adb import Adb, AdbTimeout, Cancelled, PhoneGone
from agents.android.config import AndroidSettings
from agents.android.measure import PhoneMeasurer
from agents.android.phone import Phone
from agents.android.result import RAW_TIMES_NOTE, to_result
from agents.parsers.tflite_benchmark import parse_tflite_benchmark
from latencylab.schemas import MeasureSettings, MeasureSpec
from tests.conftest import AGENT_ENV, FAST, REPO, SERVER_ENV, _env, _stop, _wait_for, free_port
from tests.shared_fixtures import FIXTURES, read

FAKE_ADB = REPO / "tests" / "fakes" / "adb"
PHONES = REPO / "tests" / "fakes" / "phones.json"
NEXUS5, FLIP4 = "07e401a0d00b3699", "R3CTFAKE4FLIP"
LITERT_BENCHMARK = Path(sys.executable).parent / "litert-benchmark"

pytestmark = pytest.mark.skipif(
    not LITERT_BENCHMARK.exists(), reason=f"needs ai-edge-litert's {LITERT_BENCHMARK}"
)


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def tflite_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small conv net converted with litert_torch (a few hundred microseconds per run)."""
    import litert_torch
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, 10),
    ).eval()  # fmt: skip
    path = tmp_path_factory.mktemp("tflite") / "small_cnn.tflite"
    litert_torch.convert(net, (torch.randn(1, 3, 64, 64),)).export(str(path))
    return path


class FakePhones:
    """The stand-in's config (a copy of phones.json) and switches on its phones."""

    def __init__(self, root: Path) -> None:
        self.config = root / "adb.json"
        self.root = root / "phones"
        cfg = json.loads(PHONES.read_text())
        cfg.update(root=str(self.root), litert_benchmark=str(LITERT_BENCHMARK))
        for phone in cfg["phones"]:
            phone["disconnect_file"] = str(root / f"{phone['serial']}.gone")
        self.write(cfg)
        self.binary = root / "benchmark_model"
        self.binary.write_text("stand-in: tests/fakes/adb runs litert-benchmark instead\n")

    def read(self) -> dict[str, Any]:
        return json.loads(self.config.read_text())

    def write(self, cfg: dict[str, Any]) -> None:
        self.config.write_text(json.dumps(cfg))

    def set(self, serial: str, **values: Any) -> None:
        cfg = self.read()
        next(p for p in cfg["phones"] if p["serial"] == serial).update(values)
        self.write(cfg)

    def gone_file(self, serial: str) -> Path:
        return self.config.parent / f"{serial}.gone"

    def calls(self, serial: str) -> list[dict[str, Any]]:
        path = self.root / serial / "calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def zone_temp(self, serial: str, zone: int, millidegrees: int) -> None:
        path = self.root / serial / f"fs/sys/class/thermal/thermal_zone{zone}/temp"
        path.write_text(f"{millidegrees}\n")


@pytest.fixture
def phones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakePhones:
    fake = FakePhones(tmp_path)
    monkeypatch.setenv("FAKE_ADB_CONFIG", str(fake.config))
    return fake


@pytest.fixture
def settings(phones: FakePhones) -> AndroidSettings:
    return AndroidSettings(adb=str(FAKE_ADB), benchmark_model=phones.binary, cooldown_poll_s=0.1)


def _spec(model: Path, **settings: Any) -> MeasureSpec:
    options = settings.pop("options", {})
    return MeasureSpec(
        runtime="tflite", model_path=str(model), model_format="tflite", inputs=[],
        threads=1, settings=MeasureSettings(**{**FAST, **settings}), options=options,
    )  # fmt: skip


# ------------------------------------------------------------------ adb wrapper + phone facts
def test_adb_wrapper_lists_reads_pushes_and_names_the_serial(
    phones: FakePhones, tmp_path: Path
) -> None:
    adb = Adb(str(FAKE_ADB), timeout_s=20)
    assert [(d.serial, d.ready) for d in adb.devices()] == [(NEXUS5, True), (FLIP4, True)]
    assert adb.getprop(FLIP4)["ro.soc.model"] == "SM8475"
    assert adb.getprop_one(NEXUS5, "ro.board.platform") == "msm8974"
    assert adb.getprop_one(NEXUS5, "ro.soc.model") is None  # Android 5.1 has none
    adb.push(FLIP4, phones.binary, "/data/local/tmp/x.bin")
    assert adb.shell(FLIP4, "ls /data/local/tmp").stdout.split() == ["x.bin"]
    assert adb.shell(NEXUS5, "ls /data/local/tmp").stdout.split() == []  # per-phone storage

    phones.gone_file(FLIP4).touch()
    assert [d.serial for d in adb.devices()] == [NEXUS5]
    with pytest.raises(PhoneGone, match=f"phone {FLIP4} is not connected"):
        adb.getprop(FLIP4)
    assert adb.is_gone(FLIP4) and not adb.is_gone(NEXUS5)

    start = time.monotonic()
    with pytest.raises(AdbTimeout, match=f"on phone {NEXUS5} did not finish within 0.5s"):
        adb.shell(NEXUS5, "sleep 30", timeout_s=0.5)
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    with pytest.raises(Cancelled):
        adb.shell(NEXUS5, "sleep 30", cancel=cancel)
    assert time.monotonic() - start < 10
    with pytest.raises(Exception, match="cannot run adb"):
        Adb(str(tmp_path / "no-adb")).devices()


def test_phone_registration_and_big_core_mask(
    phones: FakePhones, settings: AndroidSettings
) -> None:
    adb = Adb(settings.adb)
    flip, nexus = Phone(adb, FLIP4, settings), Phone(adb, NEXUS5, settings)
    body = flip.registration()
    assert flip.name() == f"SM-F721B-{FLIP4}" and nexus.name() == f"Nexus_5-{NEXUS5}"
    assert body["class"] == "phone" and body["runtimes"] == {"tflite": "benchmark_model"}
    assert body["attributes"] == {
        "soc": "SM8475", "model": "SM-F721B", "android": "13", "abi": "arm64-v8a",
        "serial": FLIP4, "os": "android",
    }  # fmt: skip
    assert body["info"]["logical_cores"] == 8 and body["info"]["soc_source"] == "ro.soc.model"
    attrs = nexus.registration()["attributes"]
    assert (attrs["soc"], attrs["android"], attrs["abi"]) == ("msm8974", "5.1", "armeabi-v7a")
    # 4 LITTLE (1.8 GHz) + 3 big + 1 prime: the big cores are 4-7; one cluster: no taskset
    assert flip.cpu_mask(None, 4) == ("f0", "big cores [4, 5, 6, 7] (cpuinfo_max_freq)")
    assert flip.cpu_mask(None, 8)[0] is None
    assert flip.cpu_mask("0x80", 1)[0] == "80" and flip.cpu_mask("all", 1)[0] is None
    assert nexus.cpu_mask(None, 1)[0] is None
    with pytest.raises(ValueError, match="not a hex mask"):
        flip.cpu_mask("big", 1)
    snap = flip.thermal()  # dumpsys thermalservice + sysfs zones
    assert snap["status"] == 0 and snap["temperatures_c"]["CPU0"] == 37.0
    assert snap["zones_c"]["cpu-1-0"] == 37.0 and snap["hottest_c"] == 37.0
    assert "status" not in nexus.thermal()  # Android 5.1: sysfs only


def _ordered(lat: Any) -> bool:
    """The printed statistics are consistent with each other (unprinted ones are null)."""
    seq = [lat.min, lat.p50, lat.p90, lat.p95, lat.p99, lat.max]
    known = [v for v in seq if v is not None]
    return known == sorted(known) and (lat.min is None or lat.min <= lat.mean)


# ------------------------------------------------------------------ the Measurer
def test_measure_a_tflite_on_a_fake_phone(
    phones: FakePhones, settings: AndroidSettings, tflite_model: Path, tmp_path: Path
) -> None:
    measurer = PhoneMeasurer(Adb(settings.adb), FLIP4, settings)
    events: list[dict[str, Any]] = []
    r = measurer(_spec(tflite_model), workdir=tmp_path, on_progress=events.append)
    assert r.status == "succeeded", r.error
    lat = r.latency_ms
    assert lat is not None and lat.mean > 0
    assert _ordered(lat)
    assert lat.p50 is not None and lat.p99 is None  # litert-benchmark prints a median, no p99
    assert r.runs == FAST["min_runs"]  # the stand-in's tool has no --min_secs
    assert r.load_ms and r.load_ms > 0 and r.first_inference_ms and r.first_inference_ms > 0
    assert r.times_ms == [] and r.warmup_ms == []  # never fabricated
    env = r.environment
    assert env["raw_times"] == RAW_TIMES_NOTE
    assert env["latency_stats_source"]["p50"] == "tool"  # litert-benchmark prints a median
    assert env["latency_stats_source"]["p99"] == "not printed by the tool"
    assert (env["soc"], env["android_version"], env["cpu_mask"]) == ("SM8475", "13", "f0")
    assert env["thermal_before"]["status_name"] == "NONE" and env["thermal_after"]["hottest_c"]
    assert env["cooldown"]["max_temp_c"] == 45.0 and "waited_s" in env["cooldown"]
    assert env["profile_error"] == "the tool printed no op-profiling table"
    assert [e["phase"] for e in events] == ["push", "steady", "profile"]

    calls = phones.calls(FLIP4)
    runs = [c for c in calls if "taskset" in c]
    assert [c["taskset"] for c in runs] == ["f0", "f0"]
    assert "--enable_op_profiling=false" in runs[0]["shell"]
    assert "--max_secs=2" in runs[0]["shell"] and "--use_xnnpack=true" in runs[0]["shell"]
    assert "--enable_op_profiling=true" in runs[1]["shell"]
    pushes = [c["push"][1] for c in calls if "push" in c]
    assert pushes[0] == "/data/local/tmp/benchmark_model" and pushes[1].endswith(".tflite")
    assert any(c.get("shell", "").startswith("rm -f /data/local/tmp/latencylab-") for c in calls)

    again = measurer(_spec(tflite_model, profile=False), workdir=tmp_path)
    assert again.status == "succeeded", again.error
    pushes = [c["push"][1] for c in phones.calls(FLIP4) if "push" in c]
    assert pushes.count("/data/local/tmp/benchmark_model") == 1  # once per phone
    assert list((phones.root / FLIP4 / "fs/data/local/tmp").iterdir()) == [
        phones.root / FLIP4 / "fs/data/local/tmp/benchmark_model"
    ]


def test_a_phone_that_disconnects_mid_run_fails_cleanly(
    phones: FakePhones, settings: AndroidSettings, tflite_model: Path, tmp_path: Path
) -> None:
    phones.set(FLIP4, disconnect_on_benchmark=0)
    adb = Adb(settings.adb)
    r = PhoneMeasurer(adb, FLIP4, settings)(_spec(tflite_model), workdir=tmp_path)
    assert r.status == "failed" and r.latency_ms is None
    assert r.error and r.error.startswith(f"phone {FLIP4} disconnected during the run")
    ok = PhoneMeasurer(adb, NEXUS5, settings)(_spec(tflite_model), workdir=tmp_path)
    assert ok.status == "succeeded", ok.error


def test_setup_errors_say_what_to_do(
    phones: FakePhones, settings: AndroidSettings, tflite_model: Path, tmp_path: Path
) -> None:
    adb = Adb(settings.adb)
    bare = settings.model_copy(update={"benchmark_model": None})
    r = PhoneMeasurer(adb, NEXUS5, bare)(_spec(tflite_model), workdir=tmp_path)
    assert r.status == "failed" and "benchmark_model is not on phone" in (r.error or "")
    assert "LATENCYLAB_ANDROID_BENCHMARK_MODEL" in (r.error or "")
    m = PhoneMeasurer(adb, NEXUS5, settings)
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"\x08\x07not a flatbuffer")
    bad = _spec(tflite_model).model_copy(update={"model_path": str(onnx), "model_format": "onnx"})
    assert "needs a .tflite artifact" in (m(bad, workdir=tmp_path).error or "")
    ort = _spec(tflite_model).model_copy(update={"runtime": "onnxruntime"})
    assert "runtime 'tflite' only" in (m(ort, workdir=tmp_path).error or "")
    weird = _spec(tflite_model, options={"delegate": "tpu"})
    assert "unknown delegate 'tpu'" in (m(weird, workdir=tmp_path).error or "")
    gone = PhoneMeasurer(adb, "NOSUCHPHONE", settings)(_spec(tflite_model), workdir=tmp_path)
    assert "phone NOSUCHPHONE" in (gone.error or "")


def test_a_run_past_its_timeout_is_killed_and_fails(
    phones: FakePhones, settings: AndroidSettings, tflite_model: Path, tmp_path: Path
) -> None:
    spec = _spec(tflite_model, min_runs=1_000_000, max_runs=1_000_000, timeout_s=4, profile=False)
    start = time.monotonic()
    r = PhoneMeasurer(Adb(settings.adb), NEXUS5, settings)(spec, workdir=tmp_path)
    assert r.status == "failed" and "did not finish within" in (r.error or ""), r.error
    assert time.monotonic() - start < 20
    leftover = subprocess.run(["pgrep", "-f", str(phones.root / NEXUS5)], capture_output=True)
    assert leftover.returncode == 1, leftover.stdout  # the tool was killed with adb


def test_cool_down_waits_until_the_phone_is_cool(
    phones: FakePhones, settings: AndroidSettings, tflite_model: Path, tmp_path: Path
) -> None:
    adb = Adb(settings.adb)
    Phone(adb, NEXUS5, settings).thermal()  # builds the fake sysfs
    phones.zone_temp(NEXUS5, 1, 61000)  # tsens_tz_sensor5: hot
    seen: list[dict[str, Any]] = []

    def on_progress(event: dict[str, Any]) -> None:
        seen.append(event)
        if event.get("temp_c") == 61.0:  # it waits: let the phone cool
            phones.zone_temp(NEXUS5, 1, 39000)

    spec = _spec(tflite_model, profile=False, options={"max_temp_c": 45, "cooldown_s": 0.2})
    r = PhoneMeasurer(adb, NEXUS5, settings)(spec, workdir=tmp_path, on_progress=on_progress)
    assert r.status == "succeeded", r.error
    cool = r.environment["cooldown"]
    assert (cool["fixed_s"], cool["start_c"], cool["end_c"]) == (0.2, 61.0, 39.0)
    assert cool["waited_s"] >= 0.3 and "timed_out" not in cool  # fixed 0.2 s + a 0.1 s poll
    assert {"phase": "cooldown", "wait_s": 0.2} in seen
    assert r.environment["thermal_before"]["zones_c"]["tsens_tz_sensor5"] == 61.0


# ------------------------------------------------------------------ output conversion
@pytest.mark.parametrize(
    ("name", "runs", "profile_rows", "memory_key"),
    [
        ("tf-readme-op-profiling-mobilenet-quant-v1-old-format.txt", 50, 31, None),
        ("tf2.3-era-android-cpu-op-profiling-head-tf-issue42507.txt", 50, 0, "overall_peak_mb"),
        ("tf2.x-android-gpu-opencl-adb-tf-issue43541.txt", 50, 0, None),
        ("litert-2.1.5-compiledmodel-benchmark-results-mlcommons-issue1134.txt", 10, 0,
         "overall_footprint_mb"),
    ],
)  # fmt: skip
def test_device_outputs_become_measure_results(
    name: str, runs: int, profile_rows: int, memory_key: str | None
) -> None:
    parsed = parse_tflite_benchmark(read("tflite_benchmark_model", name))
    r = to_result(parsed, parsed, _spec(FIXTURES))
    lat = r.latency_ms
    assert r.status == "succeeded" and r.runs == runs and lat is not None
    assert _ordered(lat)
    assert lat.mean == parsed.inference.avg_ms  # type: ignore[union-attr]
    src = r.environment["latency_stats_source"]
    for field in ("p50", "p90", "p95", "p99", "min", "max", "std"):  # never estimated
        assert (getattr(lat, field) is None) == (src[field] == "not printed by the tool"), field
    assert r.load_ms == parsed.init_ms and r.times_ms == []
    assert len(r.profile) == profile_rows
    if profile_rows:
        assert r.profile[0].type == "CONV_2D" and r.profile[0].compute_unit == "cpu"
        assert r.profile[0].time_ms == pytest.approx(4.269)
    if memory_key:
        assert r.memory[memory_key] > 0


def test_output_without_timed_runs_is_an_error() -> None:
    parsed = parse_tflite_benchmark(
        read("tflite_benchmark_model", "tf2.7-era-android-cpu-summary-by-node-type-fragment"
             "-tf-issue53138.txt")
    )  # fmt: skip
    with pytest.raises(ValueError, match="no timed runs"):
        to_result(parsed, None, _spec(FIXTURES))


# ------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def coordinator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A real coordinator subprocess (SQLite), with no agent of its own."""
    data_dir = tmp_path_factory.mktemp("android-coordinator")
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
        with httpx.Client(base_url=f"{url}/api/v1", headers=_auth(admin)) as c:
            tokens = {
                scope: c.post("/tokens", json={"scope": scope, "name": f"android {scope}"}).json()
                for scope in ("user", "agent")
            }
        yield {"url": url, "user": tokens["user"]["token"], "agent": tokens["agent"]["token"]}
    finally:
        _stop(server)


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def host(
    coordinator: dict[str, str], phones: FakePhones, tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m agents.android.host`` serving the two fake phones."""
    env = _env({**AGENT_ENV, "FAKE_ADB_CONFIG": str(phones.config),
                "LATENCYLAB_ADB": str(FAKE_ADB), "LATENCYLAB_ANDROID_POLL_INTERVAL_S": "0.5",
                "LATENCYLAB_ANDROID_COOLDOWN_POLL_S": "0.1"})  # fmt: skip
    argv = [sys.executable, "-m", "agents.android.host", "--server", coordinator["url"],
            "--token", coordinator["agent"], "--data-dir", str(tmp_path / "host"),
            "--benchmark-model", str(phones.binary)]  # fmt: skip
    log = tmp_path / "host.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        _stop(proc)
        print(log.read_text()[-5000:])


def _devices(coordinator: dict[str, str]) -> dict[str, dict[str, Any]]:
    r = httpx.get(f"{coordinator['url']}/api/v1/devices", headers=_auth(coordinator["user"]))
    return {d["name"]: d for d in r.raise_for_status().json()}


def _wait_status(coordinator: dict[str, str], want: dict[str, str], timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        devices = _devices(coordinator)
        if all(devices.get(n, {}).get("status") == s for n, s in want.items()):
            return devices
        if time.monotonic() > deadline:
            raise AssertionError(f"devices never reached {want}: {devices}")
        time.sleep(0.3)


NAMES = {NEXUS5: f"Nexus_5-{NEXUS5}", FLIP4: f"SM-F721B-{FLIP4}"}


def test_host_registers_every_phone_and_follows_unplug_and_replug(
    coordinator: dict[str, str], phones: FakePhones, host: subprocess.Popen[bytes]
) -> None:
    devices = _wait_status(coordinator, {NAMES[NEXUS5]: "online", NAMES[FLIP4]: "online"})
    flip = devices[NAMES[FLIP4]]
    assert flip["class"] == "phone" and flip["runtimes"] == {"tflite": "benchmark_model"}
    assert flip["attributes"] == {
        "soc": "SM8475", "model": "SM-F721B", "android": "13", "abi": "arm64-v8a",
        "serial": FLIP4, "os": "android",
    }  # fmt: skip
    assert flip["info"]["manufacturer"] == "samsung" and flip["info"]["logical_cores"] == 8
    nexus = devices[NAMES[NEXUS5]]["attributes"]
    assert (nexus["soc"], nexus["android"], nexus["serial"]) == ("msm8974", "5.1", NEXUS5)

    phones.gone_file(FLIP4).touch()  # unplugged: its agent stops, it goes offline
    _wait_status(coordinator, {NAMES[FLIP4]: "offline", NAMES[NEXUS5]: "online"})
    phones.gone_file(FLIP4).unlink()  # plugged back in: served again
    _wait_status(coordinator, {NAMES[FLIP4]: "online", NAMES[NEXUS5]: "online"})
    assert host.poll() is None


def _accepts_tflite(coordinator: dict[str, str], model: Path) -> tuple[bool, dict[str, Any]]:
    with model.open("rb") as fh:
        r = httpx.post(
            f"{coordinator['url']}/api/v1/models", headers=_auth(coordinator["user"]),
            files={"file": (model.name, fh)}, timeout=60,
        )  # fmt: skip
    return r.status_code == 201, r.json()


def test_upload_a_tflite_and_benchmark_it_on_each_phone(
    coordinator: dict[str, str], phones: FakePhones, host: subprocess.Popen[bytes],
    tflite_model: Path,
) -> None:  # fmt: skip
    accepted, body = _accepts_tflite(coordinator, tflite_model)
    if not accepted:
        pytest.skip(f"the coordinator does not accept .tflite uploads yet: {body}")
    from latencylab import Client

    _wait_status(coordinator, {NAMES[NEXUS5]: "online", NAMES[FLIP4]: "online"})
    with Client(server=coordinator["url"], token=coordinator["user"]) as c:
        targets = [{"runtime": "tflite", "device": f"class:phone,serial:{s}"} for s in NAMES]
        done = c.wait(c.benchmark(body["id"], targets, FAST).id, timeout=180)
        assert done.status == "succeeded", done.jobs
        by_device = {r.device: r for r in done.results}
        assert set(by_device) == set(NAMES.values())
        for r in by_device.values():
            assert r.latency_ms and r.latency_ms.mean > 0 and r.runs == FAST["min_runs"]
            assert r.environment["raw_times"] == RAW_TIMES_NOTE

        phones.set(FLIP4, disconnect_on_benchmark=0)  # unplugged while it measures
        targets = [{"runtime": "tflite", "device": name} for name in NAMES.values()]
        done = c.wait(c.benchmark(body["id"], targets, FAST).id, timeout=180)
        by_device = {r.device: r for r in done.results}
        assert by_device[NAMES[NEXUS5]].status == "succeeded"
        flip = by_device[NAMES[FLIP4]]
        assert flip.status == "failed" and "disconnected during the run" in (flip.error or "")
