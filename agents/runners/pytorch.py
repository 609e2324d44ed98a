"""PyTorch eager runner (the baseline): a ``torch.export`` ``.pt2`` program, or ONNX via onnx2torch.

``spec.options`` understood here:

* ``device``: ``"cpu"`` (default) or ``"cuda"`` / ``"cuda:N"``. On CUDA each forward is
  timed with a pair of CUDA events on the current stream and a synchronize on the end event
  (``timer="cuda_events"``, the default); ``timer="sync"`` instead synchronises the device
  before and after the forward and reads ``perf_counter_ns`` (host wall time, launch cost
  included either way since eager PyTorch launches kernels from the host).
* ``input_shapes``: ``{name: shape}`` overriding the spec's input shapes.

``precision="fp16"`` casts the model and float inputs to half; ``int8`` runs the model as
stored (quantize it before export). Only the forward is timed, under ``inference_mode``.
The profile runs the module's FX graph node by node (``torch.fx.Interpreter``) and times each.
On CUDA, ``environment()["gpu_memory"]`` holds the caching allocator's figures (weights after
load, the peak from load to the end of the run, reserved) and NVML's device-wide use before
and after load.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

from latencylab.schemas import LayerProfile, MeasureSpec, TensorSpec

from .base import Runner

_FORMATS = {".pt2": "pt2", ".onnx": "onnx"}
_TIMED_OPS = ("call_function", "call_module", "call_method")
_CUDA_TIMERS = ("cuda_events", "sync")
_TIMER_NAMES = {
    "wall": "perf_counter_ns",
    "cuda_events": "cuda_events",
    "sync": "cuda_synchronize+perf_counter_ns",
}
_MB = 2**20


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise RuntimeError("PyTorch is not installed: pip install 'latencylab[torch]'") from exc
    return torch


def _model_format(spec: MeasureSpec) -> str:
    fmt = (spec.model_format or "").lower().lstrip(".")
    if fmt in ("pt2", "onnx"):
        return fmt
    suffix = _FORMATS.get(Path(spec.model_path).suffix.lower())
    if suffix is None:
        raise ValueError(
            f"the pytorch runner runs torch.export programs (.pt2, torch.export.save) or ONNX "
            f"files (through onnx2torch), not {spec.model_format!r} ({spec.model_path})"
        )
    return suffix


def _onnx_to_torch(path: str) -> Any:
    """ONNX -> torch through the converters' onnx2torch bridge (which stands in for a missing
    torchvision, needed by onnx2torch only for NMS/RoiAlign)."""
    import importlib.util

    if importlib.util.find_spec("onnx2torch") is None:
        raise RuntimeError(
            "running ONNX on the pytorch runner needs onnx2torch: pip install "
            "'latencylab[convert]', or upload a torch.export .pt2 program"
        )
    from converters.bridge import onnx_to_torch

    return onnx_to_torch(path)


class PyTorchRunner(Runner):
    """Eager ``module(*inputs)`` on CPU or CUDA."""

    runtime_name = "pytorch"
    extra = "torch"

    def __init__(self, spec: MeasureSpec) -> None:
        super().__init__(spec)
        self._device = str(spec.options.get("device") or "cpu").lower()
        self._cuda = self._device.startswith("cuda")
        self._timer = str(spec.options.get("timer") or "cuda_events") if self._cuda else "wall"
        #: what the protocol records as its timer
        self.timer_name = _TIMER_NAMES.get(self._timer, self._timer)
        self._events: tuple[Any, Any] | None = None
        self._gpu_mem: dict[str, Any] = {}
        self._format = ""
        self._module: Any = None
        self._program: Any = None
        self._dtype: Any = None

    # ----------------------------------------------------------------- lifecycle
    def _check_device(self, torch: Any) -> None:
        if self._cuda:
            if self._timer not in _CUDA_TIMERS:
                raise ValueError(f"unknown CUDA timer {self._timer!r}: use one of {_CUDA_TIMERS}")
            if not torch.cuda.is_available():
                raise RuntimeError(
                    f"device {self._device!r} requested but torch {torch.__version__} sees no "
                    f"CUDA GPU (torch.version.cuda={torch.version.cuda}); install a CUDA build "
                    "of torch on a GPU host, or use options.device='cpu'"
                )
        elif self._device != "cpu":
            raise ValueError(f"unknown torch device {self._device!r}: use 'cpu' or 'cuda[:N]'")

    def import_runtime(self) -> None:
        """Import torch and, on CUDA, create the device's context (one allocation), which
        a deployed process pays once at start-up rather than per model load."""
        torch = _torch()
        self._check_device(torch)
        if self._cuda:
            torch.zeros(1, device=self._device)
            torch.cuda.synchronize(self._device)

    def activate(self) -> None:
        torch = _torch()
        self._check_device(torch)
        if not os.path.isfile(self.spec.model_path):
            raise FileNotFoundError(f"model file not found: {self.spec.model_path}")
        if self.spec.threads:
            torch.set_num_threads(int(self.spec.threads))
        with contextlib.suppress(RuntimeError):  # settable only before any parallel work
            torch.set_num_interop_threads(1)
        self._format = _model_format(self.spec)
        if self._cuda:
            self._gpu_mem_before_load(torch)
        if self._format == "pt2":
            self._program = torch.export.load(self.spec.model_path)
            module = self._program.module()
        else:
            module = _onnx_to_torch(self.spec.model_path)
        self._dtype = torch.float16 if self.spec.precision == "fp16" else None
        module = module.to(self._device)
        if self._dtype is not None:
            module = module.to(self._dtype)
        with contextlib.suppress(NotImplementedError):  # torch.export: no train/eval switch
            module = module.eval()
        self._module = module
        if self._cuda:
            self._gpu_mem_after_load(torch)
            self._events = (
                torch.cuda.Event(enable_timing=True),
                torch.cuda.Event(enable_timing=True),
            )
        self.is_active = True

    def _gpu_mem_before_load(self, torch: Any) -> None:
        from agents.nvml import gpu_memory_used_mb, nvml_index

        dev = torch.device(self._device)
        torch.cuda.init()
        self._gpu_mem = {
            "nvml_used_before_load_mb": gpu_memory_used_mb(nvml_index(self.spec.options))
        }
        torch.cuda.reset_peak_memory_stats(dev)
        self._gpu_mem["torch_allocated_before_load_mb"] = torch.cuda.memory_allocated(dev) / _MB

    def _gpu_mem_after_load(self, torch: Any) -> None:
        from agents.nvml import gpu_memory_used_mb, nvml_index

        dev = torch.device(self._device)
        torch.cuda.synchronize(dev)
        mem = self._gpu_mem
        mem["torch_allocated_after_load_mb"] = torch.cuda.memory_allocated(dev) / _MB
        mem["nvml_used_after_load_mb"] = gpu_memory_used_mb(nvml_index(self.spec.options))

    def _gpu_mem_report(self) -> dict[str, Any]:
        from agents.nvml import with_nvml_load_delta

        torch = _torch()
        dev = torch.device(self._device)
        mem = with_nvml_load_delta(self._gpu_mem)
        if torch.cuda.is_initialized():
            mem["torch_peak_allocated_mb"] = torch.cuda.max_memory_allocated(dev) / _MB
            mem["torch_peak_reserved_mb"] = torch.cuda.max_memory_reserved(dev) / _MB
        mem["scope"] = (
            "torch_*: this process's caching allocator (peak from load to the end of the run, "
            "profile included); nvml_*: whole device, CUDA context included"
        )
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in mem.items()}

    def deactivate(self) -> None:
        self._module = self._program = self._events = None
        super().deactivate()

    # ----------------------------------------------------------------- inputs
    def input_specs(self) -> list[TensorSpec]:
        """The spec's inputs, or the exported program's user inputs when it lists none."""
        if self.spec.inputs or self._program is None:
            return super().input_specs()
        overrides = self.spec.options.get("input_shapes") or {}
        user = set(self._program.graph_signature.user_inputs)
        specs = []
        for node in self._program.graph.nodes:
            if node.op != "placeholder" or node.name not in user:
                continue
            val = node.meta.get("val")
            shape = [d if isinstance(d, int) else str(d) for d in getattr(val, "shape", [])]
            dtype = str(getattr(val, "dtype", "torch.float32"))
            specs.append(
                TensorSpec(name=node.name, shape=overrides.get(node.name, shape), dtype=dtype)
            )
        return specs

    def prepare_inputs(self, seed: int) -> Any:
        """Positional input tensors on the target device (built before any timing)."""
        torch = _torch()
        arrays = super().prepare_inputs(seed)
        tensors = []
        for arr in arrays.values():
            t = torch.from_numpy(arr).to(self._device)
            if self._dtype is not None and t.is_floating_point():
                t = t.to(self._dtype)
            tensors.append(t)
        return tuple(tensors)

    # ----------------------------------------------------------------- running
    def timed_infer(self, feeds: Any) -> int:
        torch = _torch()
        module = self._module
        with torch.inference_mode():
            if not self._cuda:
                t0 = time.perf_counter_ns()
                module(*feeds)
                return time.perf_counter_ns() - t0
            if self._events is not None and self._timer == "cuda_events":
                start, end = self._events
                start.record()
                module(*feeds)
                end.record()
                end.synchronize()
                return int(start.elapsed_time(end) * 1e6)  # ms -> ns
            torch.cuda.synchronize()
            t0 = time.perf_counter_ns()
            module(*feeds)
            torch.cuda.synchronize()
            return time.perf_counter_ns() - t0

    def profile(self, feeds: Any, iterations: int) -> list[LayerProfile]:
        """Per-FX-node times (``call_function``/``call_module``/``call_method``)."""
        torch = _torch()
        from torch import fx

        if not isinstance(self._module, fx.GraphModule):
            return []
        cuda = self._cuda
        totals: dict[str, float] = {}
        types: dict[str, str] = {}

        class _Timed(fx.Interpreter):
            def run_node(self, n: Any) -> Any:
                if n.op not in _TIMED_OPS or n.name.startswith("_guards"):
                    return super().run_node(n)
                t0 = time.perf_counter_ns()
                out = super().run_node(n)
                if cuda:
                    torch.cuda.synchronize()
                totals[n.name] = totals.get(n.name, 0.0) + (time.perf_counter_ns() - t0) / 1e6
                types.setdefault(n.name, getattr(n.target, "__name__", str(n.target)))
                return out

        interp = _Timed(self._module)
        n = max(1, iterations)
        with torch.inference_mode():
            interp.run(*feeds)  # first run dropped
            totals.clear()
            for _ in range(n):
                interp.run(*feeds)
        unit = "CUDA" if cuda else "CPU"
        return [
            LayerProfile(name=k, type=types[k], time_ms=v / n, compute_unit=unit)
            for k, v in totals.items()
        ]

    def environment(self) -> dict[str, Any]:
        torch = _torch()
        env: dict[str, Any] = {
            "runtime": self.runtime_name,
            "runtime_version": torch.__version__,
            "torch_version": torch.__version__,
            "model_format": self._format or None,
            "device": self._device,
            "threads_requested": self.spec.threads,
            "num_threads": torch.get_num_threads(),
            "num_interop_threads": torch.get_num_interop_threads(),
            "dtype": str(self._dtype or "as stored"),
            "inference_mode": True,
            "profile_method": "torch.fx.Interpreter per-node wall time",
        }
        if self._cuda:
            env["cuda_version"] = torch.version.cuda
            env["cudnn_version"] = torch.backends.cudnn.version()
            env["cudnn_benchmark"] = torch.backends.cudnn.benchmark
            env["cuda_timer"] = self._timer
            if torch.cuda.is_available():
                env["gpu_name"] = torch.cuda.get_device_name(torch.device(self._device))
                env["gpu_memory"] = self._gpu_mem_report()
            from agents.nvml import gpu_environment, nvml_index

            env.update(gpu_environment(nvml_index(self.spec.options)))
        if self.spec.precision == "int8":
            env["precision_note"] = "int8: the model runs as stored (quantize before export)"
        return env
