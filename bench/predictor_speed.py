"""How fast the kernel-level predictor predicts (issue 14: "a 200-node graph in ≤ 5 ms").

    .venv/bin/python -m bench.predictor_speed [--bundle PATH | --save-bundle PATH] [--runs 50]

Times, per call, with ``perf_counter_ns`` (wall) and ``thread_time_ns`` (this thread's CPU
time, which a shared, loaded machine disturbs less): `PredictorBundle.predict_onnx`,
`detect_kernels` and `PredictorBundle.predict_detection`, on ConvNeXt at 160 px (200 ONNX
nodes, 127 kernels) and on the 10 reference architectures (`predictor.archs.ARCHS`,
224 px), each with our own shape propagation (``inference="auto"``, `predictor.shapes`)
and, side by side in the same run, with ONNX's shape inference (``inference="onnx"``,
the previous path: ``infer_shapes`` on the model without its weights). Reports median and
p90, the CPU model and the load average before and after; writes
``bench/results/predictor_speed.json``.

The bundle: ``--bundle`` (a predictor JSON, e.g. ``bench.predictor --save-bundle``), else
one trained here like the accuracy bench's (``--per-type`` configs per family, LightGBM
300 trees per family) on quick in-process onnxruntime measurements (speed does not depend
on how good they are), with the layout model and calibration of the last accuracy run
(``bench/results/predictor.json``) where it has them, so the calibrated path is timed too.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import onnx
from pydantic import ValidationError

from bench.predictor import RESULTS as ACCURACY_RESULTS
from bench.predictor import cpu_model
from bench.quick import quick_ort_ms
from predictor.archs import ARCHS, convnext
from predictor.bundle import PredictorBundle
from predictor.calibration import Calibration
from predictor.detect import detect_kernels
from predictor.kernel_models import kernel_model
from predictor.layout import LayoutModel
from predictor.sampling import plan_initial, real_configs
from predictor.train import train

RESULTS = Path(__file__).resolve().parent / "results" / "predictor_speed.json"
Inference = Literal["auto", "onnx"]
PATHS: tuple[Inference, ...] = ("auto", "onnx")


def build_bundle(per_type: int) -> tuple[PredictorBundle, str]:
    plan = plan_initial(per_type, 0, prior=real_configs())
    samples = [(c, quick_ort_ms(kernel_model(c), runs=7)) for c in plan]
    bundle = train(samples)
    note = f"trained here on {len(samples)} quick kernel measurements"
    try:
        report = json.loads(ACCURACY_RESULTS.read_text())
        layout = LayoutModel.model_validate(report["layout"])
        cal = Calibration.model_validate(report["calibration"]["calibration"])
    except (OSError, KeyError, TypeError, ValidationError):
        return bundle, note + "; no layout/calibration (run bench.predictor for them)"
    bundle = PredictorBundle(bundle.data.model_copy(update={"layout": layout}))
    return bundle.with_calibration(
        cal
    ), note + f"; layout + calibration from {ACCURACY_RESULTS.name}"


def timed(fns: dict[str, Callable[[], object]], runs: int) -> dict[str, dict[str, float]]:
    """Median, p90 and min (ms) of ``runs`` calls of each of ``fns`` after one warm-up,
    wall and thread CPU time. The functions take turns, call by call, so that a load that
    comes and goes on a shared machine falls on all of them alike."""
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    for _ in range(runs):
        for name, fn in fns.items():
            t, c = time.perf_counter_ns(), time.thread_time_ns()
            fn()
            cpu[name].append((time.thread_time_ns() - c) / 1e6)
            wall[name].append((time.perf_counter_ns() - t) / 1e6)
    p90 = max(1, round(0.9 * runs)) - 1

    def stats(w: list[float], c: list[float]) -> dict[str, float]:
        return {
            "median_ms": statistics.median(w), "p90_ms": sorted(w)[p90], "min_ms": min(w),
            "cpu_median_ms": statistics.median(c), "cpu_p90_ms": sorted(c)[p90],
        }  # fmt: skip

    return {k: stats(wall[k], cpu[k]) for k in fns}


def time_model(bundle: PredictorBundle, model: onnx.ModelProto, runs: int) -> dict[str, Any]:
    det = detect_kernels(model, bundle.rules)
    assert det == detect_kernels(model, bundle.rules, inference="onnx")  # the same kernels

    def detect(path: Inference) -> Callable[[], object]:
        return lambda: detect_kernels(model, bundle.rules, inference=path)

    def predict(path: Inference) -> Callable[[], object]:
        return lambda: bundle.predict_detection(detect_kernels(model, bundle.rules, inference=path))

    t = timed(
        {
            # predict_onnx itself (the default path): what the SDK and the service call
            "predict_onnx": lambda: bundle.predict_onnx(model),
            "predict_onnx_onnx": predict("onnx"),
            "detect_kernels": detect("auto"),
            "detect_kernels_onnx": detect("onnx"),
            "predict_detection": lambda: bundle.predict_detection(det),
        },
        runs,
    )
    return {
        "nodes": len(model.graph.node), "kernels": len(det.kernels),
        "auto": {"predict_onnx": t["predict_onnx"], "detect_kernels": t["detect_kernels"]},
        "onnx": {"predict_onnx": t["predict_onnx_onnx"], "detect_kernels": t["detect_kernels_onnx"]},
        "predict_detection": t["predict_detection"],
    }  # fmt: skip


def run(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {
        "cpu": cpu_model(), "cores": os.cpu_count(), "load_average_start": os.getloadavg(),
        "runs": args.runs,
    }  # fmt: skip
    print(f"CPU {report['cpu']}, load average {report['load_average_start']}", flush=True)
    if args.bundle:
        bundle, report["bundle"] = (
            PredictorBundle.from_json(Path(args.bundle).read_text()),
            args.bundle,
        )
    else:
        t = time.perf_counter()
        bundle, report["bundle"] = build_bundle(args.per_type)
        print(f"bundle: {report['bundle']} ({time.perf_counter() - t:.0f} s)", flush=True)
        if args.save_bundle:
            Path(args.save_bundle).write_text(bundle.to_json())
    report["convnext160"] = time_model(bundle, convnext(160), args.runs)
    archs: dict[str, Any] = {}
    for i, (name, (_, build, kw)) in enumerate(ARCHS.items()):
        archs[name] = time_model(
            bundle, build(224, 1.0, bn=bool(i % 2), seed=1, **kw), args.arch_runs
        )
        print(f"  {name}: {archs[name]['auto']['predict_onnx']['median_ms']:.1f} ms", flush=True)
    report["archs"] = archs
    report["load_average_end"] = os.getloadavg()
    return report


def print_report(r: dict[str, Any]) -> None:
    def row(name: str, m: dict[str, Any]) -> str:
        a, o = m["auto"], m["onnx"]
        return (
            f"{name:16s} {m['nodes']:5d} {m['kernels']:5d} "
            f"{a['predict_onnx']['median_ms']:7.2f} {a['predict_onnx']['p90_ms']:7.2f} "
            f"{a['predict_onnx']['min_ms']:6.2f} "
            f"{a['detect_kernels']['median_ms']:7.2f} {a['detect_kernels']['p90_ms']:7.2f} "
            f"{m['predict_detection']['median_ms']:7.2f} {m['predict_detection']['p90_ms']:7.2f} "
            f"{o['predict_onnx']['median_ms']:8.2f} {o['detect_kernels']['median_ms']:7.2f} "
            f"{o['predict_onnx']['median_ms'] / a['predict_onnx']['median_ms']:6.2f}x "
            f"{o['detect_kernels']['median_ms'] / a['detect_kernels']['median_ms']:6.2f}x"
        )

    print(f"\nbundle: {r['bundle']}; {r['runs']} runs (archs: fewer), wall ms")
    print(
        f"{'model':16s} nodes kerns predict_onnx(med p90 min) detect(med p90) "
        "predict_det(med p90) | onnx path: predict detect | ratio: predict detect"
    )
    print(row("convnext-160", r["convnext160"]))
    for name, m in r["archs"].items():
        print(row(name, m))
    c = r["convnext160"]
    print(
        f"convnext-160 thread CPU time: predict_onnx {c['auto']['predict_onnx']['cpu_median_ms']:.2f} ms "
        f"(onnx path {c['onnx']['predict_onnx']['cpu_median_ms']:.2f}), detect "
        f"{c['auto']['detect_kernels']['cpu_median_ms']:.2f}, predict_detection "
        f"{c['predict_detection']['cpu_median_ms']:.2f}"
    )
    print(
        f"CPU {r['cpu']} ({r['cores']} cores); load average {r['load_average_start']} -> {r['load_average_end']}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--bundle", default=None, help="predictor JSON (default: train one here)")
    ap.add_argument("--save-bundle", default=None, help="write the trained bundle here")
    ap.add_argument("--per-type", type=int, default=24, help="kernel configs per family")
    ap.add_argument("--runs", type=int, default=50, help="timed calls on the 200-node graph")
    ap.add_argument("--arch-runs", type=int, default=15, help="timed calls per architecture")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    report = run(args)
    print_report(report)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
