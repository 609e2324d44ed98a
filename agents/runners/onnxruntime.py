"""ONNX Runtime runner (CPU EP by default; CUDA/TensorRT EPs on request).

``spec.options`` understood here:

* ``providers``: list of execution providers, e.g. ``["CUDAExecutionProvider",
  "CPUExecutionProvider"]`` (default ``["CPUExecutionProvider"]``). A provider this
  onnxruntime build lacks is an error, not a silent CPU fallback.
* ``provider_options``: list of dicts, one per provider (passed through).
* ``input_shapes``: ``{name: shape}`` overriding the spec's input shapes.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from latencylab.schemas import LayerProfile, MeasureSpec, TensorSpec

from .base import Runner

_DEFAULT_PROVIDERS = ["CPUExecutionProvider"]


def parse_profile_trace(events: list[dict[str, Any]]) -> list[LayerProfile]:
    """Per-node average kernel time from an ORT profiling trace (chrome-trace JSON).

    Node events (``cat == "Node"``, name ``<node>_kernel_time``) of the first
    ``model_run`` are discarded as warm-up when later runs exist; the rest are averaged
    over the number of runs kept. Layers come in first-execution order.
    """
    runs = sorted(
        (e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
        key=lambda e: e.get("ts", 0),
    )
    skip_before = -1.0
    n_runs = max(1, len(runs))
    if len(runs) > 1:
        skip_before = float(runs[0]["ts"]) + float(runs[0].get("dur", 0))
        n_runs = len(runs) - 1
    totals: dict[str, float] = {}
    meta: dict[str, tuple[str | None, str | None]] = {}
    nodes = sorted(
        (
            e
            for e in events
            if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time")
        ),
        key=lambda e: e.get("ts", 0),
    )
    for e in nodes:
        if float(e.get("ts", 0)) <= skip_before:
            continue
        name = str(e["name"])[: -len("_kernel_time")]
        args = e.get("args") or {}
        totals[name] = totals.get(name, 0.0) + float(e.get("dur", 0)) / 1000.0  # us -> ms
        meta.setdefault(name, (args.get("op_name"), args.get("provider")))
    return [
        LayerProfile(
            name=name, type=meta[name][0], time_ms=total / n_runs, compute_unit=meta[name][1]
        )
        for name, total in totals.items()
    ]


class OnnxRuntimeRunner(Runner):
    """``onnxruntime.InferenceSession`` timed around ``session.run(None, feeds)``."""

    runtime_name = "onnxruntime"
    extra = "onnxruntime"

    def __init__(self, spec: MeasureSpec) -> None:
        super().__init__(spec)
        self._session: Any = None
        self._providers: list[str] = list(spec.options.get("providers") or _DEFAULT_PROVIDERS)
        self._provider_options: list[dict[str, Any]] | None = spec.options.get("provider_options")

    # ----------------------------------------------------------------- lifecycle
    def _session_options(self, *, profile_prefix: str | None = None) -> Any:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = int(self.spec.threads)  # 0 = ORT default
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3  # errors only: keep stderr readable
        if profile_prefix is not None:
            so.enable_profiling = True
            so.profile_file_prefix = profile_prefix
        return so

    def _new_session(self, so: Any) -> Any:
        import onnxruntime as ort

        available = ort.get_available_providers()
        missing = [p for p in self._providers if p not in available]
        if missing:
            raise ValueError(
                f"execution provider(s) {missing} not available in this onnxruntime build "
                f"(available: {available})"
            )
        return ort.InferenceSession(
            self.spec.model_path,
            sess_options=so,
            providers=self._providers,
            provider_options=self._provider_options,
        )

    def activate(self) -> None:
        self._session = self._new_session(self._session_options())
        self.is_active = True

    def deactivate(self) -> None:
        self._session = None
        super().deactivate()

    # ----------------------------------------------------------------- inputs
    def input_specs(self) -> list[TensorSpec]:
        """The spec's inputs, or the session's own when the spec lists none."""
        if self.spec.inputs or self._session is None:
            return super().input_specs()
        overrides = self.spec.options.get("input_shapes") or {}
        return [
            TensorSpec(
                name=i.name,
                shape=list(overrides.get(i.name, i.shape)),
                dtype=str(i.type),
            )
            for i in self._session.get_inputs()
        ]

    def prepare_inputs(self, seed: int) -> Any:
        """Seeded random feeds, checked against the session's input names."""
        feeds = super().prepare_inputs(seed)
        if self._session is not None:
            expected = sorted(i.name for i in self._session.get_inputs())
            if sorted(feeds) != expected:
                raise ValueError(
                    f"the model's inputs are {expected}, the spec gives {sorted(feeds)}"
                )
        return feeds

    # ----------------------------------------------------------------- running
    def timed_infer(self, feeds: Any) -> int:
        run = self._session.run
        t0 = time.perf_counter_ns()
        run(None, feeds)
        return time.perf_counter_ns() - t0

    def profile(self, feeds: Any, iterations: int) -> list[LayerProfile]:
        """A separate profiling session (the measured one is left untouched)."""
        with tempfile.TemporaryDirectory(prefix="ll-ort-prof-") as tmp:
            session = self._new_session(
                self._session_options(profile_prefix=str(Path(tmp) / "ort"))
            )
            trace = ""
            try:
                for _ in range(max(1, iterations) + 1):  # +1: first run is dropped
                    session.run(None, feeds)
            finally:
                trace = session.end_profiling()
                del session
            try:
                with open(trace) as fh:
                    events = json.load(fh)
            finally:
                if trace and os.path.exists(trace):
                    os.remove(trace)
        return parse_profile_trace(events)

    def environment(self) -> dict[str, Any]:
        import onnxruntime as ort

        env: dict[str, Any] = {
            "runtime": self.runtime_name,
            "runtime_version": ort.__version__,
            "onnxruntime_version": ort.__version__,
            "available_providers": ort.get_available_providers(),
            "requested_providers": self._providers,
            "ort_device": ort.get_device(),
        }
        if self._session is not None:
            so = self._session.get_session_options()
            env["providers"] = self._session.get_providers()
            env["intra_op_num_threads"] = so.intra_op_num_threads
            env["inter_op_num_threads"] = so.inter_op_num_threads
            env["execution_mode"] = str(so.execution_mode)
            env["graph_optimization_level"] = str(so.graph_optimization_level)
        env["threads_requested"] = self.spec.threads
        if self.spec.threads == 0:
            env["threads_note"] = "0 = onnxruntime default (one per physical core)"
        if {"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(self._providers):
            from agents.nvml import gpu_environment, nvml_index

            env.update(gpu_environment(nvml_index(self.spec.options)))
        return env
