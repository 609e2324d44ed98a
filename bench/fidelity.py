"""Fidelity: LatencyLab's measured p50 vs a bare in-process ``session.run`` loop.

For each model (built in code), alternate A/B for a few rounds in one run, so that
machine drift hits both sides alike:
  A = the agent's measurement path: ``run_isolated`` (fresh subprocess, full protocol)
  B = a bare loop in this process: same model, same threads, perf_counter_ns, median
Writes ``bench/results/fidelity.json`` and prints the ratios A/B.

    python -m bench.fidelity [--threads 1] [--rounds 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from agents.measure import run_isolated
from agents.measure.environment import cpu_model
from bench import models
from bench.common import fixed_duration, onnx_inputs
from latencylab.schemas import MeasureSettings, MeasureSpec

RESULTS = Path(__file__).resolve().parent / "results"


def bare_loop(path: Path, threads: int, duration_s: float, warmup: int = 10) -> dict[str, float]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [1 if not isinstance(d, int) else d for d in inp.shape]
    feeds = {inp.name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    for _ in range(warmup):
        sess.run(None, feeds)
    times = []
    end = time.perf_counter() + duration_s
    while time.perf_counter() < end or len(times) < 20:
        t0 = time.perf_counter_ns()
        sess.run(None, feeds)
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return {"p50": statistics.median(times), "runs": len(times)}


def agent_path(
    path: Path, threads: int, settings: MeasureSettings, workdir: Path
) -> dict[str, float]:
    spec = MeasureSpec(
        runtime="onnxruntime",
        model_path=str(path),
        model_format="onnx",
        inputs=onnx_inputs(path),
        threads=threads,
        settings=settings,
    )
    res = run_isolated(spec, workdir=workdir)
    if res.status != "succeeded" or res.latency_ms is None:
        raise RuntimeError(f"measurement failed: {res.error}")
    return {"p50": res.latency_ms.p50, "runs": res.runs, "stop_reason": res.stop_reason}  # type: ignore[dict-item]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=3.0, help="steady-state seconds per side")
    ap.add_argument("--quick", action="store_true", help="small resolutions, for a smoke run")
    ap.add_argument("--out", type=Path, default=RESULTS / "fidelity.json")
    args = ap.parse_args()

    res = 128 if args.quick else 224
    zoo = {
        f"mobilenet_v2_like@{res}": models.mobilenet_v2_like(res),
        f"resnet18_like@{res}": models.resnet_like(res),
    }
    settings = fixed_duration(args.duration)
    report: dict[str, object] = {
        "what": "p50 of LatencyLab's isolated measurement (A) vs a bare in-process session.run loop (B)",
        "threads": args.threads,
        "rounds": args.rounds,
        "duration_s": args.duration,
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "models": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in zoo.items():
            path = models.save(model, Path(tmp) / f"{name}.onnx")
            rounds = []
            for r in range(args.rounds):
                a = agent_path(path, args.threads, settings, Path(tmp) / f"w{r}")
                b = bare_loop(path, args.threads, args.duration)
                rounds.append(
                    {
                        "agent_p50_ms": a["p50"],
                        "bare_p50_ms": b["p50"],
                        "ratio": a["p50"] / b["p50"],
                        "agent_runs": a["runs"],
                        "bare_runs": b["runs"],
                    }
                )
                print(
                    f"{name:28s} round {r + 1}: agent {a['p50']:.3f} ms  bare {b['p50']:.3f} ms"
                    f"  ratio {a['p50'] / b['p50']:.3f}",
                    flush=True,
                )
            ratios = [x["ratio"] for x in rounds]
            report["models"][name] = {"rounds": rounds, "median_ratio": statistics.median(ratios)}  # type: ignore[index]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print("\nmodel                        median ratio (agent / bare)")
    for name, m in report["models"].items():  # type: ignore[attr-defined]
        print(f"{name:28s} {m['median_ratio']:.3f}")
    print(f"report: {args.out}")


if __name__ == "__main__":
    main()
