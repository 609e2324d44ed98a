"""ExecuTorch runner: a ``.pte`` program through ``executorch.runtime``, timed around
``Method.execute``.

``Runtime.get().load_program(path).load_method(name)`` is the model load; each timed
inference is one ``method.execute(inputs)`` (the C++ runtime: the program's XNNPACK partitions
and the portable kernels for the rest), measured with ``time.perf_counter_ns``. Inputs are
seeded random torch tensors in the program's own shapes and dtypes (``MethodMeta``), made
before any timing. A ``.pte`` fixes its shapes: a batch size other than the program's is
refused with what to do.

**Threads.** The XNNPACK delegate and the threaded portable kernels share the runtime's one
threadpool (``executorch::extension::threadpool``). The 1.5.1 Python bindings set its size
with ``executorch.extension.pybindings.portable_lib._unsafe_reset_threadpool(n)`` and read it
with ``_threadpool_get_thread_count()``; a target's ``threads`` > 0 resets it to that many
before the load, 0 leaves the runtime's default (one thread per core on Linux). The
environment records both the request and the count read back (``threadpool_threads``).

**Profile.** The pip wheel's runtime is built with the event tracer: a second program loaded
with ``enable_etdump=True`` runs the profiled iterations, writes an ETDump
(``Program.write_etdump_result_to_file``), and ``executorch.devtools.Inspector`` reads it back
(``agents.runners.etdump``, shared with the phones): one row per operator event -- XNNPACK's
own ops inside a delegate call (compute unit ``XNNPACK``) and the portable kernels (``CPU
(portable)``) -- ``time_ms`` the mean over the iterations, ``environment.profile_note`` the
sum of the rows against ``Method::execute``. Where the runtime or the Inspector cannot do it,
the profile is empty and the note says why.
"""

from __future__ import annotations

import importlib.metadata
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from latencylab.runtime_options import ExecuTorchOptions
from latencylab.schemas import LayerProfile, MeasureSpec, TensorSpec

from .base import Runner, random_tensor
from .etdump import read_etdump

_INSTALL = "pip install 'latencylab[executorch]' (and executorch itself: see the Makefile)"
# c10::ScalarType codes of MethodMeta's TensorInfo.dtype() -> numpy dtypes
_DTYPES = {0: np.uint8, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.int64, 5: np.float16,
           6: np.float32, 7: np.float64, 11: np.bool_}  # fmt: skip
# No debug buffer: with one the tracer also stores every intermediate tensor and aborts the
# process (an ET_CHECK in etdump_flatcc.cpp) once it is full; profiling needs none.


def _version() -> str:
    try:
        return importlib.metadata.version("executorch")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class ExecuTorchRunner(Runner):
    """One ``.pte`` program on the ExecuTorch runtime (XNNPACK + portable kernels)."""

    runtime_name = "executorch"
    extra = "executorch"
    options: ExecuTorchOptions

    def __init__(self, spec: MeasureSpec) -> None:
        super().__init__(spec)
        self._runtime: Any = None
        self._program: Any = None
        self._method: Any = None
        self._method_name = str(spec.artifact_metadata.get("method") or "forward")
        self._threads_set: int | None = None
        self._threads_read: int | None = None
        self._backends: list[str] = []
        self._profile_note = "no profile run"

    # ----------------------------------------------------------------- lifecycle
    def import_runtime(self) -> None:
        """torch (the bindings load libtorch) and the runtime's C++ bindings."""
        try:
            import executorch.runtime  # noqa: F401
            from executorch.extension.pybindings import portable_lib  # noqa: F401
        except ImportError as exc:
            raise RuntimeError(f"ExecuTorch is not installed: {_INSTALL} ({exc})") from exc

    def _set_threads(self) -> None:
        from executorch.extension.pybindings import portable_lib

        if self.spec.threads > 0:
            portable_lib._unsafe_reset_threadpool(int(self.spec.threads))
            self._threads_set = int(self.spec.threads)
        self._threads_read = int(portable_lib._threadpool_get_thread_count())

    def activate(self) -> None:
        from executorch.runtime import Runtime

        path = Path(self.spec.model_path)
        if not path.is_file():
            raise FileNotFoundError(f"model file not found: {path}")
        with path.open("rb") as fh:
            head = fh.read(8)
        if head[4:6] != b"ET":
            raise ValueError(
                f"{path.name} is not an ExecuTorch program (format {self.spec.model_format!r}): "
                "the executorch runtime runs .pte files; benchmark an ONNX or .pt2 upload with "
                "--runtime executorch to have it converted"
            )
        self._set_threads()
        self._runtime = Runtime.get()
        self._backends = sorted(self._runtime.backend_registry.registered_backend_names)
        self._program = self._runtime.load_program(path)
        names = sorted(self._program.method_names)
        if self._method_name not in names:
            if not names:
                raise ValueError(f"{path.name} holds no method to run")
            self._method_name = names[0]
        self._method = self._program.load_method(self._method_name)
        self._check_batch()
        self.is_active = True

    def _check_batch(self) -> None:
        inputs = self.input_specs()
        batch = int(self.spec.batch_size)
        if batch != 1 and inputs and inputs[0].shape and inputs[0].shape[0] != batch:
            raise ValueError(
                f"the program's inputs are fixed at {inputs[0].shape} (a .pte has static shapes), "
                f"so batch_size {batch} cannot be applied; convert the model at that batch size "
                "(benchmark the ONNX or .pt2 upload with this batch_size) instead"
            )

    def deactivate(self) -> None:
        self._method = None
        self._program = None
        super().deactivate()

    # ----------------------------------------------------------------- inputs
    def input_specs(self) -> list[TensorSpec]:
        """The program's own inputs (``MethodMeta``), not the upload's declared ones."""
        if self._method is None:
            return super().input_specs()
        meta = self._method.metadata
        specs = []
        for i in range(meta.num_inputs()):
            info = meta.input_tensor_meta(i)
            dtype = np.dtype(_DTYPES.get(int(info.dtype()), np.float32)).name
            specs.append(
                TensorSpec(name=f"input_{i}", shape=[int(d) for d in info.sizes()], dtype=dtype)
            )
        return specs

    def prepare_inputs(self, seed: int) -> Any:
        """Seeded random torch tensors in the program's input order (outside any timing)."""
        import torch

        rng = np.random.default_rng(seed)
        feeds = []
        for t in self.input_specs():
            shape = [int(d) for d in t.shape if d is not None]  # MethodMeta sizes: all ints
            feeds.append(np.ascontiguousarray(random_tensor(rng, shape, np.dtype(t.dtype))))
        return tuple(torch.from_numpy(a) for a in feeds)

    # ----------------------------------------------------------------- running
    def timed_infer(self, feeds: Any) -> int:
        execute = self._method.execute
        t0 = time.perf_counter_ns()
        execute(feeds)
        return time.perf_counter_ns() - t0

    def profile(self, feeds: Any, iterations: int) -> list[LayerProfile]:
        """Per-operator means from an ETDump of a separate, traced program (see the module doc).
        Never raises: an empty profile and ``environment.profile_note`` say why."""
        try:
            return self._profile_etdump(feeds, max(1, iterations))
        except Exception as exc:  # the runtime, the dump or the Inspector could not do it
            self._profile_note = (
                f"no per-operator profile: the ETDump/Inspector path failed "
                f"({type(exc).__name__}: {str(exc)[:300]})"
            )
            return []

    def _profile_etdump(self, feeds: Any, iterations: int) -> list[LayerProfile]:
        program = self._runtime.load_program(
            Path(self.spec.model_path), enable_etdump=True, debug_buffer_size=0
        )
        method = program.load_method(self._method_name)
        for _ in range(iterations):
            method.execute(feeds)
        with tempfile.TemporaryDirectory(prefix="etdump-") as tmp:
            etdump = os.path.join(tmp, "profile.etdp")
            program.write_etdump_result_to_file(etdump, os.path.join(tmp, "debug.bin"))
            rows, self._profile_note = read_etdump(etdump, "executorch.runtime with enable_etdump")
        return rows

    def environment(self) -> dict[str, Any]:
        env: dict[str, Any] = {
            "runtime": self.runtime_name,
            "runtime_version": _version(),
            "method": self._method_name,
            "threads_requested": int(self.spec.threads),
            "threadpool_threads_set": self._threads_set,
            "threadpool_threads": self._threads_read,
            "threads_api": "executorch.extension.pybindings.portable_lib._unsafe_reset_threadpool",
            "backends_registered": self._backends,
            "precision_note": "the .pte fixes the precision; spec.precision is not applied",
            "profile_note": self._profile_note,
        }
        if self.spec.threads == 0:
            env["threads_note"] = "0 = the runtime's default threadpool size (not reset)"
        delegation = self.spec.artifact_metadata.get("delegation")
        if delegation:
            env["delegation"] = delegation
        if self._method is not None:
            env["inputs"] = [t.model_dump() for t in self.input_specs()]
        return env
