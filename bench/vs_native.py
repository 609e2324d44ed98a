"""Fidelity against each runtime's own benchmark tool: same model, same threads, one run.

  TFLite:   A = LatencyLab (``run_isolated``, TFLite runner: Interpreter + XNNPACK)
            B = the ``litert-benchmark`` CLI shipped in the ai-edge-litert wheel (its median;
                it runs the LiteRT CompiledModel API on the CPU accelerator, i.e. XNNPACK)
  OpenVINO: A = LatencyLab (``run_isolated``, OpenVINO runner, CPU, LATENCY hint, f32)
            B = ``benchmark_app`` shipped in the openvino wheel (sync API, same properties
                through ``-load_config``; its median of the runtime's own per-request latency)

A and B alternate (A/B, then B/A, ...) for a few rounds so machine drift hits both sides.
Prints medians and ratios A/B and writes ``bench/results/vs_native.json``.

    python -m bench.vs_native [--threads 1] [--rounds 3] [--duration 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agents.measure import run_isolated
from agents.measure.environment import cpu_model
from bench import models
from bench.common import fixed_duration
from latencylab.schemas import MeasureSpec

RESULTS = Path(__file__).resolve().parent / "results"
BIN = Path(sys.executable).parent


def torch_mobilenet_v2(resolution: int) -> Any:
    """The ``bench.models.mobilenet_v2_like`` layout as a torch module (NHWC I/O for TFLite)."""
    import litert_torch
    import torch
    from torch import nn

    def conv(cin: int, cout: int, k: int, s: int = 1, groups: int = 1, act: bool = True) -> Any:
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups)]
        return nn.Sequential(*layers, nn.ReLU6()) if act else layers[0]

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int, t: int) -> None:
            super().__init__()
            hidden = cin * t
            layers = [conv(cin, hidden, 1)] if t != 1 else []
            layers += [conv(hidden, hidden, 3, stride, hidden), conv(hidden, cout, 1, act=False)]
            self.body = nn.Sequential(*layers)
            self.residual = stride == 1 and cin == cout

        def forward(self, x: Any) -> Any:
            return x + self.body(x) if self.residual else self.body(x)

    torch.manual_seed(0)
    cfg = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2)]
    cfg += [(6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
    layers: list[nn.Module] = [conv(3, 32, 3, 2)]
    cin = 32
    for t, c, n, s in cfg:
        for i in range(n):
            layers.append(Block(cin, c, s if i == 0 else 1, t))
            cin = c
    layers += [conv(cin, 1280, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1280, 1000)]
    net = nn.Sequential(*layers).eval()
    return litert_torch.to_channel_last_io(net, args=[0]), (
        torch.randn(1, resolution, resolution, 3),
    )


def build_tflite(path: Path, resolution: int) -> Path:
    import litert_torch

    net, sample = torch_mobilenet_v2(resolution)
    litert_torch.convert(net, sample).export(str(path))
    return path


def latencylab(spec: MeasureSpec, workdir: Path) -> dict[str, Any]:
    res = run_isolated(spec, workdir=workdir)
    if res.status != "succeeded" or res.latency_ms is None:
        raise RuntimeError(f"LatencyLab measurement failed: {res.error}")
    env = res.environment
    keep = ("xnnpack_applied", "inference_precision_hint", "inference_num_threads", "num_threads")
    return {
        "median_ms": res.latency_ms.p50,
        "runs": res.runs,
        "stop_reason": res.stop_reason,
        **{k: env[k] for k in keep if k in env},
    }


def litert_benchmark(model: Path, threads: int, runs: int, tmp: Path) -> dict[str, Any]:
    out = tmp / "litert.json"
    cmd = [str(BIN / "litert-benchmark"), f"--model={model}", f"--num_threads={threads}"]
    cmd += [f"--num_runs={runs}", "--warmup_runs=10", f"--result_json={out}"]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    lat = json.loads(out.read_text())["latency"]
    return {"median_ms": lat["median_ms"], "runs": lat["num_runs"], "avg_ms": lat["avg_ms"]}


def benchmark_app(model: Path, threads: int, duration: float, tmp: Path) -> dict[str, Any]:
    cfg, folder = tmp / "ov_config.json", tmp / "ov_report"
    folder.mkdir(exist_ok=True)
    props = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    if threads:
        props["INFERENCE_NUM_THREADS"] = str(threads)
    cfg.write_text(json.dumps({"CPU": props}))
    cmd = [str(BIN / "benchmark_app"), "-m", str(model), "-d", "CPU", "-hint", "latency"]
    cmd += ["-load_config", str(cfg), "-api", "sync", "-t", f"{duration:g}"]
    cmd += ["-report_type", "no_counters", "-json_stats", "-report_folder", str(folder)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    ex = json.loads((folder / "benchmark_report.json").read_text())["execution_results"]
    return {
        "median_ms": float(ex["latency (ms)"]),
        "runs": int(ex["total number of iterations"]),
        "avg_ms": float(ex["avg latency"]),
    }


def ab_rounds(
    name: str, rounds: int, a: Callable[[], dict[str, Any]], b: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    out = []
    for r in range(rounds):
        first, second = (a, b) if r % 2 == 0 else (b, a)
        x, y = first(), second()
        ra, rb = (x, y) if r % 2 == 0 else (y, x)
        ratio = ra["median_ms"] / rb["median_ms"]
        out.append(
            {"latencylab": ra, "native": rb, "ratio": ratio, "order": "AB" if r % 2 == 0 else "BA"}
        )
        print(
            f"{name:9s} round {r + 1}: LatencyLab {ra['median_ms']:.3f} ms  native "
            f"{rb['median_ms']:.3f} ms  ratio {ratio:.3f}",
            flush=True,
        )
    a_med = statistics.median(x["latencylab"]["median_ms"] for x in out)
    b_med = statistics.median(x["native"]["median_ms"] for x in out)
    return {
        "rounds": out,
        "latencylab_median_ms": a_med,
        "native_median_ms": b_med,
        "ratio_of_medians": a_med / b_med,
        "median_ratio": statistics.median(x["ratio"] for x in out),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--duration",
        type=int,
        default=3,
        help="steady-state seconds per side (benchmark_app's -t takes whole seconds)",
    )
    ap.add_argument("--quick", action="store_true", help="128x128 input, for a smoke run")
    ap.add_argument("--out", type=Path, default=RESULTS / "vs_native.json")
    args = ap.parse_args()
    res = 128 if args.quick else 224
    settings = fixed_duration(args.duration)
    report: dict[str, Any] = {
        "what": "median latency: LatencyLab (run_isolated) vs the runtime's own benchmark tool",
        "model": f"mobilenet_v2_like@{res} (random weights, fp32, batch 1)",
        "threads": args.threads,
        "rounds": args.rounds,
        "duration_s": args.duration,
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "runtimes": {},
        "notes": [],
    }
    with tempfile.TemporaryDirectory(prefix="vs-native-") as tmp_s:
        tmp = Path(tmp_s)
        tfl = build_tflite(tmp / "mbv2.tflite", res)
        spec = MeasureSpec(
            runtime="tflite", model_path=str(tfl), model_format="tflite", inputs=[],
            threads=args.threads, settings=settings,
        )  # fmt: skip
        est = {"p50": 10.0}

        def tfl_a() -> dict[str, Any]:
            out = latencylab(spec, tmp / "work")
            est["p50"] = out["median_ms"]
            return out

        def tfl_b() -> dict[str, Any]:
            runs = int(min(5000, max(50, args.duration * 1000 / est["p50"])))
            return litert_benchmark(tfl, args.threads, runs, tmp)

        report["runtimes"]["tflite"] = ab_rounds("tflite", args.rounds, tfl_a, tfl_b)
        report["runtimes"]["tflite"]["native_tool"] = "litert-benchmark (ai-edge-litert wheel)"
        report["notes"].append(
            "litert-benchmark reports its median rounded to 0.01 ms and runs the CompiledModel "
            "API; LatencyLab's TFLite runner times Interpreter.invoke() (XNNPACK)."
        )
        onnx_path = models.save(models.mobilenet_v2_like(res), tmp / "mbv2.onnx")
        ov_spec = spec.model_copy(
            update={"runtime": "openvino", "model_path": str(onnx_path), "model_format": "onnx"}
        )
        if shutil.which(str(BIN / "benchmark_app")) is None:
            report["notes"].append("benchmark_app not found next to this Python: OpenVINO skipped")
        else:
            report["runtimes"]["openvino"] = ab_rounds(
                "openvino",
                args.rounds,
                lambda: latencylab(ov_spec, tmp / "work"),
                lambda: benchmark_app(onnx_path, args.threads, args.duration, tmp),
            )
            report["runtimes"]["openvino"]["native_tool"] = "benchmark_app (openvino wheel)"
            report["notes"].append(
                "benchmark_app's median is of InferRequest.latency (the runtime's own timer, "
                "C++ side); LatencyLab times InferRequest.infer() from Python."
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print("\nruntime   LatencyLab ms  native ms  ratio of medians  median ratio")
    for name, r in report["runtimes"].items():
        print(
            f"{name:9s} {r['latencylab_median_ms']:13.3f} {r['native_median_ms']:10.3f} "
            f"{r['ratio_of_medians']:17.3f} {r['median_ratio']:13.3f}"
        )
    print(f"report: {args.out}")


if __name__ == "__main__":
    main()
