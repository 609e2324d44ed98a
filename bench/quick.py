"""Quick in-process onnxruntime timing (1 thread): real but rough numbers for plumbing
tests and speed benches' training data, never a result (those use the measurement
protocol: a fresh process, warmup, the stopping rule)."""

from __future__ import annotations

import statistics
import time

import numpy as np
import onnx
import onnxruntime as ort


def session(model: onnx.ModelProto, optimized: str | None = None) -> ort.InferenceSession:
    """A 1-thread CPU session (``optimized``: where onnxruntime writes its optimised graph)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    so.log_severity_level = 3
    if optimized is not None:
        so.optimized_model_filepath = optimized
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def quick_ort_ms(model: onnx.ModelProto, runs: int = 15, warmup: int = 1) -> float:
    """Median ms of ``runs`` calls after ``warmup`` (random float32 inputs)."""
    sess = session(model)
    rng = np.random.default_rng(0)
    feeds = {i.name: rng.standard_normal(i.shape).astype(np.float32) for i in sess.get_inputs()}
    for _ in range(warmup):
        sess.run(None, feeds)
    times = []
    for _ in range(runs):
        t = time.perf_counter_ns()
        sess.run(None, feeds)
        times.append((time.perf_counter_ns() - t) / 1e6)
    return statistics.median(times)
