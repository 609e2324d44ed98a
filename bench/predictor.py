"""Build a kernel-level latency predictor for this machine's CPU and validate it (issue 14).

    .venv/bin/python -m bench.predictor [--per-type 24] [--resolution 160] [--also-wall]
    .venv/bin/python -m bench.predictor --runtime openvino --cache /tmp/pcache_ov.json

``--runtime`` (default onnxruntime): any runtime with a `bench.predictor_runtime` profile,
measured through its agent runner; for OpenVINO (CPU plugin) onnxruntime's NCHWc pieces
(step 3's conversions, the layout model) are off and the kernel samples leave out the
plugin's boundary ``Reorder`` nodes (``--kernel-statistic no-layout``).

0. fusion rules: measured (``--discover-fusion``, `bench.predictor_runtime.discover_rules`)
   or the defaults (the runtime's profile says which);
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
   (``predict_detection``) on a ~200-kernel graph;
7. ``--exported N`` (default 2): the first N NAS validation networks per space also exported
   from PyTorch modules written like OFA's code, as exported and normalised, measured and
   scored beside the generated ones (`bench.predictor_exported`).

Prints a report and writes it to ``bench/results/predictor.json``
(``predictor_<runtime>.json`` for another runtime).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnx

from bench.predictor_batch import kernel_ms, measure_models
from bench.predictor_exported import validate_exported
from bench.predictor_measure import (
    KERNEL_SETTINGS,
    Cache,
    cpu_model,
    isolated_ms,
    kernel_settings,
    layout_rows,
    measure_kernels,
    network_ms,
)  # fmt: skip
from bench.predictor_report import print_report
from bench.predictor_runtime import DEFAULT, PROFILES, bench_runtime, rules_for
from predictor.accuracy import score
from predictor.archs import convnext
from predictor.bundle import PredictorBundle
from predictor.calibration import Calibration, apply, fit_calibration
from predictor.configs import KernelConfig
from predictor.conversions import conversion_model, plan_conversions
from predictor.detect import detect_kernels
from predictor.fusion import FusionRules
from predictor.kernel_models import kernel_model
from predictor.sampling import plan_initial, plan_refinement, real_configs
from predictor.train import BASELINES, train
from predictor.validation_set import calibration_networks, validation_networks

RESULTS = Path(__file__).resolve().parent / "results" / "predictor.json"


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


def batching_bias(
    samples: list[tuple[KernelConfig, float]], workdir: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """Kernels measured again, one fresh process each: batched / isolated latency."""
    step = max(1, len(samples) // args.bias_check)
    ratios = []
    for cfg, batched in samples[1::step][: args.bias_check]:
        alone = isolated_ms(
            kernel_model(cfg), workdir, kernel_settings(args), args.threads, args.timer,
            kernel_ms, args.runtime,
        )  # fmt: skip
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


def fusion_rules(workdir: Path, args: argparse.Namespace, cache: Cache) -> FusionRules:
    """The runtime's fusion rules: measured probes (`bench.predictor_runtime.discover_rules`,
    kept in the cache) where its profile says so, else the defaults."""
    rt = bench_runtime(args.runtime)
    prefix = rt.cache_key(args.timer, "")
    measured = {
        k[len(prefix) :]: v[0] for k, v in cache.kernels.items() if k.startswith(prefix + "probe:")
    }

    def measure(models: Sequence[onnx.ModelProto]) -> list[float | None]:
        print(f"  fusion probes: {len(models)} models", flush=True)
        return measure_models(
            models, KERNEL_SETTINGS.model_copy(update={"profile": False}), workdir=workdir,
            batch=args.batch, threads=args.threads, timer=args.timer, runtime=args.runtime,
        )  # fmt: skip

    rules = rules_for(rt, args.discover, measure, measured)
    for k, v in measured.items():
        cache.kernels[prefix + k] = [v, v]
    cache.save()
    return rules


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-predictor-"))
    started = time.perf_counter()
    report: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "load_average_start": os.getloadavg(),
        "runtime": args.runtime,
        "threads": args.threads,
        "args": vars(args),
    }
    print(f"CPU {report['cpu']}, load average {report['load_average_start']}", flush=True)
    cache = Cache(args.cache)
    rt = bench_runtime(args.runtime)
    rules = fusion_rules(workdir, args, cache)
    report["fusion_rules"] = rules.model_dump(mode="json")
    print(f"fusion rules ({rules.source}): {[' + '.join(p) for p in rules.patterns]}", flush=True)
    prior = real_configs(rules)
    plan = plan_initial(args.per_type, args.seed, rules=rules, prior=prior)
    print(f"plan: {len(plan)} kernel configs", flush=True)
    samples = measure_kernels(plan, workdir, args, cache)
    n_conv = args.conversions if rt.nchwc else 0  # NCHWc reorders: onnxruntime's own ops
    conv_plan = plan_conversions(n_conv, args.seed, prior) if n_conv else []
    print(f"layout conversions: {len(conv_plan)} configs", flush=True)
    conversions = measure_kernels(conv_plan, workdir, args, cache, conversion_model)

    def fit(samples: list[tuple[KernelConfig, float]]) -> PredictorBundle:
        return train(
            samples, rules, layout=layout_rows(samples, args, cache) if rt.nchwc else None,
            conversions=conversions,
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
    if args.exported:  # the validation set's NAS archs exported from PyTorch (issue 14 item 5)
        report["validation_exported"] = validate_exported(
            bundle, lambda net, key: network_ms(net, key, workdir, args, cache, args.timer),
            args.seed, args.resolution, args.n_random, args.exported,
        )  # fmt: skip
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
    ap.add_argument(
        "--runtime", choices=sorted(PROFILES), default=DEFAULT,
        help="runtime measured (bench.predictor_runtime); results of another than "
        f"{DEFAULT} go to bench/results/predictor_<runtime>.json",
    )  # fmt: skip
    ap.add_argument(
        "--discover-fusion", dest="discover", action=argparse.BooleanOptionalAction,
        default=None, help="measure the fusion rules (probes) or assume the defaults "
        "(default: the runtime's profile, bench.predictor_runtime)",
    )  # fmt: skip
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--timer", choices=["cpu", "wall"], default="cpu",
        help="cpu: thread CPU time per run (1 thread; for a shared, loaded machine); wall: perf_counter_ns",
    )  # fmt: skip
    ap.add_argument(
        "--kernel-statistic", choices=["median", "no-layout"], default=None,
        help="kernel sample: the median, or the median without the boundary's layout "
        "conversions (their share of the per-layer profile: noisy on a loaded machine); "
        "default: the runtime's (bench.predictor_runtime)",
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
    ap.add_argument(
        "--exported", type=int, default=2,
        help="validation NAS networks per space also exported from PyTorch (bench.predictor_exported; 0: off)",
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
    ap.add_argument("--out", default=None, help="default: the runtime's results file")
    args = ap.parse_args()
    rt = bench_runtime(args.runtime)
    if args.timer not in rt.timers:
        ap.error(f"--timer {args.timer} is not available for {args.runtime}: use {rt.timers}")
    args.out = args.out or str(rt.results)
    args.kernel_statistic = args.kernel_statistic or rt.kernel_statistic
    report = run(args)
    print_report(report)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
