"""Measure many small ONNX models inside one subprocess, the standard protocol for each.

`measure_batch` is the sandbox entry (``bench.predictor_batch:measure_batch``): it runs
`agents.measure.worker.measure` (load -> first -> warmup -> steady state -> median) for
every spec of a `BatchRequest` in turn, in the one fresh process that
`converters.sandbox.run_sandboxed` starts, so the ~1.3 s fixed cost of a process is paid
once per batch, not once per kernel model. `measure_models` writes the models, splits them
into batches and returns each model's median (ms) or None when its measurement failed.

``timer="cpu"`` times each inference with ``time.thread_time_ns`` (the CPU time of the
calling thread, where onnxruntime runs its ops with one intra-op thread) instead of
``perf_counter_ns``: on a shared, loaded machine the wall-clock time of a long run is
mostly the time the scheduler gave other processes (a 2.5 ms MobileNetV2 measured 11.5 ms
median wall at load average 10 on 2 cores), while short kernels fit between preemptions;
no kernel sum predicts that. Everything else is the standard protocol. `CPU_RUNNERS` holds
the CPU-timed runner of each runtime that has one: OpenVINO's CPU plugin with
``INFERENCE_NUM_THREADS=1`` runs inference on the calling thread (measured here: the thread's
and the process's CPU time agree to 0.1%), so its runner takes the process's CPU time
(``process_time_ns``), which would also count any thread the plugin started.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import onnx
from pydantic import BaseModel, ConfigDict

from agents.measure.isolation import REPO_ROOT
from agents.measure.protocol import run_protocol
from agents.measure.worker import measure
from agents.runners.base import Runner
from agents.runners.onnxruntime import OnnxRuntimeRunner
from agents.runners.openvino import OpenVinoRunner
from converters.sandbox import run_sandboxed
from latencylab.schemas import MeasureResult, MeasureSettings, MeasureSpec, TensorSpec
from predictor.kernel_models import kernel_latency

Timer = Literal["wall", "cpu"]
T = TypeVar("T")


class CpuTimedOnnxRuntimeRunner(OnnxRuntimeRunner):
    """The onnxruntime runner timing each run by the calling thread's CPU time (1 thread)."""

    timer_name = "thread_time_ns"

    def timed_infer(self, feeds: Any) -> int:
        run = self._session.run
        t0 = time.thread_time_ns()
        run(None, feeds)
        return time.thread_time_ns() - t0


class CpuTimedOpenVinoRunner(OpenVinoRunner):
    """The OpenVINO runner timing each run by the process's CPU time (all its threads)."""

    timer_name = "process_time_ns"

    def timed_infer(self, feeds: Any) -> int:
        infer = self._request.infer
        t0 = time.process_time_ns()
        infer(share_outputs=True)
        return time.process_time_ns() - t0


CPU_RUNNERS: dict[str, type[Runner]] = {
    OnnxRuntimeRunner.runtime_name: CpuTimedOnnxRuntimeRunner,
    OpenVinoRunner.runtime_name: CpuTimedOpenVinoRunner,
}
"""Runtime -> its runner timed by CPU time (``timer="cpu"``); others measure wall-clock only."""


def cpu_runner(spec: MeasureSpec) -> Runner:
    cls = CPU_RUNNERS.get(spec.runtime)
    if cls is None:
        raise ValueError(
            f"no CPU-timed runner for runtime {spec.runtime!r} (those with one: "
            f"{sorted(CPU_RUNNERS)}); measure it with timer='wall'"
        )
    return cls(spec)


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    specs: list[MeasureSpec]
    timer: Timer = "wall"


class BatchResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    results: list[MeasureResult]


def measure_batch(
    request: BatchRequest, emit: Callable[[dict[str, Any]], None] | None = None
) -> BatchResult:
    out = []
    for i, spec in enumerate(request.specs):
        if request.timer == "cpu":
            out.append(run_protocol(cpu_runner(spec), spec.settings))
        else:
            out.append(measure(spec))
        if emit is not None:
            emit({"phase": "batch", "runs": i + 1})
    return BatchResult(results=out)


def spec_for(
    path: Path,
    model: onnx.ModelProto,
    settings: MeasureSettings,
    threads: int = 1,
    runtime: str = "onnxruntime",
) -> MeasureSpec:
    """The spec of one ONNX model for ``runtime`` (any runner that reads ONNX itself)."""
    inputs = [
        TensorSpec(
            name=i.name, shape=[d.dim_value for d in i.type.tensor_type.shape.dim], dtype="float32"
        )
        for i in model.graph.input
    ]
    return MeasureSpec(
        runtime=runtime, model_path=str(path), model_format="onnx", inputs=inputs,
        threads=threads, settings=settings,
    )  # fmt: skip


def median_ms(result: MeasureResult) -> float | None:
    if result.status != "succeeded" or result.latency_ms is None:
        return None
    return result.latency_ms.p50


def kernel_ms(result: MeasureResult) -> float | None:
    """The median without the model boundary's layout conversions (`kernel_latency`)."""
    med = median_ms(result)
    if med is None:
        return None
    return kernel_latency(med, [(layer.type, layer.time_ms) for layer in result.profile or []])


def measure_models(
    models: Sequence[onnx.ModelProto],
    settings: MeasureSettings,
    *,
    workdir: Path,
    batch: int = 100,
    threads: int = 1,
    timer: Timer = "wall",
    on_batch: Callable[[int, int], None] | None = None,
    statistic: Callable[[MeasureResult], T] = median_ms,  # type: ignore[assignment]
    runtime: str = "onnxruntime",
) -> list[T | None]:
    """``statistic`` (default: the median, ms) of every model's result, measured ``batch``
    models per subprocess (None for a batch whose process died)."""
    root = Path(tempfile.mkdtemp(prefix="kernels-", dir=workdir))
    try:
        specs = []
        for i, m in enumerate(models):
            path = root / f"k{i:05d}.onnx"
            onnx.save(m, path)
            specs.append(spec_for(path, m, settings, threads, runtime))
        out: list[T | None] = []
        for start in range(0, len(specs), batch):
            chunk = specs[start : start + batch]
            timeout = len(chunk) * (settings.max_duration_s + 10) + 60
            outcome = run_sandboxed(
                BatchRequest(specs=chunk, timer=timer), "bench.predictor_batch:measure_batch",
                BatchResult,
                rundir=root / f"run{start}", timeout_s=timeout, cwd=REPO_ROOT,
            )  # fmt: skip
            if outcome.result is None:
                out += [None] * len(chunk)
            else:
                out += [statistic(r) for r in outcome.result.results]
            if on_batch is not None:
                on_batch(len(out), len(specs))
        return out
    finally:
        shutil.rmtree(root, ignore_errors=True)
