"""Pick the chain of steps that turns a source model into a target format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from converters.base import ConversionStep
from converters.coreml_steps import CoreMLFromOnnx, CoreMLFromTorch
from converters.errors import ConversionInputError
from converters.executorch_steps import ExecuTorchFromOnnx, ExecuTorchFromTorch
from converters.inspect import model_format
from converters.onnx_steps import OnnxFromOnnx, OnnxFromTorch, OpenVinoFromOnnx
from converters.tensorrt_steps import TensorRTFromOnnx
from converters.tflite_steps import TFLiteFromOnnx, TFLiteFromTorch

_DIRECT: dict[tuple[str, str], type[ConversionStep]] = {
    ("onnx", "onnx"): OnnxFromOnnx,
    ("pt2", "onnx"): OnnxFromTorch,
    ("onnx", "tflite"): TFLiteFromOnnx,
    ("pt2", "tflite"): TFLiteFromTorch,
    ("onnx", "coreml"): CoreMLFromOnnx,
    ("pt2", "coreml"): CoreMLFromTorch,
    ("onnx", "openvino"): OpenVinoFromOnnx,
    ("onnx", "tensorrt"): TensorRTFromOnnx,
    ("onnx", "executorch"): ExecuTorchFromOnnx,
    ("pt2", "executorch"): ExecuTorchFromTorch,
}
TARGETS: tuple[str, ...] = tuple(dict.fromkeys(target for _, target in _DIRECT))
"""Every target some step produces (a .pt2 reaches the ONNX-only ones through ONNX)."""


def build_step(
    source: str | Path,
    target: str,
    *,
    precision: str = "fp32",
    out_dir: str | Path | None = None,
    input_shapes: dict[str, list[int]] | None = None,
    **options: Any,
) -> ConversionStep:
    """The (lazy) step producing ``target`` from ``source``; .pt2 goes through ONNX if needed."""
    if target not in TARGETS:
        raise ConversionInputError(f"unknown target {target!r}; choose one of {list(TARGETS)}")
    fmt = model_format(source)
    common: dict[str, Any] = {"out_dir": out_dir, "input_shapes": input_shapes}
    if (fmt, target) in _DIRECT:
        return _DIRECT[(fmt, target)](source, precision=precision, **common, **options)
    onnx = OnnxFromTorch(source, **common, opset=options.pop("opset", 17))
    return _DIRECT[("onnx", target)](onnx, precision=precision, **common, **options)
