"""TFLite benchmark_model / LiteRT parser against shared/fixtures/tflite_benchmark_model/."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.parsers.tflite_benchmark import parse_tflite_benchmark
from tests.shared_fixtures import FIXTURES, listing, read

FOLDER = FIXTURES / "tflite_benchmark_model"


def _listing() -> list:
    return listing("tflite_benchmark_model")


def _read(name: str) -> str:
    return read("tflite_benchmark_model", name)


@pytest.mark.parametrize("path", _listing(), ids=lambda p: getattr(p, "name", "missing"))
def test_every_fixture_parses(path: Path) -> None:
    r = parse_tflite_benchmark(path.read_bytes().decode("utf-8"))
    has_timing = r.inference_avg_ms is not None or r.warmup is not None
    has_table = bool(r.op_profile or r.top_ops or r.node_type_summary)
    assert has_timing or has_table
    for row in r.op_profile + r.top_ops:
        assert row.name and row.type and row.time_ms >= 0 and 0 <= row.percentage <= 100


def test_readme_old_format_tables_and_summary() -> None:
    r = parse_tflite_benchmark(_read("tf-readme-op-profiling-mobilenet-quant-v1-old-format.txt"))
    assert len(r.op_profile) == 31 and len(r.top_ops) == 10 and len(r.node_type_summary) == 5
    first = r.op_profile[0]
    assert (first.name, first.type) == ("MobilenetV1/MobilenetV1/Conv2d_0/Relu6", "CONV_2D")
    assert (first.time_ms, first.percentage, first.times_called) == (4.269, 0.107, 0)
    assert first.start_ms == 0.0 and r.op_profile[1].start_ms == pytest.approx(4.270)
    assert r.top_ops[0].name.endswith("Conv2d_3_pointwise/Relu6") and r.top_ops[0].time_ms == 6.652
    conv = r.node_type_summary[0]
    assert (conv.type, conv.count, conv.time_ms, conv.percentage) == ("CONV_2D", 15, 1.406, 89.27)
    assert r.nodes_executed == 31
    # "Average inference timings in us: Warmup: 83235, Init: 38467, Inference: 79760.9"
    assert r.warmup_avg_ms == pytest.approx(83.235)
    assert r.init_ms == pytest.approx(38.467)
    assert r.inference_avg_ms == pytest.approx(79.7609)
    # "Timings (microseconds): count=50 first=79449 curr=81350 min=77385 max=88213 ..."
    assert r.profiler_timings is not None and r.profiler_timings.count == 50
    assert r.inference is not None and r.inference.avg_ms == pytest.approx(79.732)
    assert r.inference.std_ms == pytest.approx(1.929)


def test_nnapi_run_order_node_index_suffix() -> None:
    r = parse_tflite_benchmark(
        _read("android-nnapi-op-profiling-run-order-deeplabv3-freedomtan.txt")
    )
    assert len(r.op_profile) == 8
    row = r.op_profile[0]
    assert row.type == "TfLiteNnapiDelegate"
    assert row.name == "MobilenetV2/expanded_conv_16/project/add_fold, aspp0/Relu"
    assert (row.node_index, row.time_ms, row.percentage, row.times_called) == (
        71,
        11.422,
        21.939,
        1,
    )
    assert r.op_profile[-1].name == "ArgMax" and r.op_profile[-1].cdf_percentage == 100.0


def test_headerless_fragment() -> None:
    r = parse_tflite_benchmark(_read("android-pixel-op-profiling-fragment-tf-issue23131.txt"))
    assert len(r.op_profile) == 8 and r.top_ops == []
    assert r.op_profile[-1].name == "MobilenetV2/Predictions/Reshape_1"
    assert r.op_profile[2].time_ms == 4.249 and r.op_profile[2].start_ms == 81.963
    assert r.op_profile[0].times_called == 1


def test_summary_by_node_type_long_name() -> None:
    r = parse_tflite_benchmark(
        _read("tf2.7-era-android-cpu-summary-by-node-type-fragment-tf-issue53138.txt")
    )
    assert r.nodes_executed == 64
    post = r.node_type_summary[2]
    assert (post.type, post.count, post.time_ms, post.percentage) == (
        "TFLite_Detection_PostProcess",
        1,
        3.579,
        1.009,
    )
    assert r.node_type_summary[0].times_called == 34


def test_tf23_warmup_inference_and_peak_memory() -> None:
    r = parse_tflite_benchmark(_read("tf2.3-era-android-cpu-op-profiling-head-tf-issue42507.txt"))
    assert r.flags["Num threads"] == "4" and r.flags["Enable op profiling"] == "1"
    assert r.model_size_mb == pytest.approx(0.004448)
    assert r.init_ms == pytest.approx(0.855)
    assert r.warmup is not None and r.warmup.count == 15
    assert r.warmup_first_ms == pytest.approx(49.06)
    assert r.inference is not None and r.inference.count == 50
    assert (r.inference.min_ms, r.inference.max_ms) == (
        pytest.approx(32.641),
        pytest.approx(34.005),
    )
    assert r.inference_avg_ms == pytest.approx(33.2094)
    assert (r.memory_kind, r.memory_init_mb, r.memory_overall_mb) == ("peak", 0.0, 12.8672)
    assert r.init_op_profile == [] and r.op_profile == []  # header row only


def test_gpu_opencl_mixed_info_prefixes() -> None:
    r = parse_tflite_benchmark(_read("tf2.x-android-gpu-opencl-adb-tf-issue43541.txt"))
    assert r.flags["Use gpu"] == "1"
    assert r.init_ms == pytest.approx(870.557)
    assert r.warmup_first_ms == pytest.approx(130.565)
    assert r.warmup_avg_ms == pytest.approx(122.373)
    assert r.inference is not None and r.inference.avg_ms == pytest.approx(119.375)
    assert r.inference.std_ms == pytest.approx(1.948)


def test_memory_delta_wording() -> None:
    r = parse_tflite_benchmark(_read("tf2.x-timings-and-memory-delta-google-research-issue802.txt"))
    assert r.init_ms == pytest.approx(17.851)
    assert r.warmup_first_ms == pytest.approx(2.104)
    assert r.inference_avg_ms == pytest.approx(1.03966)
    assert (r.memory_kind, r.memory_init_mb, r.memory_overall_mb) == ("delta", 10.7383, 12.1055)


def test_tf1_no_stats_runs() -> None:
    tail = parse_tflite_benchmark(_read("tf1.x-era-android-arm64-yuenshome-issue77-run1-tail.txt"))
    assert tail.init_ms == pytest.approx(9.933)
    assert tail.warmup is not None and tail.warmup.count == 7
    assert tail.inference is not None and tail.inference.count == 15
    assert tail.inference.std_ms == pytest.approx(0.039)
    assert tail.inference_avg_ms == pytest.approx(66.7676)  # the "no stats:" value
    head = parse_tflite_benchmark(_read("tf1.x-era-android-arm64-yuenshome-issue77-run2-head.txt"))
    assert head.flags["Use nnapi"] == "0" and head.flags["Num threads"] == "2"
    assert head.warmup is not None and head.warmup.avg_ms == pytest.approx(37.6257)
    assert head.inference is None  # cut off before the timed runs
    # Both runs of the transcript in one text: run 2's warm-up must not become run 1's
    # (or run 2's) timed-run stats.
    both = parse_tflite_benchmark(
        _read("tf1.x-era-android-arm64-yuenshome-issue77-run1-tail.txt")
        + _read("tf1.x-era-android-arm64-yuenshome-issue77-run2-head.txt")
    )
    assert both.warmup is not None and both.warmup.count == 13
    assert both.inference is not None and both.inference.count == 15


def test_litert_compiled_model_block() -> None:
    r = parse_tflite_benchmark(
        _read("litert-2.1.5-compiledmodel-benchmark-results-mlcommons-issue1134.txt")
    )
    assert r.format == "litert_compiled_model"
    assert r.signature == "prefill_1024"
    assert r.init_ms == pytest.approx(23744.73)
    assert (r.warmup_first_ms, r.warmup_avg_ms) == (7441.04, 7441.04)
    assert r.warmup is not None and r.warmup.count == 1
    inf = r.inference
    assert inf is not None
    assert (inf.count, inf.avg_ms, inf.min_ms, inf.max_ms, inf.std_ms) == (
        10,
        7430.20,
        7416.40,
        7448.86,
        9.92,
    )
    assert r.throughput_mb_s == 27.46
    assert (r.memory_kind, r.memory_init_mb, r.memory_overall_mb) == ("footprint", 6391.74, 6391.74)
    assert r.peak_memory_mb is None  # "Peak memory usage not available."


def test_extra_key_value_lines_tolerated() -> None:
    # The Python litert-benchmark CLI adds median/p5/p95 lines to a block like the
    # LiteRT one; the parser must keep going and file them under inference.extra_ms.
    text = _read("litert-2.1.5-compiledmodel-benchmark-results-mlcommons-issue1134.txt")
    text += "Inference (median):   7429.00 ms\nSome new field: 42 widgets\n"
    r = parse_tflite_benchmark(text)
    assert r.inference is not None and r.inference.extra_ms == {"median": 7429.0}
    assert r.extra["Some new field"] == "42 widgets"


# Verbatim stdout of `.venv/bin/litert-benchmark --model m.tflite --num_runs 20
# --warmup_runs 3 --num_threads 1` (ai-edge-litert 2.3.0, this repo's venv, x86 CPU,
# 2026-11-24, a 2.7 kB test model).  The tool rounds to 0.01 ms, hence the zeros.
LITERT_PY_STDOUT = """\

========================================
 BENCHMARK RESULTS
========================================
Model initialization:  2.95 ms
Warmup (first):        0.05 ms
Warmup (avg):          0.02 ms (3 runs)
Inference (avg):       0.00 ms (20 runs)
Inference (min):       0.00 ms
Inference (max):       0.00 ms
Inference (median):    0.00 ms
Inference (std):       0.00 ms
Inference (p5):        0.00 ms
Inference (p95):       0.00 ms
Throughput:            850.49 MB/s
Fully accelerated:     True
========================================
"""


def test_python_litert_benchmark_cli_block() -> None:
    r = parse_tflite_benchmark(LITERT_PY_STDOUT)
    assert r.format == "litert_python"
    assert (r.init_ms, r.warmup_first_ms, r.warmup_avg_ms) == (2.95, 0.05, 0.02)
    assert r.warmup is not None and r.warmup.count == 3
    inf = r.inference
    assert inf is not None and inf.count == 20 and inf.avg_ms == 0.0
    assert inf.extra_ms == {"median": 0.0, "p5": 0.0, "p95": 0.0}
    assert r.throughput_mb_s == 850.49 and r.extra["Fully accelerated"] == "True"
    # stderr log lines (Python logging prefix) mixed in are tolerated and mined
    log = "2026-11-24 07:23:32 INFO benchmark_litert_model: Using signature: serving_default\n"
    log += "2026-11-24 07:23:31 INFO benchmark_litert_model: Model size:      0.00 MB\n"
    mixed = parse_tflite_benchmark(log + LITERT_PY_STDOUT)
    assert mixed.signature == "serving_default" and mixed.model_size_mb == 0.0


def test_errors_quote_the_line() -> None:
    with pytest.raises(ValueError, match="no benchmark output"):
        parse_tflite_benchmark("hello\n")
    with pytest.raises(ValueError, match="cells"):
        parse_tflite_benchmark("\tCONV_2D\t1.0\n")
