"""trtexec log / --exportTimes / --exportProfile parsers against shared/fixtures/trtexec/."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.parsers.trtexec import (
    decode_trt_version,
    parse_export_profile,
    parse_export_times,
    parse_trtexec_log,
    summarize_export_times,
)
from tests.shared_fixtures import FIXTURES, listing, read

FOLDER = FIXTURES / "trtexec"
METRICS = ["Latency", "Enqueue Time", "H2D Latency", "GPU Compute Time", "D2H Latency"]


def _listing() -> list:
    return listing("trtexec")


def _read(name: str) -> str:
    return read("trtexec", name)


@pytest.mark.parametrize("path", _listing(), ids=lambda p: getattr(p, "name", "missing"))
def test_every_fixture_parses(path: Path) -> None:
    text = path.read_bytes().decode("utf-8")
    if path.name.startswith("export-profile"):
        assert parse_export_profile(text).layers
    elif path.name.startswith("export-times"):
        assert parse_export_times(text)
    elif path.suffix == ".txt":
        result = parse_trtexec_log(text)
        assert result.has_summary and result.throughput_qps
        for name in METRICS:
            stats = result.metrics[name]
            assert stats.min_ms <= stats.median_ms <= stats.max_ms
            assert 99.0 in stats.percentiles_ms
        assert result.total_host_walltime_s and result.total_gpu_compute_time_s
    else:
        pytest.fail(f"no parser wired for new trtexec fixture {path.name}")


def test_trt10_summary_with_percentiles_and_status() -> None:
    r = parse_trtexec_log(_read("trt10.13-qwen-image-dit-bf16-summary.txt"))
    assert r.status == "PASSED"
    assert (r.tensorrt_version, r.tensorrt_version_tag, r.build) == ("10.13.0", "v101300", "b35")
    assert r.command is not None and r.command.startswith("trtexec --onnx=transformer_step2.onnx")
    assert r.throughput_qps == pytest.approx(0.562059)
    assert r.latency is not None and r.latency.median_ms == pytest.approx(1667.89)
    assert r.latency.percentiles_ms == {90.0: 1673.26, 95.0: 1674.64, 99.0: 1674.64}
    assert r.gpu_compute is not None and r.gpu_compute.mean_ms == pytest.approx(1666.2)
    assert r.metrics["D2H Latency"].min_ms == pytest.approx(0.0585938)
    assert r.total_host_walltime_s == pytest.approx(17.7917)
    assert r.total_gpu_compute_time_s == pytest.approx(16.662)
    assert len(r.warnings) == 1 and r.warnings[0].startswith("Throughput may be bound by Enqueue")
    assert "--useCudaGraph" in r.warnings[0]  # continuation line joined
    assert not r.unstable


def test_trt84_xavier() -> None:
    r = parse_trtexec_log(_read("trt8.4.0-jetson-agx-xavier-mnist-summary.txt"))
    assert (r.status, r.tensorrt_version) == ("PASSED", "8.4.0")
    assert r.command == "trtexec --loadEngine=mnist16.trt --batch=16"
    assert r.throughput_qps == pytest.approx(41087.7)
    assert r.enqueue is not None and r.enqueue.percentiles_ms == {99.0: pytest.approx(0.126099)}
    assert r.gpu_compute is not None and r.gpu_compute.median_ms == pytest.approx(0.388443)


def test_trt8_xavier_nx_end_to_end_host_latency() -> None:
    r = parse_trtexec_log(_read("trt8.x-jetson-xavier-nx-mnist-summary-partial.txt"))
    assert r.status is None and r.tensorrt_version is None  # partial: no &&&& line
    assert r.end_to_end_host is not None
    assert r.end_to_end_host.median_ms == pytest.approx(0.585938)
    assert r.throughput_qps == 27207.0
    assert r.total_host_walltime_s == pytest.approx(3.00158)  # after the timestamp tick


def test_trt8_yolov7_instability_warning() -> None:
    r = parse_trtexec_log(_read("trt8.x-yolov7-pr329-summary-with-warnings.txt"))
    assert r.coefficient_of_variance_pct == pytest.approx(2.10486)
    assert r.unstable
    assert r.warnings[0].startswith("GPU compute time is unstable")
    assert r.metrics["H2D Latency"].max_ms == 0.0
    assert r.latency is not None and r.latency.median_ms == pytest.approx(1.38037)


def test_separate_warnings_are_not_merged() -> None:
    text = _read("trt8.x-yolov7-pr329-summary-with-warnings.txt")
    build = "[07/28/2022-16:00:40] [W] [TRT] Some build-phase warning\n"
    r = parse_trtexec_log(build + text)
    assert len(r.warnings) == 2 and r.warnings[0] == "[TRT] Some build-phase warning"
    assert r.warnings[1].endswith("may improve the stability.")


def test_trt_2024_percentiles() -> None:
    r = parse_trtexec_log(_read("trt-2024-percentiles-90-95-99-TensorRT-issue4177-summary.txt"))
    assert r.latency is not None and r.latency.median_ms == pytest.approx(7.16092)
    assert r.latency.percentiles_ms[95.0] == pytest.approx(10.8698)
    assert r.enqueue is not None and r.enqueue.max_ms == pytest.approx(15.0201)


def test_export_times() -> None:
    times = parse_export_times(_read("export-times-mobilenet-qat-trex-test-input-first10.json"))
    assert len(times) == 10
    assert times[0].latency_ms == pytest.approx(0.459041)
    assert times[0].start_enqueue_ms == pytest.approx(12.6384)
    assert times[4].compute_ms == pytest.approx(0.900864)
    assert times[0].raw["endD2hMs"] == pytest.approx(12.9989)
    stats = summarize_export_times(times)
    assert stats.max_ms == pytest.approx(0.900864) and stats.min_ms == pytest.approx(0.442369)
    assert stats.percentiles_ms[90.0] == pytest.approx(0.459041)  # nearest rank, 9th of 10


def test_export_profile() -> None:
    profile = parse_export_profile(_read("export-profile-mobilenet-qat-trex-test-input.json"))
    assert profile.count == 4216
    assert len(profile.layers) == 85
    first = profile.layers[0]
    assert (first.name, first.time_ms, first.average_ms, first.percentage) == (
        "QuantizeLinear_2",
        51.4526,
        0.0122041,
        1.88608,
    )
    assert first.median_ms is None
    assert sum(layer.percentage for layer in profile.layers) == pytest.approx(100.0, abs=1e-3)


def test_version_decoding_and_errors() -> None:
    assert decode_trt_version(8601) == "8.6.1"
    assert decode_trt_version(100300) == "10.3.0"
    with pytest.raises(ValueError, match="Performance summary"):
        parse_trtexec_log("[03/11/2022-14:57:03] [I] hello\n")
    line = "[03/11/2022-14:57:03] [I] Latency: min = 1 ms, max = oops"
    with pytest.raises(ValueError, match="oops"):
        parse_trtexec_log("[03/11/2022-14:57:03] [I] === Performance summary ===\n" + line)
    with pytest.raises(ValueError, match="JSON"):
        parse_export_profile("[ { ")
