"""CoreML runner (macOS only): ``coremltools.models.MLModel`` timed around ``predict``.

``spec.options["compute_units"]``: ``ALL`` (default), ``CPU_ONLY``, ``CPU_AND_GPU`` or
``CPU_AND_NE`` (``coremltools.ComputeUnit``). Loading (``MLModel(path, compute_units=...)``,
which compiles the model) is the protocol's ``load_ms``; the first prediction is timed apart
by the protocol. On Linux/Windows coremltools converts but cannot predict, so ``activate``
fails with a clear error.
"""

from __future__ import annotations

import platform
import subprocess
import time
from typing import Any

from latencylab.schemas import MeasureSpec, TensorSpec

from .base import Runner

COMPUTE_UNITS = ("ALL", "CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE")
# CoreML FeatureTypes.ArrayFeatureType.ArrayDataType -> numpy dtype name
_ARRAY_DTYPES = {65568: "float32", 65600: "float64", 65552: "float16", 131104: "int32"}


def require_macos() -> None:
    system = platform.system()
    if system != "Darwin":
        raise RuntimeError(
            f"CoreML predictions need macOS; this agent runs {system} {platform.release()}. "
            "Send coreml targets to a Mac agent (device 'class:mac')"
        )


def mac_chip() -> str | None:
    """``sysctl -n machdep.cpu.brand_string`` (e.g. ``Apple M2 Pro``); None when unreadable."""
    try:
        out = subprocess.run(
            ["sysctl", "-n", "machdep.cpu.brand_string"],
            capture_output=True, text=True, timeout=5, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def compute_units_name(spec: MeasureSpec) -> str:
    name = str(spec.options.get("compute_units") or "ALL").upper()
    if name not in COMPUTE_UNITS:
        raise ValueError(f"unknown compute_units {name!r}: use one of {list(COMPUTE_UNITS)}")
    return name


class CoreMLRunner(Runner):
    runtime_name = "coreml"
    extra = "coreml"

    def __init__(self, spec: MeasureSpec) -> None:
        super().__init__(spec)
        self._units = compute_units_name(spec)
        self._model: Any = None

    def activate(self) -> None:
        require_macos()
        import coremltools as ct

        units = getattr(ct.ComputeUnit, self._units)
        self._model = ct.models.MLModel(self.spec.model_path, compute_units=units)
        self.is_active = True

    def deactivate(self) -> None:
        self._model = None
        super().deactivate()

    def input_specs(self) -> list[TensorSpec]:
        """The spec's inputs, or the model description's multi-array inputs when none."""
        if self.spec.inputs or self._model is None:
            return super().input_specs()
        overrides = self.spec.options.get("input_shapes") or {}
        specs = []
        for feature in self._model.get_spec().description.input:
            array = feature.type.multiArrayType
            shape = overrides.get(feature.name, [int(d) for d in array.shape])
            dtype = _ARRAY_DTYPES.get(int(array.dataType), "float32")
            specs.append(TensorSpec(name=feature.name, shape=list(shape), dtype=dtype))
        return specs

    def timed_infer(self, feeds: Any) -> int:
        predict = self._model.predict
        t0 = time.perf_counter_ns()
        predict(feeds)
        return time.perf_counter_ns() - t0

    def environment(self) -> dict[str, Any]:
        env: dict[str, Any] = {
            "runtime": self.runtime_name,
            "compute_units": self._units,
            "os": f"{platform.system()} {platform.release()}",
            "macos_version": platform.mac_ver()[0] or None,
            "chip": mac_chip() if platform.system() == "Darwin" else None,
            "threads_requested": self.spec.threads,
            "threads_note": "CoreML schedules its own threads; threads does not apply",
            "profile_note": "no per-layer times: CoreML exposes none to Python",
        }
        try:
            import coremltools as ct

            env["runtime_version"] = env["coremltools_version"] = ct.__version__
        except ImportError:
            env["runtime_version"] = None
        return env
