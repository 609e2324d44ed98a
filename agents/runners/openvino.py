"""OpenVINO runner: ``ov.Core().compile_model`` + one ``InferRequest`` timed around ``infer()``.

``spec.options`` understood here:

* ``device``: OpenVINO device, ``"CPU"`` (default), ``"GPU"``, ``"NPU"``, ``"GPU.1"``,
  ``"AUTO:GPU,CPU"``, ... A plain device this machine lacks is an error, never a fallback.
* ``config``: extra compile properties passed through (they win over the defaults below).
* ``input_shapes``: ``{name: shape}``; dynamic dims are made static before compiling.

Defaults: ``PERFORMANCE_HINT=LATENCY``, ``INFERENCE_NUM_THREADS=spec.threads`` (CPU only,
unless 0) and ``INFERENCE_PRECISION_HINT`` set explicitly (f32 for fp32 and int8, f16 for
fp16) because the CPU plugin otherwise picks bf16 on CPUs with AMX/AVX512-BF16. The values
the compiled model reports back are recorded in the environment.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

from latencylab.schemas import LayerProfile, MeasureSpec, TensorSpec

from .base import Runner, concrete_shape

_PRECISION_HINTS = {"fp32": "f32", "fp16": "f16", "int8": "f32"}
_VIRTUAL_DEVICES = ("AUTO", "MULTI", "HETERO", "BATCH")
_READ_BACK = (
    "INFERENCE_PRECISION_HINT",
    "INFERENCE_NUM_THREADS",
    "PERFORMANCE_HINT",
    "NUM_STREAMS",
    "EXECUTION_MODE_HINT",
    "ENABLE_HYPER_THREADING",
    "ENABLE_CPU_PINNING",
    "SCHEDULING_CORE_TYPE",
    "EXECUTION_DEVICES",
)


def _ov() -> Any:
    try:
        import openvino as ov
    except ImportError as exc:
        raise RuntimeError("OpenVINO is not installed: pip install 'latencylab[openvino]'") from exc
    return ov


def _text(value: Any) -> Any:
    """Property values as JSON-friendly text (``<Type: 'float32'>`` -> ``f32``)."""
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_text(v) for v in value]
    name = getattr(value, "get_type_name", None)
    if callable(name):
        return str(name())
    return str(getattr(value, "name", value))


def _node_totals(infos: Any, runs: int) -> dict[str, tuple[float, str, str]]:
    """``{node: (total ms over all runs so far, node type, kernel)}`` of executed nodes, from
    the running averages ``real_time`` the plugin reports after ``runs`` inferences."""
    out: dict[str, tuple[float, str, str]] = {}
    for info in infos:
        if str(info.status).rsplit(".", 1)[-1] != "EXECUTED":
            continue  # fused into a neighbour or optimised out
        total = info.real_time.total_seconds() * 1e3 * runs
        prev = out.get(info.node_name, (0.0, "", ""))[0]
        out[info.node_name] = (prev + total, str(info.node_type), str(info.exec_type or ""))
    return out


def _compute_unit(compiled: Any, device: str) -> str:
    """The device the nodes ran on (``CPU``, ``GPU.0``): AUTO/MULTI say which they chose."""
    try:
        chosen = _text(compiled.get_property("EXECUTION_DEVICES"))
    except Exception:
        chosen = None
    if isinstance(chosen, list) and len(chosen) == 1:
        return str(chosen[0])
    return device.split(":")[0].upper()


class OpenVinoRunner(Runner):
    """One ONNX or IR (``.xml`` + ``.bin``) model compiled for an OpenVINO device."""

    runtime_name = "openvino"
    extra = "openvino"

    def __init__(self, spec: MeasureSpec) -> None:
        super().__init__(spec)
        self._device = str(spec.options.get("device") or "CPU")
        self._core: Any = None
        self._model: Any = None
        self._compiled: Any = None
        self._request: Any = None
        self._config: dict[str, Any] = {}
        self._profile_env: dict[str, Any] = {}

    # ----------------------------------------------------------------- lifecycle
    def _check_device(self) -> None:
        base = self._device.split(":")[0].split(".")[0].upper()
        if base in _VIRTUAL_DEVICES:
            return
        available = list(self._core.available_devices)
        names = {d.upper() for d in available} | {d.split(".")[0].upper() for d in available}
        if self._device.upper() not in names:
            hint = " (GPU needs the Intel GPU driver / OpenCL runtime)" if base == "GPU" else ""
            raise RuntimeError(
                f"OpenVINO device {self._device!r} is not available on this machine "
                f"(available: {available}){hint}; choose one of those with options.device"
            )

    def _properties(self, *, perf_count: bool = False) -> dict[str, Any]:
        props: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        hint = _PRECISION_HINTS.get(self.spec.precision)
        if hint is not None:
            props["INFERENCE_PRECISION_HINT"] = hint
        if self.spec.threads and self._device.upper().startswith("CPU"):
            props["INFERENCE_NUM_THREADS"] = int(self.spec.threads)
        props.update(self.spec.options.get("config") or {})
        if perf_count:
            props["PERF_COUNT"] = True
        return props

    def _static_model(self) -> Any:
        model = self._core.read_model(self.spec.model_path)
        shapes: dict[str, list[int]] = {}
        for t in self.input_specs_from(model):
            shapes[t.name] = concrete_shape(t, self.spec.batch_size)
        if any(inp.get_partial_shape().is_dynamic for inp in model.inputs) or shapes != {
            inp.get_any_name(): list(inp.get_partial_shape().to_shape()) for inp in model.inputs
        }:
            model.reshape(shapes)
        return model

    def activate(self) -> None:
        ov = _ov()
        if not os.path.isfile(self.spec.model_path):
            raise FileNotFoundError(f"model file not found: {self.spec.model_path}")
        self._core = ov.Core()
        self._check_device()
        self._model = self._static_model()
        self._config = self._properties()
        self._compiled = self._core.compile_model(self._model, self._device, self._config)
        self._request = self._compiled.create_infer_request()
        self.is_active = True

    def deactivate(self) -> None:
        self._request = self._compiled = self._model = self._core = None
        super().deactivate()

    # ----------------------------------------------------------------- inputs
    def input_specs_from(self, model: Any) -> list[TensorSpec]:
        """The spec's inputs, or the model's own (dynamic dims as ``None``) when it lists none."""
        if self.spec.inputs:
            return super().input_specs()
        overrides = self.spec.options.get("input_shapes") or {}
        specs = []
        for inp in model.inputs:
            name = inp.get_any_name()
            ps = inp.get_partial_shape()
            dims = [d.get_length() if d.is_static else None for d in ps]
            specs.append(
                TensorSpec(
                    name=name,
                    shape=list(overrides.get(name, dims)),
                    dtype=inp.get_element_type().to_dtype().name,
                )
            )
        return specs

    def input_specs(self) -> list[TensorSpec]:
        if self.spec.inputs or self._model is None:
            return super().input_specs()
        return self.input_specs_from(self._model)

    def prepare_inputs(self, seed: int) -> Any:
        """Seeded random inputs, set on the request now (outside any timing)."""
        ov = _ov()
        feeds = super().prepare_inputs(seed)
        expected = sorted(i.get_any_name() for i in self._compiled.inputs)
        if sorted(feeds) != expected:
            raise ValueError(f"the model's inputs are {expected}, the spec gives {sorted(feeds)}")
        for name, arr in feeds.items():
            self._request.set_tensor(name, ov.Tensor(arr))
        return feeds

    # ----------------------------------------------------------------- running
    def timed_infer(self, feeds: Any) -> int:
        infer = self._request.infer
        t0 = time.perf_counter_ns()
        infer(share_outputs=True)  # outputs as views: no copy inside the timed region
        return time.perf_counter_ns() - t0

    def profile(self, feeds: Any, iterations: int) -> list[LayerProfile]:
        """Each node's mean ``real_time`` over ``iterations`` runs of a separate PERF_COUNT model.

        OpenVINO's CPU plugin reports a node's ``real_time`` as its running average over every
        inference since the model was compiled (``PerfCount::avg()``: total microseconds /
        count), the slow first run included, not the last run's time. Reading it after each
        run and averaging the readings counted the first runs many times over, so the layer
        sum came out above what the runs took. The counters are read twice instead, after a
        warm-up and after the last profiled run: a node's mean over the profiled runs alone
        is the difference of its two running totals (average x count) over ``iterations``.
        The profiled runs are timed too (``profile_wall_p50_ms`` / ``_mean_ms`` in the
        environment), so the layer sum can be set against what those very runs took.
        """
        ov = _ov()
        compiled = self._core.compile_model(
            self._model, self._device, self._properties(perf_count=True)
        )
        request = compiled.create_infer_request()
        for name, arr in feeds.items():
            request.set_tensor(name, ov.Tensor(arr))
        warmup = max(1, min(self.spec.settings.warmup_runs, 10))
        for _ in range(warmup):
            request.infer(share_outputs=True)
        before = _node_totals(request.profiling_info, warmup)
        n = max(1, iterations)
        infer = request.infer
        walls: list[int] = []
        for _ in range(n):
            t0 = time.perf_counter_ns()
            infer(share_outputs=True)
            walls.append(time.perf_counter_ns() - t0)
        after = _node_totals(request.profiling_info, warmup + n)
        unit = _compute_unit(compiled, self._device)
        del request, compiled
        self._profile_env = {
            "profile_warmup_runs": warmup,
            "profile_wall_p50_ms": statistics.median(walls) / 1e6,
            "profile_wall_mean_ms": statistics.fmean(walls) / 1e6,
            "profile_counters": "PERF_COUNT real_time: running average since compile; "
            "per-run mean taken from the totals after warm-up and after the profiled runs",
        }
        return [
            LayerProfile(
                name=name,
                type=node_type,
                time_ms=max(0.0, (total - before.get(name, (0.0, "", ""))[0]) / n),
                compute_unit=unit,
                kernel=kernel or None,
            )
            for name, (total, node_type, kernel) in after.items()
        ]

    def environment(self) -> dict[str, Any]:
        ov = _ov()
        env: dict[str, Any] = {
            "runtime": self.runtime_name,
            "runtime_version": ov.get_version(),
            "openvino_version": ov.__version__,
            "device": self._device,
            "threads_requested": self.spec.threads,
            "requested_properties": {k: _text(v) for k, v in self._config.items()},
        }
        if self._core is not None:
            env["available_devices"] = list(self._core.available_devices)
            try:
                base = self._device.split(":")[0]
                env["full_device_name"] = self._core.get_property(base, "FULL_DEVICE_NAME")
            except Exception:
                env["full_device_name"] = None
        if self._compiled is not None:
            for key in _READ_BACK:
                try:
                    env[key.lower()] = _text(self._compiled.get_property(key))
                except Exception:
                    continue
            requested = self._config.get("INFERENCE_PRECISION_HINT")
            granted = env.get("inference_precision_hint")
            if requested is not None and granted is not None and str(requested) != granted:
                env["precision_note"] = (
                    f"requested INFERENCE_PRECISION_HINT {requested}, the device runs {granted}"
                )
            env["inputs"] = [
                {"name": i.get_any_name(), "shape": list(i.get_shape())}
                for i in self._compiled.inputs
            ]
        if self.spec.threads == 0:
            env["threads_note"] = "0 = OpenVINO default (INFERENCE_NUM_THREADS not set)"
        env.update(self._profile_env)
        return env
