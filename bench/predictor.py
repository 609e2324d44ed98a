"""Build a kernel-level latency predictor for this machine's CPU and validate it (issue 14).

    .venv/bin/python -m bench.predictor [--per-type 24] [--resolution 160] [--also-wall]

1. plan: `predictor.sampling.plan_initial` (``--per-type`` configs per kernel family);
2. measure every kernel model (`predictor.kernel_models.kernel_model`) with onnxruntime,
   ``--threads`` threads, the standard protocol (warmup, steady state, median), many
   models per subprocess (`bench.predictor_batch`); a few kernels are measured again one
   fresh process each, to show batching does not bias them. ``--timer cpu`` (default)
   times runs by the thread's CPU time, for a shared, loaded machine (docs/predictor.md);
   ``--timer wall`` is the agent's runner and `agents.measure.run_isolated` unchanged;
3. measure ``--conversions`` layout conversions per direction as kernel models of their
   own (`predictor.conversions`: onnxruntime's NCHWc ``ReorderInput``/``ReorderOutput``);
   train (`predictor.train.train`, with the samples' profiles saying which convolutions
   convert, the measured conversions pricing them per shape and taken out of each
   convolution sample), then ``--refine`` rounds of `plan_refinement`;
4. measure the `calibration_networks` (the reference architectures at width 1.0 and
   ``--cal-resolutions`` 224, 128 and 192 px, and NAS networks of their own seed at 224:
   disjoint from the validation set) and fit a `predictor.calibration.Calibration`
   on them (``--no-calibration``: skip);
5. measure the held-out `validation_networks` end to end, one fresh process each, the
   standard protocol, and score predicted against measured (`predictor.accuracy.score`),
   calibrated and not;
6. time predictions: ``predict_onnx`` (kernel detection included) and the regressors alone
   (``predict_detection``) on a ~200-kernel graph.

Prints a report and writes it to ``bench/results/predictor.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx

from agents.measure import run_isolated
from bench.predictor_batch import kernel_ms, measure_models, median_ms, spec_for
from bench.predictor_report import print_report
from latencylab.schemas import MeasureResult, MeasureSettings
from predictor.accuracy import score
from predictor.archs import convnext
from predictor.bundle import PredictorBundle
from predictor.calibration import Calibration, apply, fit_calibration
from predictor.configs import KernelConfig
from predictor.conversions import conversion_model, plan_conversions
from predictor.detect import detect_kernels
from predictor.kernel_models import kernel_model
from predictor.sampling import plan_initial, plan_refinement, real_configs
from predictor.train import BASELINES, train
from predictor.validation_set import ValidationNetwork, calibration_networks, validation_networks

RESULTS = Path(__file__).resolve().parent / "results" / "predictor.json"
KERNEL_SETTINGS = MeasureSettings(
    warmup_runs=10, min_runs=20, min_duration_s=0.1, max_duration_s=2.0, target_rel_ci=0.03,
    profile=True,  # the per-layer profile shows the model boundary's layout conversions
)  # fmt: skip
NETWORK_SETTINGS = MeasureSettings(
    warmup_runs=10, min_runs=30, min_duration_s=1.0, max_duration_s=10.0, target_rel_ci=0.01,
    profile=False,
)  # fmt: skip


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


class Cache:
    """Measurements kept between runs (``--cache``): kernel configs by key, networks by name."""

    def __init__(self, path: str | None) -> None:
        self.path = Path(path) if path else None
        data = json.loads(self.path.read_text()) if self.path and self.path.exists() else {}
        self.kernels: dict[str, list[float]] = data.get("kernels", {})
        self.networks: dict[str, float] = data.get("networks", {})

    def save(self) -> None:
        if self.path:
            self.path.write_text(json.dumps({"kernels": self.kernels, "networks": self.networks}))


def both_ms(result: MeasureResult) -> tuple[float | None, float | None]:
    return median_ms(result), kernel_ms(result)


def measure_kernels(
    cfgs: list[KernelConfig],
    workdir: Path,
    args: argparse.Namespace,
    cache: Cache,
    build: Callable[[KernelConfig], onnx.ModelProto] = kernel_model,
) -> list[tuple[KernelConfig, float]]:
    """Latency of each config's kernel model, batched; the cache keeps ``timer:key`` ->
    [median, median without boundary layout conversions]; ``--kernel-statistic`` picks."""
    key = {c.key(): f"{args.timer}:{c.key()}" for c in cfgs}
    todo = [c for c in cfgs if key[c.key()] not in cache.kernels]
    if todo:
        t0 = time.perf_counter()

        def progress(done: int, total: int) -> None:
            print(
                f"  measured {done}/{total} kernels ({time.perf_counter() - t0:.0f} s)", flush=True
            )

        ms = measure_models(
            [build(c) for c in todo], KERNEL_SETTINGS, workdir=workdir, batch=args.batch,
            threads=args.threads, timer=args.timer, on_batch=progress, statistic=both_ms,
        )  # fmt: skip
        failed = 0
        for c, both in zip(todo, ms, strict=True):
            med, nolayout = both if both is not None else (None, None)
            if med is not None and nolayout is not None and med > 0:
                cache.kernels[key[c.key()]] = [med, nolayout]
            else:
                failed += 1
        if failed:
            print(f"  {failed} kernel measurements failed (left out)")
        cache.save()
    pick = 1 if args.kernel_statistic == "no-layout" and build is kernel_model else 0
    out: list[tuple[KernelConfig, float]] = []
    for c in cfgs:
        got = cache.kernels.get(key[c.key()])
        if got is not None and got[pick] > 0:
            out.append((c, got[pick]))
    return out


def layout_rows(
    samples: list[tuple[KernelConfig, float]], args: argparse.Namespace, cache: Cache
) -> list[tuple[KernelConfig, float]]:
    """Each sample's time in layout conversions: median minus the median without them."""
    out = []
    for c, _ in samples:
        got = cache.kernels.get(f"{args.timer}:{c.key()}")
        if got is not None:
            out.append((c, max(0.0, got[0] - got[1])))
    return out


def network_ms(
    net: ValidationNetwork,
    key: str,
    workdir: Path,
    args: argparse.Namespace,
    cache: Cache,
    timer: str,
) -> float | None:
    """A whole network's median, one fresh process, cached under ``timer:key``."""
    measured = cache.networks.get(f"{timer}:{key}")
    if measured is None:
        measured = isolated_ms(net.model, workdir, NETWORK_SETTINGS, args.threads, timer)
        if measured is not None:
            cache.networks[f"{timer}:{key}"] = measured
            cache.save()
    return measured


def calibrate(
    bundle: PredictorBundle, workdir: Path, args: argparse.Namespace, cache: Cache
) -> tuple[Calibration, dict[str, Any]]:
    """Fit a calibration on the `calibration_networks` (never the validation set)."""
    rows = []
    for net in calibration_networks(args.seed, args.n_random, tuple(args.cal_resolutions)):
        measured = network_ms(net, f"cal:{net.name}", workdir, args, cache, args.timer)
        if measured is None:
            print(f"  {net.name}: measurement failed")
            continue
        rows.append(
            (net.name, bundle.network_terms(detect_kernels(net.model, bundle.rules)), measured)
        )
    cal = fit_calibration(rows, bundle.overhead_ms)
    loo = []  # leave-one-out over the calibration networks: an honest error estimate
    for i, (_, terms, measured) in enumerate(rows):
        other = fit_calibration(rows[:i] + rows[i + 1 :], bundle.overhead_ms)
        pred = bundle.overhead_ms + apply(other.coef, terms)
        loo.append(pred / measured - 1)
    print(
        f"calibration on {len(rows)} networks: coef {dict(zip(cal.terms, cal.coef, strict=True))}, "
        f"RMSPE {cal.uncalibrated_rmspe:.1%} -> {cal.fit_rmspe:.1%} "
        f"(leave-one-out {statistics.fmean(e * e for e in loo) ** 0.5:.1%})",
        flush=True,
    )
    return cal, {
        "calibration": cal.model_dump(),
        "measured": {n: m for n, _, m in rows},
        "leave_one_out_errors": {n: e for (n, _, _), e in zip(rows, loo, strict=True)},
    }


def isolated_ms(
    model: onnx.ModelProto,
    workdir: Path,
    settings: MeasureSettings,
    threads: int,
    timer: str,
    statistic: Callable[[MeasureResult], float | None] = median_ms,
) -> float | None:
    """One model, one fresh measuring process, the standard protocol (what a job does):
    through the agent's own ``run_isolated`` for the wall-clock timer."""
    if timer == "cpu":
        return measure_models(
            [model], settings, workdir=workdir, batch=1, threads=threads, timer="cpu",
            statistic=statistic,
        )[0]  # fmt: skip
    d = Path(tempfile.mkdtemp(dir=workdir))
    path = d / "model.onnx"
    onnx.save(model, path)
    return statistic(run_isolated(spec_for(path, model, settings, threads), workdir=d))


def batching_bias(
    samples: list[tuple[KernelConfig, float]], workdir: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """Kernels measured again, one fresh process each: batched / isolated latency."""
    step = max(1, len(samples) // args.bias_check)
    ratios = []
    for cfg, batched in samples[1::step][: args.bias_check]:
        alone = isolated_ms(
            kernel_model(cfg), workdir, KERNEL_SETTINGS, args.threads, args.timer, kernel_ms
        )
        if alone:
            ratios.append(batched / alone)
    if not ratios:
        return {"n": 0}
    return {
        "n": len(ratios),
        "median_batched_over_isolated": statistics.median(ratios),
        "min": min(ratios),
        "max": max(ratios),
    }


def validate(
    bundle: PredictorBundle, workdir: Path, args: argparse.Namespace, cache: Cache, timer: str
) -> dict[str, Any]:
    rows = []
    per_net = []
    for net in validation_networks(args.seed, args.resolution, args.n_random):
        measured = network_ms(net, net.name, workdir, args, cache, timer)
        if measured is None:
            print(f"  {net.name}: measurement failed")
            continue
        pred = bundle.predict_onnx(net.model).latency_ms
        rows.append((net.family, pred, measured))
        per_net.append(
            {"name": net.name, "family": net.family, "predicted_ms": pred, "measured_ms": measured}
        )
        err = 100 * (pred / measured - 1)
        print(
            f"  [{timer}] {net.name:32s} predicted {pred:8.2f} ms  measured {measured:8.2f} ms  {err:+6.1f}%",
            flush=True,
        )
    return {"networks": per_net, "accuracy": score(rows).model_dump() if rows else None}


def prediction_speed(bundle: PredictorBundle) -> dict[str, float]:
    model = convnext(160)  # 200 ONNX nodes, 127 kernels
    det = detect_kernels(model, bundle.rules)
    out: dict[str, float] = {"nodes": len(model.graph.node), "kernels": len(det.kernels)}
    for label, fn in (
        ("predict_onnx_ms", lambda: bundle.predict_onnx(model)),
        ("regressors_only_ms", lambda: bundle.predict_detection(det)),
    ):
        fn()
        times = []
        for _ in range(10):
            t = time.perf_counter_ns()
            fn()
            times.append((time.perf_counter_ns() - t) / 1e6)
        out[label] = statistics.median(times)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-predictor-"))
    started = time.perf_counter()
    report: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "load_average_start": os.getloadavg(),
        "runtime": "onnxruntime",
        "threads": args.threads,
        "args": vars(args),
    }
    print(f"CPU {report['cpu']}, load average {report['load_average_start']}", flush=True)
    cache = Cache(args.cache)
    prior = real_configs()
    plan = plan_initial(args.per_type, args.seed, prior=prior)
    print(f"plan: {len(plan)} kernel configs", flush=True)
    samples = measure_kernels(plan, workdir, args, cache)
    conv_plan = plan_conversions(args.conversions, args.seed, prior) if args.conversions else []
    print(f"layout conversions: {len(conv_plan)} configs", flush=True)
    conversions = measure_kernels(conv_plan, workdir, args, cache, conversion_model)

    def fit(samples: list[tuple[KernelConfig, float]]) -> PredictorBundle:
        return train(
            samples, layout=layout_rows(samples, args, cache), conversions=conversions,
            exclude_conversions=args.exclude_conversions, baseline=args.baseline,
        )  # fmt: skip

    bundle = fit(samples)
    for r in range(args.refine):
        extra = plan_refinement(bundle, max(1, args.per_type // 3), args.seed + r + 1, prior=prior)
        print(f"refinement {r + 1}: {len(extra)} kernel configs", flush=True)
        samples += measure_kernels(extra, workdir, args, cache)
        bundle = fit(samples)
    report["build_s"] = time.perf_counter() - started
    report["samples"] = len(samples)
    report["overhead_ms"] = bundle.overhead_ms
    report["families"] = {f: m.samples for f, m in bundle.data.families.items()}
    if args.bias_check:
        report["batching_bias"] = batching_bias(samples, workdir, args)
    report["layout"] = bundle.data.layout.model_dump() if bundle.data.layout else None
    report["conversions"] = len(conversions)
    report["validation_uncalibrated"] = {
        args.timer: validate(bundle, workdir, args, cache, args.timer)
    }
    if bundle.data.layout is not None and bundle.data.layout.conversions:
        # kernels + the network's measured conversions, nothing fitted on networks
        plain = Calibration(
            coef=[1.0, 1.0, 0.0, 0.0], networks=[], fit_rmspe=0.0, uncalibrated_rmspe=0.0
        )
        report["validation_with_conversions"] = {
            args.timer: validate(bundle.with_calibration(plain), workdir, args, cache, args.timer)
        }
    if args.calibrate:
        cal, report["calibration"] = calibrate(bundle, workdir, args, cache)
        bundle = bundle.with_calibration(cal)
    report["validation"] = {args.timer: validate(bundle, workdir, args, cache, args.timer)}
    if args.also_wall and args.timer != "wall":
        report["validation"]["wall"] = validate(bundle, workdir, args, cache, "wall")
    report["prediction_speed"] = prediction_speed(bundle)
    report["total_s"] = time.perf_counter() - started
    report["load_average_end"] = os.getloadavg()
    if args.save_bundle:
        Path(args.save_bundle).write_text(bundle.to_json())
    return report


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--per-type", type=int, default=24, help="kernel configs per family")
    ap.add_argument("--refine", type=int, default=1, help="refinement rounds (per_type/3 each)")
    ap.add_argument("--resolution", type=int, default=160, help="validation input size")
    ap.add_argument("--n-random", type=int, default=2, help="random networks per NAS space")
    ap.add_argument(
        "--cal-resolutions", type=int, nargs="+", default=[224, 128, 192],
        help="input sizes of the reference architectures (width 1.0) the calibration is fitted on",
    )  # fmt: skip
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--timer", choices=["cpu", "wall"], default="cpu",
        help="cpu: thread CPU time per run (1 thread; for a shared, loaded machine); wall: perf_counter_ns",
    )  # fmt: skip
    ap.add_argument(
        "--kernel-statistic", choices=["median", "no-layout"], default="median",
        help="kernel sample: the median, or the median without the boundary's layout "
        "conversions (their share of the per-layer profile: noisy on a loaded machine)",
    )  # fmt: skip
    ap.add_argument(
        "--conversions", type=int, default=24,
        help="layout conversions measured per direction (0: price them from the profiles)",
    )  # fmt: skip
    ap.add_argument(
        "--exclude-conversions", action="store_true",
        help="train the convolution regressors without each sample's own measured conversions "
        "(default: on the samples as measured, the layout term priced per shape)",
    )  # fmt: skip
    ap.add_argument(
        "--baseline", choices=["auto", *BASELINES], default="auto",
        help="first stage of the regressors (predictor.train.BASELINES; auto: per family by CV)",
    )  # fmt: skip
    ap.add_argument("--also-wall", action="store_true", help="validate on wall-clock times too")
    ap.add_argument(
        "--no-calibration", dest="calibrate", action="store_false",
        help="skip the calibration networks (score the plain sum of kernels only)",
    )  # fmt: skip
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=100, help="kernel models per subprocess")
    ap.add_argument("--bias-check", type=int, default=10, help="kernels re-measured alone")
    ap.add_argument("--save-bundle", default=None, help="write the predictor JSON here")
    ap.add_argument("--cache", default=None, help="JSON file of measurements to reuse/extend")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    report = run(args)
    print_report(report)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
