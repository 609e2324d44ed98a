"""Per-operator profile of a ``.tflite`` model from the LiteRT C API profiler, via ctypes.

The LiteRT Python ``Interpreter`` has no op profiler, but the ``libLiteRt.so`` shipped in the
``ai_edge_litert`` wheel exports the C API of LiteRT's ``CompiledModel``, which has one. This
compiles the model on the CPU accelerator with profiling on (opaque options
``runtime_options_string``: ``enable_profiling = true``; thread count and kernel mode through
the CPU options, identifier ``xnnpack``), copies the caller's arrays into its input buffers
(resizing inputs whose shape differs), runs it and sums the events per operator. Nothing is
loaded at import; every handle is released by ``close()`` / the ``with`` block.

Layouts are those of the ai_edge_litert 2.3.0 library, checked against its machine code, not
only the headers: ``LiteRtLayout`` is ``{unsigned rank:7; bool has_strides:1; int32 dims[8];
uint32 strides[8]}`` (68 bytes), ``ProfiledEventData`` 104 bytes (its two ``MemoryUsage``
members are three 8-byte fields each, not the two of older headers).
"""

from __future__ import annotations

import ctypes as C
import functools
import importlib.util
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from latencylab.schemas import LayerProfile

MAX_RANK = 8
HW_CPU = 1  # kLiteRtHwAcceleratorCpu
LOCK_WRITE = 1  # kLiteRtTensorBufferLockModeWrite (Read = 0)
OPERATOR_INVOKE = 1 << 1  # event types: a node of the TFLite execution plan
DELEGATE_OPS = (1 << 2) | (1 << 3)  # an operator inside a delegate (XNNPACK's own operators)
# LiteRtStatus (litert/c/litert_common.h); the 2.3.0 library does not export LiteRtGetStatusString
_CODES = "Ok InvalidArgument MemoryAllocationFailure RuntimeFailure MissingInputTensor Unsupported"
_CODES += " NotFound TimeoutExpired WrongVersion Unknown"
_FILE_CODES = "FileIO InvalidFlatbuffer DynamicLoading Serialization Compilation"
STATUS = {i: f"kLiteRtStatusError{n}" for i, n in enumerate(_CODES.split())}
STATUS |= {500 + i: f"kLiteRtStatusError{n}" for i, n in enumerate(_FILE_CODES.split())}
STATUS[0] = "kLiteRtStatusOk"


class LiteRtError(RuntimeError):
    """A LiteRT C API call failed; the message names the step and the LiteRT status."""


class LiteRtUnavailable(LiteRtError):
    """``libLiteRt`` (or a symbol this module needs) is not there."""


class _Layout(C.Structure):  # LiteRtLayout
    _fields_ = [
        ("rank_bits", C.c_uint32),  # rank:7 and has_strides:1 share one int (GCC/Clang)
        ("dimensions", C.c_int32 * MAX_RANK),
        ("strides", C.c_uint32 * MAX_RANK),
    ]

    @property
    def shape(self) -> list[int]:
        return [int(d) for d in self.dimensions[: self.rank_bits & 0x7F]]


class _TensorType(C.Structure):  # LiteRtRankedTensorType
    _fields_ = [("element_type", C.c_int), ("layout", _Layout)]


class _MemoryUsage(C.Structure):  # tflite::profiling::memory::MemoryUsage
    _fields_ = [("total", C.c_size_t), ("in_use", C.c_size_t), ("private", C.c_size_t)]


class _Event(C.Structure):  # ProfiledEventData (litert/c/litert_profiler_event.h)
    _fields_ = [
        ("tag", C.c_char_p),
        ("event_type", C.c_int),  # LiteRtProfilerEventType, a bit
        ("start_us", C.c_uint64),
        ("elapsed_us", C.c_uint64),
        ("begin_mem", _MemoryUsage),
        ("end_mem", _MemoryUsage),
        ("metadata1", C.c_uint64),  # node (or delegate operator) index
        ("metadata2", C.c_uint64),  # subgraph index
        ("source", C.c_int),  # ProfiledEventSource; 2.3.0 leaves it LITERT (0) for all
    ]


_P, _PP, _SZ, _SZP = C.c_void_p, C.POINTER(C.c_void_p), C.c_size_t, C.POINTER(C.c_size_t)
_FUNCTIONS: dict[str, tuple[Any, ...]] = {  # name: argtypes; each returns LiteRtStatus
    "LiteRtCreateEnvironment": (C.c_int, _P, _PP),
    "LiteRtCreateModelFromFile": (_P, C.c_char_p, _PP),  # 2.3.0 takes (and ignores) the env
    "LiteRtCreateOptions": (_PP,),
    "LiteRtSetOptionsHardwareAccelerators": (_P, C.c_int),
    "LiteRtCreateOpaqueOptions": (C.c_char_p, _P, _P, _PP),
    "LiteRtAddOpaqueOptions": (_P, _P),
    "LiteRtCreateCompiledModel": (_P, _P, _P, _PP),
    "LiteRtCompiledModelGetErrorMessages": (_P, _PP),
    "LiteRtGetModelSignature": (_P, _SZ, _PP),
    "LiteRtGetNumSignatureInputs": (_P, _SZP),
    "LiteRtGetNumSignatureOutputs": (_P, _SZP),
    "LiteRtGetSignatureInputTensorByIndex": (_P, _SZ, _PP),
    "LiteRtGetSignatureOutputTensorByIndex": (_P, _SZ, _PP),
    "LiteRtGetTensorName": (_P, C.POINTER(C.c_char_p)),
    "LiteRtGetTensorIndex": (_P, C.POINTER(C.c_uint32)),
    "LiteRtGetRankedTensorType": (_P, C.POINTER(_TensorType)),
    "LiteRtGetModelSubgraph": (_P, _SZ, _PP),
    "LiteRtGetNumSubgraphOps": (_P, _SZP),
    "LiteRtGetSubgraphOp": (_P, _SZ, _PP),
    "LiteRtGetOpOutput": (_P, _SZ, _PP),
    "LiteRtCompiledModelResizeInputTensorNonStrict": (_P, _SZ, _SZ, C.POINTER(C.c_int), _SZ),
    "LiteRtGetCompiledModelInputTensorLayout": (_P, _SZ, _SZ, C.POINTER(_Layout)),
    "LiteRtGetCompiledModelOutputTensorLayouts": (_P, _SZ, _SZ, C.POINTER(_Layout), C.c_bool),
    "LiteRtGetCompiledModelInputBufferRequirements": (_P, _SZ, _SZ, _PP),
    "LiteRtGetCompiledModelOutputBufferRequirements": (_P, _SZ, _SZ, _PP),
    "LiteRtCreateManagedTensorBufferFromRequirements": (_P, C.POINTER(_TensorType), _P, _PP),
    "LiteRtGetTensorBufferPackedSize": (_P, _SZP),
    "LiteRtLockTensorBuffer": (_P, _PP, C.c_int),
    "LiteRtUnlockTensorBuffer": (_P,),
    "LiteRtRunCompiledModel": (_P, _SZ, _SZ, _PP, _SZ, _PP),
    "LiteRtCompiledModelGetProfiler": (_P, _PP),
    "LiteRtStartProfiler": (_P,),
    "LiteRtStopProfiler": (_P,),
    "LiteRtResetProfiler": (_P,),
    "LiteRtGetNumProfilerEvents": (_P, C.POINTER(C.c_int)),
    "LiteRtGetProfilerEvents": (_P, C.c_int, C.POINTER(_Event)),
}
_DESTROY = ("TensorBuffer", "CompiledModel", "Options", "OpaqueOptions", "Model", "Environment")


def library_path() -> Path:
    """``libLiteRt`` next to the installed ``ai_edge_litert`` package (found, not imported)."""
    spec = importlib.util.find_spec("ai_edge_litert")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        for name in ("libLiteRt.so", "libLiteRt.dylib", "LiteRt.dll"):
            if (Path(folder) / name).is_file():
                return Path(folder) / name
    raise LiteRtUnavailable("libLiteRt is not installed (the ai_edge_litert wheel ships it)")


@functools.cache
def _library(path: str) -> C.CDLL:
    sizes = (C.sizeof(_Layout), C.sizeof(_TensorType), C.sizeof(_Event))
    if sizes != (68, 72, 104) or sys.platform == "win32":  # MSVC packs the bit-field apart
        raise LiteRtUnavailable("the struct layouts here are those of 64-bit GCC/Clang builds")
    try:
        lib = C.CDLL(path)
    except OSError as exc:
        raise LiteRtUnavailable(f"cannot load {path}: {exc}") from exc
    wanted = [*_FUNCTIONS, *(f"LiteRtDestroy{kind}" for kind in _DESTROY)]
    missing = [name for name in wanted if not hasattr(lib, name)]
    if missing:
        raise LiteRtUnavailable(f"{path} lacks the LiteRT C API functions {missing}")
    for name, argtypes in _FUNCTIONS.items():
        getattr(lib, name).argtypes, getattr(lib, name).restype = list(argtypes), C.c_int
    for kind in _DESTROY:
        getattr(lib, f"LiteRtDestroy{kind}").argtypes = [_P]
        getattr(lib, f"LiteRtDestroy{kind}").restype = None
    return lib


@functools.cache
def _libc() -> C.CDLL:
    libc = C.CDLL(None)  # payloads handed to LiteRT are strdup'ed; LiteRT frees them with free
    libc.strdup.restype, libc.strdup.argtypes = _P, [C.c_char_p]
    libc.free.restype, libc.free.argtypes = None, [_P]
    return libc


@dataclass
class ProfileRun:
    """What one :meth:`LiteRtOpProfiler.profile` call measured."""

    layers: list[LayerProfile]  # per operator, time_ms = mean per inference
    iterations: int
    wall_ms: float  # mean wall time of one LiteRtRunCompiledModel call (profiler on)
    input_shapes: list[list[int]]  # what the compiled model ran at
    events: int

    @property
    def op_ms(self) -> float:
        return sum(layer.time_ms for layer in self.layers)


class LiteRtOpProfiler:
    """``with LiteRtOpProfiler(path, num_threads=1) as p: run = p.profile(feeds, 20)``.

    Signature 0 of ``model_path`` on the CPU accelerator. ``num_threads`` (0: LiteRT's
    default, one thread) and ``kernel_mode`` (``"xnnpack"``, ``"builtin"``, ``"reference"``;
    None: XNNPACK) are the CPU accelerator's options; ``delegate_name`` labels the
    operators that ran inside the delegate.
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        num_threads: int = 0,
        kernel_mode: str | None = None,
        delegate_name: str = "XNNPACK",
        library: str | Path | None = None,
    ) -> None:
        self.model_path, self.num_threads = str(model_path), int(num_threads)
        self.kernel_mode, self.delegate_name = kernel_mode, delegate_name
        self._lib = _library(str(library or library_path()))
        self.env, self.model, self.options = C.c_void_p(), C.c_void_p(), C.c_void_p()
        self.compiled, self.profiler = C.c_void_p(), C.c_void_p()
        self._buffers: list[C.c_void_p] = []
        self._names: dict[tuple[int, int], str | None] = {}
        self.inputs: list[tuple[int, str, list[int]]] = []  # (tensor index, name, stored shape)
        self._types: list[list[_TensorType]] = [[], []]  # inputs, outputs

    def __enter__(self) -> LiteRtOpProfiler:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, fn: str, *args: Any, what: str = "") -> None:
        """Call ``fn``; a failure raises LiteRtError naming it, its status and LiteRT's log."""
        status = getattr(self._lib, fn)(*args)
        if status == 0:
            return
        detail, out = "", C.c_void_p()
        get_log = self._lib.LiteRtCompiledModelGetErrorMessages
        if self.compiled and get_log(self.compiled, C.byref(out)) == 0 and out:
            detail = f" ({C.string_at(out).decode(errors='replace').strip()})"
            _libc().free(out)
        name = STATUS.get(status, f"LiteRtStatus {status}")
        raise LiteRtError(f"LiteRT: {what + ': ' if what else ''}{fn} returned {name}{detail}")

    def _add_toml(self, identifier: str, toml: str) -> None:
        libc, opaque = _libc(), C.c_void_p()
        payload = libc.strdup(toml.encode())  # LiteRT owns it once accepted, frees it with free
        free, ident = C.cast(libc.free, C.c_void_p), identifier.encode()
        try:
            self._call("LiteRtCreateOpaqueOptions", ident, payload, free, C.byref(opaque))
        except LiteRtError:
            libc.free(payload)
            raise
        try:
            what = f"could not add the {identifier!r} options"
            self._call("LiteRtAddOpaqueOptions", self.options, opaque, what=what)
        except LiteRtError:
            self._lib.LiteRtDestroyOpaqueOptions(opaque)
            raise

    def open(self) -> None:
        ref, call, path = C.byref, self._call, self.model_path
        try:
            call("LiteRtCreateEnvironment", 0, None, ref(self.env))
            what = f"could not load the model {path!r}"
            call("LiteRtCreateModelFromFile", self.env, path.encode(), ref(self.model), what=what)
            call("LiteRtCreateOptions", ref(self.options))
            call("LiteRtSetOptionsHardwareAccelerators", self.options, HW_CPU)
            self._add_toml("runtime_options_string", "enable_profiling = true\n")
            cpu = f"num_threads = {self.num_threads}\n" if self.num_threads > 0 else ""
            cpu += f'kernel_mode = "{self.kernel_mode}"\n' if self.kernel_mode else ""
            if cpu:
                self._add_toml("xnnpack", cpu)  # the CPU accelerator's options identifier
            args = (self.env, self.model, self.options, ref(self.compiled))
            call("LiteRtCreateCompiledModel", *args, what="could not compile the model for the CPU")
            call("LiteRtCompiledModelGetProfiler", self.compiled, ref(self.profiler))
            if not self.profiler:
                raise LiteRtError("LiteRT gave no profiler although profiling was enabled")
            self._read_signature()
        except BaseException:
            self.close()
            raise

    def _read_signature(self) -> None:
        ref, call, sig, n = C.byref, self._call, C.c_void_p(), C.c_size_t()
        call("LiteRtGetModelSignature", self.model, 0, ref(sig))
        for out, kind in enumerate(("Input", "Output")):
            call(f"LiteRtGetNumSignature{kind}s", sig, ref(n))
            for i in range(n.value):
                tensor, ttype = C.c_void_p(), _TensorType()
                call(f"LiteRtGetSignature{kind}TensorByIndex", sig, i, ref(tensor))
                call("LiteRtGetRankedTensorType", tensor, ref(ttype))
                self._types[out].append(ttype)
                if not out:
                    name, index = C.c_char_p(), C.c_uint32()
                    call("LiteRtGetTensorName", tensor, ref(name))
                    call("LiteRtGetTensorIndex", tensor, ref(index))
                    text = (name.value or b"").decode()
                    self.inputs.append((index.value, text, ttype.layout.shape))

    def close(self) -> None:
        lib = self._lib
        while self._buffers:
            lib.LiteRtDestroyTensorBuffer(self._buffers.pop())
        for handle, kind in (
            (self.compiled, "CompiledModel"),
            (self.options, "Options"),
            (self.model, "Model"),
            (self.env, "Environment"),
        ):
            if handle:
                getattr(lib, f"LiteRtDestroy{kind}")(handle)
                handle.value = None
        self.profiler.value = None  # owned by the compiled model

    # ----------------------------------------------------------------- running
    def _arrays(self, feeds: Mapping[Any, Any] | Sequence[Any]) -> list[np.ndarray]:
        if isinstance(feeds, Mapping):  # keyed by tensor index, tensor name or position
            keys = [
                next((k for k in (i, n, pos) if k in feeds), None)
                for pos, (i, n, _) in enumerate(self.inputs)
            ]
            if None in keys:
                raise LiteRtError(f"feeds {list(feeds)} miss inputs of {self.inputs}")
            feeds = [feeds[k] for k in keys]
        if len(feeds) != len(self.inputs):
            raise LiteRtError(f"the model takes {len(self.inputs)} inputs, {len(feeds)} given")
        return [np.ascontiguousarray(a) for a in feeds]

    def _buffer(self, out: int, i: int, layout: _Layout) -> int:
        req, buf, kind = C.c_void_p(), C.c_void_p(), ("Input", "Output")[out]
        ttype = _TensorType(self._types[out][i].element_type, layout)
        fn = f"LiteRtGetCompiledModel{kind}BufferRequirements"
        self._call(fn, self.compiled, 0, i, C.byref(req))
        fn = "LiteRtCreateManagedTensorBufferFromRequirements"
        self._call(fn, self.env, C.byref(ttype), req, C.byref(buf))
        self._buffers.append(buf)
        return int(buf.value or 0)

    def _write(self, buf: int, arr: np.ndarray, name: str) -> None:
        size, addr = C.c_size_t(), C.c_void_p()
        self._call("LiteRtGetTensorBufferPackedSize", buf, C.byref(size))
        if size.value != arr.nbytes:
            raise LiteRtError(f"input {name!r} takes {size.value} bytes, {arr.nbytes} given")
        self._call("LiteRtLockTensorBuffer", buf, C.byref(addr), LOCK_WRITE)
        try:
            C.memmove(addr, arr.ctypes.data, arr.nbytes)
        finally:
            self._lib.LiteRtUnlockTensorBuffer(buf)

    def profile(
        self, feeds: Mapping[Any, Any] | Sequence[Any], iterations: int, warmup: int = 1
    ) -> ProfileRun:
        """Run ``warmup`` then ``iterations`` times on ``feeds`` and aggregate the events.

        An input whose shape differs from the compiled model's is resized first (non-strict,
        as the Python Interpreter's ``resize_tensor_input`` does)."""
        cm, ref, call, arrays = self.compiled, C.byref, self._call, self._arrays(feeds)
        layouts = [_Layout() for _ in arrays]
        for i, arr in enumerate(arrays):
            call("LiteRtGetCompiledModelInputTensorLayout", cm, 0, i, ref(layouts[i]))
            if layouts[i].shape != list(arr.shape):
                dims, fn = (C.c_int * arr.ndim)(*arr.shape), "ResizeInputTensorNonStrict"
                what = f"could not resize input {i} to {list(arr.shape)}"
                call(f"LiteRtCompiledModel{fn}", cm, 0, i, dims, arr.ndim, what=what)
                call("LiteRtGetCompiledModelInputTensorLayout", cm, 0, i, ref(layouts[i]))
        n_out = len(self._types[1])
        out_layouts = (_Layout * max(1, n_out))()
        call("LiteRtGetCompiledModelOutputTensorLayouts", cm, 0, n_out, out_layouts, True)
        ins, outs = (C.c_void_p * len(arrays))(), (C.c_void_p * max(1, n_out))()
        for i, arr in enumerate(arrays):
            ins[i] = buf = self._buffer(0, i, layouts[i])
            self._write(buf, arr, self.inputs[i][1])
        for i in range(n_out):
            outs[i] = self._buffer(1, i, out_layouts[i])
        args = (cm, 0, len(arrays), ins, n_out, outs)
        for _ in range(warmup):
            call("LiteRtRunCompiledModel", *args, what="the warm-up run failed")
        call("LiteRtResetProfiler", self.profiler)
        call("LiteRtStartProfiler", self.profiler)
        t0 = time.perf_counter_ns()
        for _ in range(iterations):
            call("LiteRtRunCompiledModel", *args)
        wall_ms = (time.perf_counter_ns() - t0) / 1e6 / max(1, iterations)
        call("LiteRtStopProfiler", self.profiler)
        n = C.c_int()
        call("LiteRtGetNumProfilerEvents", self.profiler, ref(n))
        events = (_Event * max(1, n.value))()
        if n.value > 0:
            call("LiteRtGetProfilerEvents", self.profiler, n.value, events)
        layers = self._aggregate(events[: max(0, n.value)], max(1, iterations))
        return ProfileRun(layers, iterations, wall_ms, [lay.shape for lay in layouts], n.value)

    def _aggregate(self, events: Sequence[_Event], iterations: int) -> list[LayerProfile]:
        inner = any(e.event_type & DELEGATE_OPS for e in events)
        rows: dict[tuple[Any, ...], list[Any]] = {}  # in run order: name, type, unit, total us
        for e in events:
            tag = (e.tag or b"?").decode(errors="replace")
            if e.event_type & DELEGATE_OPS:  # e.g. "Convolution (NHWC, F32) IGEMM"
                name, unit = f"Delegate/{tag}:{e.metadata1}", self.delegate_name
            elif e.event_type & OPERATOR_INVOKE:  # a TFLite kernel, e.g. "CONV_2D"
                delegate_node = "delegate" in tag.lower()
                if delegate_node and inner:
                    continue  # its operators are listed one by one already
                name = self._node_name(e.metadata2, e.metadata1) or f"{tag}:{e.metadata1}"
                unit = self.delegate_name if delegate_node else "CPU"
            else:  # run-level and telemetry events
                continue
            key = (e.event_type & DELEGATE_OPS != 0, e.metadata2, e.metadata1, tag)
            rows.setdefault(key, [name, tag, unit, 0])[3] += e.elapsed_us
        return [
            LayerProfile(name=n, type=t, time_ms=round(us / 1e3 / iterations, 6), compute_unit=u)
            for n, t, u, us in rows.values()
        ]

    def _node_name(self, subgraph: int, node: int) -> str | None:
        """The name of a node's first output tensor (as benchmark_model shows it), if any."""
        if (subgraph, node) not in self._names:
            lib, ref, sg, op, t = self._lib, C.byref, C.c_void_p(), C.c_void_p(), C.c_void_p()
            n, name = C.c_size_t(), C.c_char_p()
            failed = (
                lib.LiteRtGetModelSubgraph(self.model, subgraph, ref(sg))
                or lib.LiteRtGetNumSubgraphOps(sg, ref(n))
                or node >= n.value
                or lib.LiteRtGetSubgraphOp(sg, node, ref(op))
                or lib.LiteRtGetOpOutput(op, 0, ref(t))
                or lib.LiteRtGetTensorName(t, ref(name))
            )
            text = (name.value or b"").decode(errors="replace")
            self._names[(subgraph, node)] = None if failed or not text else text
        return self._names[(subgraph, node)]
