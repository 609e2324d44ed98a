"""A dummy runtime for tests/test_runtime_declaration.py: declared only through
``LATENCYLAB_EXTRA_RUNTIMES`` (never in latencylab/runtimes.py), it "runs" any ONNX upload by
timing a seeded numpy matrix product of ``options.size`` (the model file is only checked to
exist)."""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from agents.runners.base import Runner
from latencylab.schemas import LayerProfile
from tests.dummy_options import DummyOptions


class DummyRunner(Runner):
    runtime_name = "numpydummy"
    extra = "agent"
    options: DummyOptions

    def activate(self) -> None:
        if not os.path.isfile(self.spec.model_path):
            raise FileNotFoundError(self.spec.model_path)
        self.is_active = True

    def prepare_inputs(self, seed: int) -> Any:
        n = int(self.options.size or 64)
        rng = np.random.default_rng(seed)
        return rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)  # fmt: skip

    def timed_infer(self, feeds: Any) -> int:
        a, b = feeds
        t0 = time.perf_counter_ns()
        np.dot(a, b)
        return time.perf_counter_ns() - t0

    def profile(self, feeds: Any, iterations: int) -> list[LayerProfile]:
        return [LayerProfile(name="dot", type="matmul", time_ms=self.timed_infer(feeds) / 1e6, compute_unit="numpy")]  # fmt: skip

    def environment(self) -> dict[str, Any]:
        return {"runtime": self.runtime_name, "matrix_size": int(self.options.size or 64)}
