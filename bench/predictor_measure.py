"""Measuring for `bench.predictor`: kernel models in batches, whole networks one fresh
process each, and the cache of measurements kept between runs (``--cache``)."""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import onnx

from agents.measure import run_isolated
from bench.predictor_batch import kernel_ms, measure_models, median_ms, spec_for
from bench.predictor_runtime import DEFAULT, bench_runtime
from latencylab.schemas import MeasureResult, MeasureSettings
from predictor.configs import KernelConfig
from predictor.kernel_models import kernel_model
from predictor.validation_set import ValidationNetwork

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
    rt = bench_runtime(args.runtime)
    key = {c.key(): rt.kernel_key(args.timer, args.kernel_statistic, c.key()) for c in cfgs}
    todo = [c for c in cfgs if key[c.key()] not in cache.kernels]
    if todo:
        t0 = time.perf_counter()

        def progress(done: int, total: int) -> None:
            print(
                f"  measured {done}/{total} kernels ({time.perf_counter() - t0:.0f} s)", flush=True
            )

        ms = measure_models(
            [build(c) for c in todo], kernel_settings(args), workdir=workdir, batch=args.batch,
            threads=args.threads, timer=args.timer, on_batch=progress, statistic=both_ms,
            runtime=args.runtime,
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


def kernel_settings(args: argparse.Namespace) -> MeasureSettings:
    """`KERNEL_SETTINGS`, with the per-layer profile only where the NCHWc layout model or
    the ``no-layout`` statistic uses it."""
    rt = bench_runtime(args.runtime)
    return KERNEL_SETTINGS.model_copy(update={"profile": rt.profiled(args.kernel_statistic)})


def layout_rows(
    samples: list[tuple[KernelConfig, float]], args: argparse.Namespace, cache: Cache
) -> list[tuple[KernelConfig, float]]:
    """Each sample's time in layout conversions: median minus the median without them."""
    out = []
    rt = bench_runtime(args.runtime)
    for c, _ in samples:
        got = cache.kernels.get(rt.kernel_key(args.timer, args.kernel_statistic, c.key()))
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
    ckey = bench_runtime(args.runtime).cache_key(timer, key)
    measured = cache.networks.get(ckey)
    if measured is None:
        measured = isolated_ms(
            net.model, workdir, NETWORK_SETTINGS, args.threads, timer, runtime=args.runtime
        )
        if measured is not None:
            cache.networks[ckey] = measured
            cache.save()
    return measured


def isolated_ms(
    model: onnx.ModelProto,
    workdir: Path,
    settings: MeasureSettings,
    threads: int,
    timer: str,
    statistic: Callable[[MeasureResult], float | None] = median_ms,
    runtime: str = DEFAULT,
) -> float | None:
    """One model, one fresh measuring process, the standard protocol (what a job does):
    through the agent's own ``run_isolated`` for the wall-clock timer."""
    if timer == "cpu":
        return measure_models(
            [model], settings, workdir=workdir, batch=1, threads=threads, timer="cpu",
            statistic=statistic, runtime=runtime,
        )[0]  # fmt: skip
    d = Path(tempfile.mkdtemp(dir=workdir))
    path = d / "model.onnx"
    onnx.save(model, path)
    return statistic(run_isolated(spec_for(path, model, settings, threads, runtime), workdir=d))
