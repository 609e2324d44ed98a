"""``TensorRTFromOnnx``: ONNX -> serialized TensorRT engine with the TensorRT Python API.

``tensorrt`` is imported lazily inside the step; on a host without it the step raises
``BackendMissingError`` with install instructions. Engines are specific to the GPU model and
the TensorRT version, so finished engines are cached under ``engine_cache_key(...)``.

Options: ``shapes`` = {input: [static dims] | {"min": [...], "opt": [...], "max": [...]}},
``workspace_mb`` (memory pool limit, default 4096), ``timing_cache`` (path, loaded and saved),
``engine_cache_dir`` (reuse engines by cache key).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, ClassVar

from converters.base import ConversionStep, io_entries, sha256_file
from converters.errors import (
    TENSORRT_MISSING,
    BackendMissingError,
    ConversionError,
    ConversionInputError,
)
from converters.inspect import check_opset, inspect_onnx

Profile = dict[str, dict[str, list[int]]]


def engine_cache_key(
    onnx_sha256: str, gpu_name: str, trt_version: str, precision: str, shapes: dict[str, Any] | None
) -> str:
    """Stable key of an engine: same model, GPU model, TensorRT version, precision and shapes."""
    shapes = shapes or {}
    payload = {
        "onnx": onnx_sha256.lower(),
        "gpu": " ".join(gpu_name.split()).lower(),
        "trt": trt_version.strip(),
        "precision": precision,
        "shapes": {k: shapes[k] for k in sorted(shapes)},
    }
    return hashlib.sha256(
        json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def import_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendMissingError(
            TENSORRT_MISSING,
            step="TensorRTFromOnnx",
            hint="or convert to ONNX/OpenVINO/TFLite on this host",
        ) from exc
    return trt


def gpu_name() -> str:
    """Name of GPU 0 (NVML if available, else nvidia-smi); 'unknown-gpu' when neither works."""
    try:
        import pynvml

        pynvml.nvmlInit()
        name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0))
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception:
        pass
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout.splitlines()[0].strip()
    except Exception:
        return "unknown-gpu"


def normalize_profiles(shapes: dict[str, Any] | None) -> Profile:
    """{name: dims} or {name: {min,opt,max}} -> {name: {min,opt,max}}."""
    out: Profile = {}
    for name, spec in (shapes or {}).items():
        if isinstance(spec, dict):
            missing = {"min", "opt", "max"} - set(spec)
            if missing:
                raise ConversionInputError(
                    f"shapes[{name!r}] lacks {sorted(missing)}",
                    hint="give min, opt and max dims for every dynamic input",
                )
            out[name] = {k: [int(d) for d in spec[k]] for k in ("min", "opt", "max")}
        else:
            dims = [int(d) for d in spec]
            out[name] = {"min": dims, "opt": dims, "max": dims}
    return out


def parser_errors(parser: Any) -> tuple[str, str | None]:
    """All ONNX parser errors as text, plus the operator of the first one (if TensorRT says)."""
    lines, op = [], None
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        node_op = err.node_operator() if hasattr(err, "node_operator") else None
        node_name = err.node_name() if hasattr(err, "node_name") else ""
        op = op or node_op or None
        lines.append(f"[{err.code()}] node {err.node()} {node_name} ({node_op}): {err.desc()}")
    return "\n".join(lines) or "the ONNX parser failed without an error message", op


class TensorRTFromOnnx(ConversionStep):
    target = "tensorrt"
    source_format = "onnx"
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16", "int8")
    suffix = ".engine"

    def _convert(self, src: Path, out: Path) -> dict[str, Any]:
        info = inspect_onnx(src)
        check_opset(info)
        if self.precision == "int8" and not _has_qdq(src):
            raise ConversionInputError(
                "int8 TensorRT engines need an explicitly quantized ONNX (QuantizeLinear/DequantizeLinear)",
                hint="quantize the ONNX with Q/DQ nodes (e.g. NVIDIA ModelOpt), or build fp16",
            )
        trt = import_tensorrt()
        profiles = normalize_profiles(self.options.get("shapes") or self.upstream_shapes())
        key = engine_cache_key(
            sha256_file(src), gpu_name(), trt.__version__, self.precision, profiles
        )
        cache_dir = self.options.get("engine_cache_dir")
        cached = Path(cache_dir) / f"{key}.engine" if cache_dir else None
        meta = {
            **io_entries(info),
            "engine_cache_key": key,
            "trt_version": trt.__version__,
            "profiles": profiles,
        }
        if cached is not None and cached.exists():
            shutil.copyfile(cached, out)
            return {**meta, "engine_cache": "hit"}
        out.write_bytes(self._build(trt, src, profiles))
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(out, cached)
        return {**meta, "engine_cache": "miss" if cached else "off"}

    def _build(self, trt: Any, src: Path, profiles: Profile) -> bytes:
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        # Explicit batch is the only mode in TensorRT 10 (the flag is deprecated there).
        flag = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
        network = builder.create_network(1 << int(flag) if flag is not None else 0)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(src)):
            text, op = parser_errors(parser)
            raise ConversionError(
                f"TensorRT could not parse {src.name}:\n{text}",
                step=self.name,
                op=op,
                hint="simplify the ONNX (onnxsim), use opset 17, or replace the op named above",
            )
        config = builder.create_builder_config()
        config.set_memory_pool_limit(
            trt.MemoryPoolType.WORKSPACE, int(self.options.get("workspace_mb", 4096)) << 20
        )
        if self.precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)
        if self.precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
        self._add_profile(builder, network, config, profiles)
        timing_path = (
            Path(self.options["timing_cache"]) if self.options.get("timing_cache") else None
        )
        blob = timing_path.read_bytes() if timing_path and timing_path.exists() else b""
        config.set_timing_cache(config.create_timing_cache(blob), ignore_mismatch=False)
        engine = builder.build_serialized_network(network, config)
        if engine is None:
            raise ConversionError(
                "TensorRT failed to build the engine (see the log for the builder's errors)",
                step=self.name,
                hint="raise workspace_mb, or try fp32 / other shapes",
            )
        if timing_path is not None:
            timing_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = timing_path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(bytes(memoryview(config.get_timing_cache().serialize())))
            tmp.replace(timing_path)
        return bytes(memoryview(engine))

    def _add_profile(self, builder: Any, network: Any, config: Any, profiles: Profile) -> None:
        dynamic = []
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            if any(int(d) < 0 for d in tensor.shape):
                dynamic.append(tensor.name)
        missing = [n for n in dynamic if n not in profiles]
        if missing:
            raise ConversionInputError(
                f"inputs {missing} have dynamic dimensions and no shapes were given for TensorRT",
                hint="pass shapes={name: {'min': [...], 'opt': [...], 'max': [...]}} (or one static shape)",
            )
        if dynamic:
            profile = builder.create_optimization_profile()
            for name in dynamic:
                p = profiles[name]
                profile.set_shape(name, p["min"], p["opt"], p["max"])
            config.add_optimization_profile(profile)


def _has_qdq(src: Path) -> bool:
    import onnx

    model = onnx.load(str(src), load_external_data=False)
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)
