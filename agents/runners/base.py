"""The ``Runner`` interface every runtime implements (Polygraphy-style lifecycle).

A runner is built from a ``MeasureSpec`` and does only runtime work; the measurement
protocol (``agents.measure.protocol``) drives it and never looks at the runtime's name::

    runner = get_runner(spec.runtime)(spec)
    runner.import_runtime()           # optional: the protocol times it apart from the load
    with runner:                      # activate() ... deactivate(), even on errors
        feeds = runner.prepare_inputs(seed=0)
        ns = runner.timed_infer(feeds)

Rules for implementers: import the runtime inside methods (never at module import),
prepare everything in ``activate``/``prepare_inputs``, and time only the runtime call in
``timed_infer`` with ``time.perf_counter_ns``.
"""

from __future__ import annotations

import importlib
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import numpy as np

from latencylab.runtime_options import RuntimeOptions
from latencylab.runtimes import parse_options
from latencylab.schemas import LayerProfile, MeasureSpec, TensorSpec

# ONNX-style type strings (and common aliases) -> numpy dtypes.
DTYPES: dict[str, Any] = {
    "float32": np.float32,
    "float": np.float32,
    "float16": np.float16,
    "half": np.float16,
    "float64": np.float64,
    "double": np.float64,
    "int8": np.int8,
    "int16": np.int16,
    "int32": np.int32,
    "int64": np.int64,
    "uint8": np.uint8,
    "uint16": np.uint16,
    "uint32": np.uint32,
    "uint64": np.uint64,
    "bool": np.bool_,
}


def numpy_dtype(dtype: str) -> np.dtype[Any]:
    """numpy dtype of an ONNX type string such as ``float32`` or ``tensor(float)``."""
    key = dtype.strip().lower()
    if key.startswith("tensor(") and key.endswith(")"):
        key = key[len("tensor(") : -1]
    if key.startswith("torch."):
        key = key[len("torch.") :]
    if key not in DTYPES:
        raise ValueError(f"unsupported input dtype {dtype!r}; known: {sorted(DTYPES)}")
    return np.dtype(DTYPES[key])


def _is_symbolic(dim: int | str | None) -> bool:
    return dim is None or isinstance(dim, str) or (isinstance(dim, int) and dim < 0)


def concrete_shape(tensor: TensorSpec, batch_size: int) -> list[int]:
    """The shape to feed: a symbolic/None/-1 first dim becomes ``batch_size``.

    Any other symbolic dim is an error: the runner cannot guess it.
    """
    shape: list[int] = []
    for i, dim in enumerate(tensor.shape):
        if not _is_symbolic(dim):
            shape.append(int(dim))  # type: ignore[arg-type]
        elif i == 0:
            shape.append(batch_size)
        else:
            raise ValueError(
                f"input {tensor.name!r} has symbolic dimension {dim!r} at axis {i} "
                f"(shape {tensor.shape}); give concrete shapes in the model's "
                f'metadata.input_shapes, e.g. {{"input_shapes": {{"{tensor.name}": [...]}}}}'
            )
    return shape


def device_memory_bytes() -> int | None:
    """Physical memory of this host (None where the OS does not say)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


class InputsTooLarge(ValueError):
    """The model's inputs alone do not fit in this device's memory (checked before any
    allocation)."""


def check_inputs_fit(nbytes: int, memory: int | None = None) -> None:
    """Refuse inputs of ``nbytes`` that the device's memory cannot hold."""
    memory = device_memory_bytes() if memory is None else memory
    if memory is not None and nbytes > memory:
        raise InputsTooLarge(
            f"inputs need {nbytes / 2**30:.1f} GiB, this device has "
            f"{memory / 2**30:.1f} GiB of memory"
        )


def random_tensor(rng: np.random.Generator, shape: Sequence[int], dtype: np.dtype[Any]) -> Any:
    """Seeded random data of the given shape/dtype (normal floats, small ints, bools), made
    in ``dtype`` itself: no float64 temporary twice (or four times) the tensor's size."""
    dtype = np.dtype(dtype)
    size = tuple(int(d) for d in shape)
    check_inputs_fit(math.prod(size) * dtype.itemsize)
    if dtype.kind == "f":
        if dtype in (np.float32, np.float64):
            return rng.standard_normal(size=size, dtype=dtype)
        return rng.standard_normal(size=size, dtype=np.float32).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, size=size, dtype=np.bool_)
    if dtype.kind == "u":
        high = 256 if dtype.itemsize == 1 else 16
        return rng.integers(0, high, size=size, dtype=dtype)
    if dtype.kind == "i":
        return rng.integers(0, 16, size=size, dtype=dtype)
    raise ValueError(f"cannot generate random data of dtype {dtype}")


class Runner(ABC):
    """One model on one runtime. Subclasses set ``runtime_name`` and ``extra``."""

    runtime_name: str = ""
    extra: str = ""  # the pyproject extra that installs the runtime: latencylab[<extra>]

    def __init__(self, spec: MeasureSpec) -> None:
        self.spec = spec
        self.is_active = False
        # The coordinator validated these already; a runner never trusts its input.
        self.options: RuntimeOptions = parse_options(self.runtime_name, spec.options)

    # ----------------------------------------------------------------- lifecycle
    def import_runtime(self) -> None:
        """Import the runtime's Python package (and start it where that is separate from
        loading a model, e.g. a CUDA context). Timed by the protocol apart from ``load_ms``
        as ``environment.protocol.runtime_import_ms``, so that cold load means the model's
        load, not the interpreter importing a library. The default imports the modules the
        runner registry names for this runtime; a runner overrides it to import more."""
        from agents.runners import runtime_module

        module = runtime_module(self.runtime_name)
        if module is not None:
            importlib.import_module(module)

    @abstractmethod
    def activate(self) -> None:
        """Load the model / create the session. Timed by the protocol as ``load_ms``."""

    def deactivate(self) -> None:
        """Release the session. Must be safe to call twice or after a failed activate."""
        self.is_active = False

    def __enter__(self) -> Runner:
        try:
            self.activate()
        except BaseException:
            self.deactivate()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.deactivate()

    # ----------------------------------------------------------------- inputs
    def input_specs(self) -> list[TensorSpec]:
        """Inputs to feed; ``spec.options["input_shapes"]`` ({name: shape}) overrides shapes."""
        overrides = self.spec.options.get("input_shapes") or {}
        specs = []
        for t in self.spec.inputs:
            if t.name in overrides:
                t = TensorSpec(name=t.name, shape=list(overrides[t.name]), dtype=t.dtype)
            specs.append(t)
        return specs

    def prepare_inputs(self, seed: int) -> Any:
        """Random seeded inputs as ``{name: ndarray}`` in each input's declared dtype, built
        before any timing; inputs that the device's memory cannot hold are refused first."""
        planned = [
            (t.name, concrete_shape(t, self.spec.batch_size), numpy_dtype(t.dtype))
            for t in self.input_specs()
        ]  # all of them sized first: refuse before allocating any
        check_inputs_fit(sum(math.prod(shape) * dtype.itemsize for _, shape, dtype in planned))
        rng = np.random.default_rng(seed)
        return {name: random_tensor(rng, shape, dtype) for name, shape, dtype in planned}

    # ----------------------------------------------------------------- running
    @abstractmethod
    def timed_infer(self, feeds: Any) -> int:
        """Run one inference on prepared ``feeds``; return its duration in nanoseconds,
        measured with ``time.perf_counter_ns`` around the runtime call only."""

    def profile(self, feeds: Any, iterations: int) -> list[LayerProfile]:
        """Per-layer times averaged over ``iterations`` (empty if unsupported).

        Must not change the state used by ``timed_infer`` (use a separate session).
        """
        return []

    def environment(self) -> dict[str, Any]:
        """Runtime facts: version, providers/delegates, threads actually set, ..."""
        return {"runtime": self.runtime_name}
