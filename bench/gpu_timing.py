"""GPU timing fidelity: LatencyLab's PyTorch-on-CUDA p50 vs a bare in-process CUDA loop.

For each model (ONNX built in code, run through onnx2torch as the agent does), batch size and
precision, alternate A/B for a few rounds in one run, so that clock drift hits both sides alike:
  A = the agent's path: ``run_isolated`` (fresh subprocess, full protocol), once per CUDA
      timer (``cuda_events`` and ``sync``)
  B = a bare loop in this process: the same module on the same GPU, the same timer, median
Batch 1 of these small CNNs is bound by the host launching kernels (eager PyTorch), so it
shows the harness and the host CPU; a large batch is bound by the GPU itself. The SM clock
read through NVML right after each side is recorded, since unlocked clocks move with load.
Writes ``bench/results/gpu_timing.json`` (with the GPU's NVML facts and clock warnings).
Needs a CUDA build of torch and a GPU; run it on a GPU host:

    python -m bench.gpu_timing [--rounds 5] [--duration 2] [--models resnet18_like]
                               [--batches 1 64] [--precisions fp32 fp16]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from agents.measure import run_isolated
from agents.nvml import gpu_environment, nvml_device_info
from bench import models
from bench.common import fixed_duration, onnx_inputs
from latencylab.schemas import MeasureSettings, MeasureSpec, TensorSpec

RESULTS = Path(__file__).resolve().parent / "results"
TIMERS = ("cuda_events", "sync")
BUILDERS: dict[str, Callable[..., Any]] = {
    "resnet18_like": models.resnet_like,
    "mobilenet_v2_like": models.mobilenet_v2_like,
}


def sm_clock_mhz() -> int | None:
    """The SM clock now (NVML), or None where NVML cannot be read."""
    try:
        return nvml_device_info(0)["clocks"].get("sm_mhz")
    except RuntimeError:
        return None


def bare_loop(
    path: Path, shape: list[int], precision: str, timer: str, duration_s: float, warmup: int = 20
) -> dict[str, Any]:
    """Median of a plain ``module(x)`` loop on ``cuda`` timed like the runner's ``timer``."""
    import torch

    from converters.bridge import onnx_to_torch

    dtype = torch.float16 if precision == "fp16" else torch.float32
    module = onnx_to_torch(str(path)).to("cuda").to(dtype).eval()
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(shape, dtype=np.float32))
    x = x.to("cuda").to(dtype)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times: list[float] = []
    with torch.inference_mode():
        for _ in range(warmup):
            module(x)
        torch.cuda.synchronize()
        stop = time.perf_counter() + duration_s
        while time.perf_counter() < stop or len(times) < 50:
            if timer == "cuda_events":
                start.record()
                module(x)
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end))
            else:
                torch.cuda.synchronize()
                t0 = time.perf_counter_ns()
                module(x)
                torch.cuda.synchronize()
                times.append((time.perf_counter_ns() - t0) / 1e6)
    clock = sm_clock_mhz()
    del module, x
    torch.cuda.empty_cache()
    return {"p50": statistics.median(times), "runs": len(times), "sm_mhz_after": clock}


def agent_path(
    path: Path,
    inputs: list[TensorSpec],
    precision: str,
    timer: str,
    settings: MeasureSettings,
    workdir: Path,
) -> dict[str, Any]:
    spec = MeasureSpec(
        runtime="pytorch",
        model_path=str(path),
        model_format="onnx",
        precision=precision,
        inputs=inputs,
        settings=settings,
        options={"device": "cuda", "timer": timer},
    )
    res = run_isolated(spec, workdir=workdir)
    if res.status != "succeeded" or res.latency_ms is None or res.latency_ms.p50 is None:
        raise RuntimeError(f"measurement failed: {res.error}")
    env = res.environment
    return {
        "p50": res.latency_ms.p50,
        "p99": res.latency_ms.p99,
        "cov": res.latency_ms.cov,
        "runs": res.runs,
        "stop_reason": res.stop_reason,
        "load_ms": res.load_ms,
        "first_inference_ms": res.first_inference_ms,
        "gpu_memory": env.get("gpu_memory"),
        "sm_mhz_after": (env.get("gpu") or {}).get("clocks", {}).get("sm_mhz"),
        "warnings": env.get("warnings"),
    }


def _write(out: Path, report: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=3.0, help="steady-state seconds per side")
    ap.add_argument("--models", nargs="+", choices=sorted(BUILDERS), default=sorted(BUILDERS))
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 64])
    ap.add_argument("--precisions", nargs="+", choices=["fp32", "fp16"], default=["fp32", "fp16"])
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--out", type=Path, default=RESULTS / "gpu_timing.json")
    args = ap.parse_args()

    import torch

    if not torch.cuda.is_available():
        raise SystemExit(
            f"no CUDA GPU visible to torch {torch.__version__}: run this on a GPU host"
        )
    res = args.resolution
    zoo = {
        f"{name}@{res} b{batch}": BUILDERS[name](res, batch=batch)
        for name in args.models
        for batch in args.batches
    }
    precisions = args.precisions
    settings = fixed_duration(args.duration, warmup_runs=20, min_runs=50)
    report: dict[str, Any] = {
        "what": "p50 of LatencyLab's isolated PyTorch-on-CUDA measurement (A) vs a bare "
        "in-process loop with the same timer (B)",
        "rounds": args.rounds,
        "duration_s": args.duration,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "gpu_before": gpu_environment(0),
        "runs": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in zoo.items():
            path = models.save(model, Path(tmp) / f"{name.replace(' ', '_')}.onnx")
            inputs = onnx_inputs(path)
            shape = [int(d) for d in inputs[0].shape]
            for precision in precisions:
                for timer in TIMERS:
                    key = f"{name} {precision} {timer}"
                    rounds = []
                    for r in range(args.rounds):
                        a = agent_path(
                            path, inputs, precision, timer, settings, Path(tmp) / f"w{r}"
                        )
                        b = bare_loop(path, shape, precision, timer, args.duration)
                        rounds.append(
                            {"agent": a, "bare_p50_ms": b["p50"], "bare_runs": b["runs"],
                             "bare_sm_mhz_after": b["sm_mhz_after"],
                             "ratio": a["p50"] / b["p50"]}
                        )  # fmt: skip
                        print(
                            f"{key:44s} round {r + 1}: agent {a['p50']:.3f} ms "
                            f"({a['sm_mhz_after']} MHz)  bare {b['p50']:.3f} ms "
                            f"({b['sm_mhz_after']} MHz)  ratio {a['p50'] / b['p50']:.3f}",
                            flush=True,
                        )
                    ratios = [x["ratio"] for x in rounds]
                    report["runs"][key] = {
                        "rounds": rounds,
                        "median_ratio": statistics.median(ratios),
                    }
                    _write(args.out, report)  # a run cut short keeps what it measured
    report["gpu_after"] = gpu_environment(0)
    _write(args.out, report)
    print(f"\n{'model batch precision timer':44s} median ratio (agent / bare)")
    for key, run in report["runs"].items():
        print(f"{key:44s} {run['median_ratio']:.3f}")
    print(
        f"GPU: {report['gpu_before']['gpu'].get('name')}; warnings: {report['gpu_before']['warnings']}"
    )
    print(f"report: {args.out}")


if __name__ == "__main__":
    main()
