"""The printed report of `bench.predictor` (accuracy tables per timer and predictor)."""

from __future__ import annotations

from typing import Any


def print_accuracy(timer: str, acc: dict[str, Any] | None) -> None:
    if not acc:
        print(f"[{timer}] no validation network measured")
        return
    print(
        f"\n[{timer} timer] {'family':14s} {'n':>3s} {'acc5':>6s} {'acc10':>6s} {'RMSPE':>6s} {'rho':>6s} {'mean':>7s}"
    )
    for name, a in [*acc["families"].items(), ("OVERALL", acc["overall"])]:
        rho = f"{a['rho']:.3f}" if a["rho"] is not None else "  -"
        print(
            f"{'':13s}{name:14s} {a['n']:3d} {a['acc5']:6.0%} {a['acc10']:6.0%} {a['rmspe']:6.1%} {rho:>6s} {a['mean_error']:+7.1%}"
        )


def print_report(r: dict[str, Any]) -> None:
    print(
        f"\nbuild: {r['build_s']:.0f} s, {r['samples']} samples, overhead {1000 * r['overhead_ms']:.1f} us"
    )
    if "batching_bias" in r:
        print(f"batched / isolated kernel latency: {r['batching_bias']}")
    for timer, v in r["validation_uncalibrated"].items():
        print_accuracy(f"{timer}, uncalibrated", v["accuracy"])
    for timer, v in r.get("validation_with_conversions", {}).items():
        print_accuracy(f"{timer}, kernels + conversions", v["accuracy"])
    for timer, v in r["validation"].items():
        print_accuracy(timer + (", calibrated" if "calibration" in r else ""), v["accuracy"])
    s = r["prediction_speed"]
    print(
        f"prediction ({s['nodes']} nodes, {s['kernels']} kernels): predict_onnx {s['predict_onnx_ms']:.1f} ms, regressors only {s['regressors_only_ms']:.2f} ms"
    )
    print(
        f"total {r['total_s']:.0f} s; load average {r['load_average_start']} -> {r['load_average_end']}"
    )
