"""TensorRT runner: a serialized engine (``.engine``/``.plan``) on an NVIDIA GPU or Jetson.

TensorRT 10 I/O-tensor API. Every I/O tensor gets a device buffer; inputs are copied to the
device in ``prepare_inputs`` (before any timing); ``timed_infer`` times ``execute_async_v3``
between two CUDA events (+ ``cudaEventSynchronize``): enqueue + GPU compute, like trtexec's
*GPU Compute Time*. ``options.include_transfers`` puts the H2D/D2H copies inside the timed
region (trtexec's *Latency*). Buffers/events use ``cuda-python`` (``cuda.bindings.runtime``):
NVIDIA's TensorRT 10 samples use it, it is small, exists on Jetson and x86, and keeps a
multi-GB CUDA torch off TensorRT-only hosts.

``spec.options``: ``input_shapes`` ({name: shape}), ``include_transfers``, ``dla_core``,
``cuda_device`` (CUDA ordinal, default 0), ``gpu_index`` (NVML index, see agents.nvml).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from agents.nvml import gpu_environment, gpu_memory_used_mb, nvml_index, with_nvml_load_delta
from latencylab.schemas import LayerProfile, MeasureSpec, TensorSpec

from .base import Runner, concrete_shape, random_tensor

TIMED_REGION = "execute_async_v3 (enqueue + GPU compute), between CUDA events"


def import_cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # cuda-python < 12.6
        except ImportError as exc:
            raise RuntimeError(
                "the tensorrt runner needs cuda-python for device buffers and CUDA events: "
                "pip install 'cuda-python' (same major version as the CUDA TensorRT uses)"
            ) from exc
    return cudart


def _import_trt() -> Any:
    try:
        import tensorrt as trt
    except ImportError as exc:
        msg = f"TensorRT is not importable ({exc}): pip install 'latencylab[tensorrt]'"
        raise RuntimeError(msg + " (JetPack ships it on a Jetson)") from exc
    return trt


def _profile(engine: Any, name: str) -> Any:
    try:
        return [list(s) for s in engine.get_tensor_profile_shape(name, 0)]
    except Exception:
        return "unknown"


class _Cuda:
    """cuda-python calls return ``(err, *values)``; this raises on any error."""

    def __init__(self, cudart: Any) -> None:
        self.rt = cudart

    def __call__(self, fn: str, *args: Any) -> Any:
        result = getattr(self.rt, fn)(*args)
        err, *values = result if isinstance(result, tuple) else (result,)
        if err != self.rt.cudaError_t.cudaSuccess:
            raise RuntimeError(f"CUDA {fn} failed: {err}")
        return values[0] if len(values) == 1 else tuple(values)


class TensorRTRunner(Runner):
    runtime_name = "tensorrt"
    extra = "tensorrt"
    timer_name = "cuda_events"

    def __init__(self, spec: MeasureSpec) -> None:
        super().__init__(spec)
        self._gpu = nvml_index(spec.options)
        self._transfers = bool(spec.options.get("include_transfers", False))
        self._dla = spec.options.get("dla_core")
        self._mem: dict[str, Any] = {"nvml_used_before_load_mb": gpu_memory_used_mb(self._gpu)}
        self._trt: Any = None
        self._cuda: _Cuda | None = None
        self._engine: Any = None
        self._context: Any = None
        self._stream: Any = None
        self._events: list[Any] = []
        self._buffers: dict[str, tuple[Any, int]] = {}  # name -> (device pointer, bytes)
        self._io: list[dict[str, Any]] = []
        self._hosts: dict[str, np.ndarray[Any, Any]] = {}

    def activate(self) -> None:
        trt = self._trt = _import_trt()
        cuda = self._cuda = _Cuda(import_cudart())
        cuda("cudaSetDevice", int(self.spec.options.get("cuda_device", 0)))
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        if self._dla is not None:
            runtime.DLA_core = int(self._dla)
        self._engine = runtime.deserialize_cuda_engine(Path(self.spec.model_path).read_bytes())
        if self._engine is None:
            raise RuntimeError(
                f"TensorRT {trt.__version__} could not deserialize {self.spec.model_path}: an "
                "engine runs only with the TensorRT version and GPU model that built it; "
                "rebuild it on this agent (a convert:tensorrt job) - the TensorRT log is on stderr"
            )
        self._context = self._engine.create_execution_context()
        self._stream = cuda("cudaStreamCreate")
        self._events = [cuda("cudaEventCreate"), cuda("cudaEventCreate")]
        self._allocate()
        self.is_active = True

    def _allocate(self) -> None:
        """Set input shapes, then one device buffer per I/O tensor (outputs sized by TRT)."""
        trt, engine, ctx = self._trt, self._engine, self._context
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = {t.name: t for t in self.input_specs()}
        for name in names:
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                shape = concrete_shape(inputs[name], self.spec.batch_size)
                if not ctx.set_input_shape(name, shape):
                    raise ValueError(
                        f"input {name!r}: shape {shape} is outside the engine's profile "
                        f"(min/opt/max {_profile(self._engine, name)}); set options.input_shapes"
                    )
        assert self._cuda is not None
        for name in names:
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            shape = [int(d) for d in ctx.get_tensor_shape(name)]
            if min(shape, default=0) < 0:
                raise ValueError(f"{name!r} has a data-dependent shape {shape}: not supported")
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            nbytes = max(1, int(np.prod(shape)) * dtype.itemsize)
            ptr = self._cuda("cudaMalloc", nbytes)
            self._buffers[name] = (ptr, nbytes)
            ctx.set_tensor_address(name, int(ptr))
            self._io.append(
                {"name": name, "mode": "input" if is_input else "output", "shape": shape,
                 "dtype": str(dtype), "bytes": nbytes}
            )  # fmt: skip

    def deactivate(self) -> None:
        cuda, self._cuda = self._cuda, None
        if cuda is not None:
            for ptr, _ in self._buffers.values():
                cuda.rt.cudaFree(ptr)
            for event in self._events:
                cuda.rt.cudaEventDestroy(event)
            if self._stream is not None:
                cuda.rt.cudaStreamDestroy(self._stream)
        self._buffers, self._events, self._stream = {}, [], None
        self._context = self._engine = None
        super().deactivate()

    def input_specs(self) -> list[TensorSpec]:
        """The engine's inputs: shapes from options/spec (dynamic dims), dtypes from the engine."""
        if self._engine is None:
            return super().input_specs()
        trt, engine = self._trt, self._engine
        given = {t.name: t for t in super().input_specs()}
        specs = []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            if engine.get_tensor_mode(name) != trt.TensorIOMode.INPUT:
                continue
            dtype = str(np.dtype(trt.nptype(engine.get_tensor_dtype(name))))
            shape = given[name].shape if name in given else list(engine.get_tensor_shape(name))
            specs.append(TensorSpec(name=name, shape=shape, dtype=dtype))
        return specs

    def prepare_inputs(self, seed: int) -> Any:
        """Seeded host inputs, copied to their device buffers here, before any timing."""
        self._mem["nvml_used_after_load_mb"] = gpu_memory_used_mb(self._gpu)
        rng = np.random.default_rng(seed)
        for io in self._io:
            dtype = np.dtype(io["dtype"])
            is_in = io["mode"] == "input"
            host = random_tensor(rng, io["shape"], dtype) if is_in else np.empty(io["shape"], dtype)
            self._hosts[io["name"]] = np.ascontiguousarray(host)
        self._copies("h2d", "cudaMemcpy")
        return {io["name"]: self._hosts[io["name"]] for io in self._io if io["mode"] == "input"}

    def _copies(self, direction: str, fn: str = "cudaMemcpyAsync") -> None:
        """Copy every input host->device (``h2d``) or every output device->host (``d2h``)."""
        assert self._cuda is not None
        kind = self._cuda.rt.cudaMemcpyKind
        h2d = direction == "h2d"
        how = kind.cudaMemcpyHostToDevice if h2d else kind.cudaMemcpyDeviceToHost
        for io in self._io:
            if (io["mode"] == "input") == h2d:
                ptr, nbytes = self._buffers[io["name"]]
                host = self._hosts[io["name"]].ctypes.data
                stream = () if fn == "cudaMemcpy" else (self._stream,)
                self._cuda(fn, *((ptr, host) if h2d else (host, ptr)), nbytes, how, *stream)

    def timed_infer(self, feeds: Any) -> int:
        """CUDA-event time of one ``execute_async_v3`` (inputs already on the device), in ns."""
        cuda, (start, end) = self._cuda, self._events
        assert cuda is not None
        cuda("cudaEventRecord", start, self._stream)
        if self._transfers:
            self._copies("h2d")
        if not self._context.execute_async_v3(int(self._stream)):
            raise RuntimeError("execute_async_v3 returned False (the TensorRT error is on stderr)")
        if self._transfers:
            self._copies("d2h")
        cuda("cudaEventRecord", end, self._stream)
        cuda("cudaEventSynchronize", end)
        return round(float(cuda("cudaEventElapsedTime", start, end)) * 1e6)

    def profile(self, feeds: Any, iterations: int) -> list[LayerProfile]:
        """Per-layer times from a ``trt.IProfiler`` on a separate execution context."""
        trt, cuda = self._trt, self._cuda
        assert cuda is not None
        totals: dict[str, float] = {}

        class _Profiler(trt.IProfiler):  # type: ignore[name-defined]
            def __init__(self) -> None:
                trt.IProfiler.__init__(self)

            def report_layer_time(self, layer_name: str, ms: float) -> None:
                totals[layer_name] = totals.get(layer_name, 0.0) + float(ms)

        ctx, profiler = self._engine.create_execution_context(), _Profiler()  # both kept alive
        try:
            ctx.profiler = profiler
            for io in self._io:
                if io["mode"] == "input":
                    ctx.set_input_shape(io["name"], io["shape"])
                ctx.set_tensor_address(io["name"], int(self._buffers[io["name"]][0]))
            n = max(1, iterations)
            for i in range(n + 1):  # the first run is dropped
                if not ctx.execute_async_v3(int(self._stream)):
                    raise RuntimeError("execute_async_v3 returned False in the profile pass")
                cuda("cudaStreamSynchronize", self._stream)
                if i == 0:
                    totals.clear()
        finally:
            del ctx
        types = self._layer_types()
        return [
            LayerProfile(
                name=k, type=types.get(k), time_ms=v / n, compute_unit=self._unit(k, types)
            )
            for k, v in totals.items()
        ]

    def _layer_types(self) -> dict[str, str]:
        """Layer name -> type from the engine inspector (needs a detailed-verbosity build)."""
        try:
            inspector = self._engine.create_engine_inspector()
            info = json.loads(
                inspector.get_engine_information(self._trt.LayerInformationFormat.JSON)
            )
        except Exception:
            return {}
        layers = info.get("Layers", []) if isinstance(info, dict) else []
        return {
            str(x["Name"]): str(x.get("LayerType", ""))
            for x in layers
            if isinstance(x, dict) and "Name" in x
        }

    def _unit(self, name: str, types: dict[str, str]) -> str:
        """DLA for DLA-offloaded subgraphs when the engine runs on a DLA core, else GPU."""
        on_dla = "dla" in types.get(name, "").lower() or name.startswith("{ForeignNode")
        return "DLA" if self._dla is not None and on_dla else "GPU"

    def environment(self) -> dict[str, Any]:
        trt = self._trt or _import_trt()
        env: dict[str, Any] = {
            "runtime": self.runtime_name,
            "runtime_version": trt.__version__,
            "tensorrt_version": trt.__version__,
            "cuda_bindings": self._cuda.rt.__name__ if self._cuda else None,
            "runner_timer": "cuda_events (cudaEventRecord + cudaEventSynchronize)",
            "timed_region": TIMED_REGION + (" incl. H2D + D2H copies" if self._transfers else ""),
            "h2d_included": self._transfers,
            "d2h_included": self._transfers,
            "io_tensors": self._io,
            "dla_core": self._dla,
            "threads_requested": self.spec.threads,
            "threads_note": "TensorRT runs on the GPU; threads does not apply",
        }
        if self._engine is not None:
            engine = self._engine
            size = getattr(engine, "device_memory_size_v2", None) or engine.device_memory_size
            self._mem["engine_device_memory_mb"] = round(int(size) / 2**20, 3)
            self._mem["io_buffers_mb"] = round(sum(b for _, b in self._buffers.values()) / 2**20, 3)
            env["num_layers"] = getattr(engine, "num_layers", None)
            env["num_optimization_profiles"] = getattr(engine, "num_optimization_profiles", None)
        env["gpu_memory"] = with_nvml_load_delta(self._mem)
        env.update(gpu_environment(self._gpu))
        return env
