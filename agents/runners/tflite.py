"""TFLite / LiteRT runner: ``ai_edge_litert.interpreter.Interpreter`` timed around ``invoke()``.

``spec.options`` (``latencylab.runtime_options.TFLiteOptions``, a closed set):

* ``delegate``: ``"xnnpack"`` (default: LiteRT's default CPU delegate), ``"none"`` (plain
  builtin kernels, no default delegate), ``"gpu"`` (the GPU delegate) or the name of a
  delegate the agent's operator configured (``AgentSettings.delegates``: name -> library and
  options). A caller names a delegate; only the operator gives a library path.
* ``input_shapes``: ``{input name: shape}`` overriding the model's own input shapes.

The operator may also point the agent at the C++ ``benchmark_model`` tool
(``LATENCYLAB_AGENT_TFLITE_BENCHMARK_MODEL``); the profile phase then runs it with
``--enable_op_profiling`` instead of the default below.

The profile phase (per-operator times) does not use the Python Interpreter, which has no op
profiler: by default it compiles the same ``.tflite`` with the LiteRT C API in the wheel's
``libLiteRt.so`` (``agents.runners.litert_profiler``, ctypes) on the CPU accelerator, with
the same kernels (XNNPACK, or builtin ones for ``delegate: none``), thread count (LiteRT
applies it to XNNPACK only), seeded inputs and batch size, and reads LiteRT's profiler: one
row per operator, ``time_ms`` its mean per inference. GPU and external delegates are not
profiled that way (the C API profile would be of the CPU); then a ``benchmark_model`` on
``PATH`` is used if there is one, else the profile is empty and ``environment.profile_note``
says why (as it does when the library lacks the C API).

Inputs follow the interpreter's own input details (a .tflite is often NHWC where the
ONNX source was NCHW); the batch size is applied with ``resize_tensor_input``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

from latencylab.runtime_options import DelegateLibrary, TFLiteOptions
from latencylab.schemas import LayerProfile, MeasureSpec, TensorSpec

from .base import Runner, random_tensor

GPU_DELEGATE_LIBRARY = "libtensorflowlite_gpu_delegate.so"
_INSTALL = "pip install 'latencylab[tflite]'"


def _interpreter_module() -> Any:
    try:
        from ai_edge_litert import interpreter
    except ImportError:
        try:
            from tflite_runtime import interpreter
        except ImportError as exc:
            raise RuntimeError(f"LiteRT is not installed: {_INSTALL}") from exc
    return interpreter


def _runtime_version() -> str:
    try:
        import ai_edge_litert

        return str(ai_edge_litert.__version__)
    except ImportError:
        import tflite_runtime

        return str(tflite_runtime.__version__)


# ``delegate`` values that run on the interpreter's own CPU kernels (no delegate at all)
_BUILTIN_KERNELS = ("none", "cpu")


class TFLiteRunner(Runner):
    """One ``.tflite`` model on the LiteRT interpreter (XNNPACK by default)."""

    runtime_name = "tflite"
    extra = "tflite"
    options: TFLiteOptions

    def __init__(self, spec: MeasureSpec) -> None:
        super().__init__(spec)
        self._interp: Any = None
        self._delegates: list[Any] = []
        self._delegate = str(self.options.delegate or "xnnpack")
        self._builtin = self._delegate in _BUILTIN_KERNELS
        self._on_cpu = self._builtin or self._delegate == "xnnpack"  # no external delegate
        self._delegate_library: str | None = None
        self._delegate_nodes: int | None = None
        self._nodes: int | None = None
        self._resized: list[str] = []
        self._profile_note = "no profile run"

    # ----------------------------------------------------------------- lifecycle
    def import_runtime(self) -> None:
        """Import the interpreter module (timed by the protocol apart from the model load)."""
        _interpreter_module()

    def _delegate_config(self) -> DelegateLibrary:
        """The library behind the named delegate: the agent operator's configuration, or the
        GPU delegate's standard soname. A caller never supplies a path."""
        configured = self.spec.host.delegates
        if self._delegate in configured:
            return configured[self._delegate]
        if self._delegate == "gpu":
            return DelegateLibrary(library=GPU_DELEGATE_LIBRARY)
        offered = sorted({"xnnpack", "none", "gpu", *configured})
        raise ValueError(
            f"TFLite delegate {self._delegate!r} is not configured on this agent (it offers: "
            f"{', '.join(offered)}); the agent's operator adds delegates with "
            "LATENCYLAB_AGENT_DELEGATES (see docs/agents.md)"
        )

    def _load_delegates(self, mod: Any) -> list[Any]:
        if self._on_cpu:
            return []
        config = self._delegate_config()
        self._delegate_library = config.library
        try:
            return [mod.load_delegate(config.library, dict(config.options) or None)]
        except (ValueError, OSError, RuntimeError) as exc:
            raise RuntimeError(
                f"TFLite delegate {self._delegate!r} is not available on this device: the "
                f"library {Path(config.library).name!r} did not load ({type(exc).__name__}). The agent's "
                "operator configures delegates (LATENCYLAB_AGENT_DELEGATES); or measure with "
                "delegate 'xnnpack'"
            ) from exc

    def _resize_inputs(self) -> None:
        overrides = self.spec.options.get("input_shapes") or {}
        batch = int(self.spec.batch_size)
        for d in self._interp.get_input_details():
            shape = [int(v) for v in d["shape"]]
            signature = [int(v) for v in d.get("shape_signature", d["shape"])]
            want = list(overrides.get(d["name"], shape))
            # Batch: a dynamic first dim, or a batch-1 export asked for more (where it allows).
            dynamic = bool(signature) and signature[0] == -1
            if d["name"] not in overrides and shape and (dynamic or (shape[0] == 1 < batch)):
                want[0] = batch
            if [int(v) for v in want] != shape:
                self._interp.resize_tensor_input(d["index"], [int(v) for v in want])
                self._resized.append(d["name"])

    def activate(self) -> None:
        mod = _interpreter_module()
        if not os.path.isfile(self.spec.model_path):
            raise FileNotFoundError(f"model file not found: {self.spec.model_path}")
        with open(self.spec.model_path, "rb") as fh:
            if fh.read(8)[4:] != b"TFL3":
                raise ValueError(
                    f"{self.spec.model_path} is not a TFLite flatbuffer (format "
                    f"{self.spec.model_format!r}): the tflite runtime needs a .tflite model; "
                    "convert the upload first (ONNX is measured with onnxruntime or openvino)"
                )
        self._delegates = self._load_delegates(mod)
        kwargs: dict[str, Any] = {"num_threads": int(self.spec.threads) or None}
        if self._delegates:
            kwargs["experimental_delegates"] = self._delegates
        if self._builtin:
            kwargs["experimental_op_resolver_type"] = (
                mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
            )
        self._interp = mod.Interpreter(model_path=self.spec.model_path, **kwargs)
        self._resize_inputs()
        try:
            self._interp.allocate_tensors()
        except (RuntimeError, ValueError) as exc:
            if not self._resized:
                raise
            raise ValueError(
                f"the model does not accept inputs resized to batch {self.spec.batch_size} "
                f"({exc}); measure with its own batch size or export it with a dynamic batch"
            ) from exc
        self._count_delegate_nodes()
        self.is_active = True

    def _count_delegate_nodes(self) -> None:
        try:  # private API: the execution plan ends with one DELEGATE node per partition
            ops = self._interp._get_ops_details()
        except Exception:
            return
        self._nodes = len(ops)
        self._delegate_nodes = sum(1 for op in ops if op.get("op_name") == "DELEGATE")

    def deactivate(self) -> None:
        self._interp = None
        self._delegates = []
        super().deactivate()

    # ----------------------------------------------------------------- inputs
    def input_specs(self) -> list[TensorSpec]:
        """The interpreter's own inputs (after any resize), not the upload's ONNX layout."""
        if self._interp is None:
            return super().input_specs()
        return [
            TensorSpec(
                name=d["name"], shape=[int(v) for v in d["shape"]], dtype=np.dtype(d["dtype"]).name
            )
            for d in self._interp.get_input_details()
        ]

    def prepare_inputs(self, seed: int) -> Any:
        """Seeded random inputs, written into the interpreter now (outside any timing)."""
        rng = np.random.default_rng(seed)
        feeds: dict[int, Any] = {}
        for d in self._interp.get_input_details():
            arr = random_tensor(rng, [int(v) for v in d["shape"]], np.dtype(d["dtype"]))
            self._interp.set_tensor(d["index"], arr)
            feeds[int(d["index"])] = arr
        return feeds

    # ----------------------------------------------------------------- running
    def timed_infer(self, feeds: Any) -> int:
        invoke = self._interp.invoke
        t0 = time.perf_counter_ns()
        invoke()
        return time.perf_counter_ns() - t0

    def profile(self, feeds: Any, iterations: int) -> list[LayerProfile]:
        """Per-operator profile: the LiteRT C API profiler by default, else ``benchmark_model``.

        Never raises for a profile that cannot be taken: it returns ``[]`` and says why in
        ``environment.profile_note``."""
        tool = self.spec.host.tflite_benchmark_model
        if tool is not None:
            return self._profile_with_tool(tool, iterations)
        try:
            return self._profile_with_c_api(feeds, iterations)
        except (ImportError, OSError, RuntimeError) as exc:  # LiteRtError is a RuntimeError
            reason = str(exc)
        tool = shutil.which("benchmark_model")
        if tool is not None:
            return self._profile_with_tool(tool, iterations)
        self._profile_note = (
            f"no per-layer profile: {reason}; the LiteRT Python API has no op profiler, so the "
            "agent's operator can set LATENCYLAB_AGENT_TFLITE_BENCHMARK_MODEL to the C++ "
            "benchmark_model tool for one"
        )
        return []

    def _profile_with_c_api(self, feeds: Any, iterations: int) -> list[LayerProfile]:
        from .litert_profiler import LiteRtOpProfiler

        if not self._on_cpu:
            raise RuntimeError(
                f"the LiteRT C API profiler runs on the CPU only, so it cannot profile the "
                f"{self._delegate!r} delegate"
            )
        threads = int(self.spec.threads)
        with LiteRtOpProfiler(
            self.spec.model_path,
            num_threads=threads,
            kernel_mode="builtin" if self._builtin else None,
        ) as profiler:
            run = profiler.profile(feeds, max(1, iterations))
        kernels = "builtin kernels" if self._builtin else "XNNPACK"
        count = f"{threads} thread{'s' if threads > 1 else ''}" if threads else "1 thread (default)"
        note = (
            f"op profile from the LiteRT C API profiler (libLiteRt.so CompiledModel, CPU, "
            f"{kernels}, {count}), "
            f"{run.iterations} iterations at input shapes {run.input_shapes}; sum of op means "
            f"{run.op_ms:.3f} ms vs {run.wall_ms:.3f} ms per profiled run"
        )
        if self._builtin and threads > 1:
            note += "; LiteRT applies the thread count to XNNPACK only, builtin kernels ran on 1"
        self._profile_note = note
        return run.layers

    def _profile_with_tool(self, tool: str, iterations: int) -> list[LayerProfile]:
        """Op profile from the C++ ``benchmark_model`` tool."""
        from agents.parsers.tflite_benchmark import parse_tflite_benchmark

        cmd = [tool, f"--graph={self.spec.model_path}", "--enable_op_profiling=true"]
        cmd += [f"--num_runs={max(1, iterations)}", "--warmup_runs=1", "--min_secs=0"]
        if self.spec.threads:
            cmd.append(f"--num_threads={int(self.spec.threads)}")
        cmd.append(f"--use_xnnpack={'true' if self._delegate == 'xnnpack' else 'false'}")
        if self._delegate == "gpu":
            cmd.append("--use_gpu=true")
        if self._resized:
            details = {d["name"]: d for d in self._interp.get_input_details()}
            shapes = [",".join(str(int(v)) for v in details[n]["shape"]) for n in self._resized]
            cmd += [f"--input_layer={','.join(self._resized)}"]
            cmd += [f"--input_layer_shape={':'.join(shapes)}"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            raise RuntimeError(f"{tool} exited with code {proc.returncode}: {tail}")
        parsed = parse_tflite_benchmark(proc.stdout + "\n" + proc.stderr)
        self._profile_note = f"op profile from {tool} --enable_op_profiling"
        unit = {"xnnpack": "XNNPACK", "gpu": "GPU"}.get(self._delegate, "CPU")
        return [
            LayerProfile(name=row.name, type=row.type, time_ms=row.time_ms, compute_unit=unit)
            for row in parsed.op_profile
        ]

    def environment(self) -> dict[str, Any]:
        threads = int(self.spec.threads)
        env: dict[str, Any] = {
            "runtime": self.runtime_name,
            "runtime_version": _runtime_version(),
            "threads_requested": threads,
            "num_threads": threads or None,
            "delegate": self._delegate,
            "delegate_library": self._delegate_library,
            "xnnpack_requested": self._delegate == "xnnpack",
            "xnnpack_applied": (
                bool(self._delegate_nodes)
                if self._delegate == "xnnpack" and self._delegate_nodes is not None
                else False
                if self._builtin
                else None
            ),
            "delegate_partitions": self._delegate_nodes,
            "execution_plan_nodes": self._nodes,
            "resized_inputs": self._resized,
            "precision_note": "the .tflite file fixes the precision; spec.precision is not applied",
            "profile_note": self._profile_note,
        }
        if threads == 0:
            env["threads_note"] = "0 = LiteRT default (the Python Interpreter then uses 1 thread)"
        if self._interp is not None:
            env["inputs"] = [t.model_dump() for t in self.input_specs()]
        return env
