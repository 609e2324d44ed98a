"""LatencyLab conversion library (Polygraphy-style steps).

Steps are lazy and chainable; heavy frameworks are imported only inside the step that
needs them, so ``import converters`` stays light::

    from converters import OnnxFromTorch, TFLiteFromOnnx, validate
    tfl = TFLiteFromOnnx(OnnxFromTorch("model.pt2"), precision="fp16")
    art = tfl.artifact()
    print(validate(art, "model.pt2"))

Isolated runs (subprocess, timeout, memory limit): ``convert_isolated`` /
``python -m converters.run --request REQ.json --out RESULT.json``.
"""

from converters.base import Artifact, ConversionStep, sha256_file
from converters.coreml_steps import CoreMLFromOnnx, CoreMLFromTorch, coreml_spec_io
from converters.errors import BackendMissingError, ConversionError, ConversionInputError
from converters.executorch_steps import ExecuTorchFromOnnx, ExecuTorchFromTorch
from converters.inspect import ModelInfo, TensorSpec, check_pt2_archive, inspect_model, load_pt2
from converters.onnx_steps import OnnxFromOnnx, OnnxFromTorch, OpenVinoFromOnnx
from converters.plan import TARGETS, build_step
from converters.run import convert_isolated
from converters.tensorrt_steps import TensorRTFromOnnx, engine_cache_key
from converters.tflite_steps import TFLiteFromOnnx, TFLiteFromTorch
from converters.validate import TOLERANCES, validate

__all__ = [
    "TARGETS",
    "TOLERANCES",
    "Artifact",
    "BackendMissingError",
    "ConversionError",
    "ConversionInputError",
    "ConversionStep",
    "CoreMLFromOnnx",
    "CoreMLFromTorch",
    "ExecuTorchFromOnnx",
    "ExecuTorchFromTorch",
    "ModelInfo",
    "OnnxFromOnnx",
    "OnnxFromTorch",
    "OpenVinoFromOnnx",
    "TFLiteFromOnnx",
    "TFLiteFromTorch",
    "TensorRTFromOnnx",
    "TensorSpec",
    "build_step",
    "check_pt2_archive",
    "convert_isolated",
    "coreml_spec_io",
    "engine_cache_key",
    "inspect_model",
    "load_pt2",
    "sha256_file",
    "validate",
]
