"""Latency prediction: kernel detection, fusion rules and their discovery by measurement,
kernel-level predictors (``predictor.sampling``, ``predictor.kernel_models``,
``predictor.train``, ``predictor.bundle``, ``predictor.accuracy``,
``predictor.validation_set``; imported from their modules: LightGBM loads with them)."""

from predictor.configs import RUNTIME_OVERHEAD, KernelConfig
from predictor.detect import Block, Detection, Kernel, detect_kernels
from predictor.fusion import FusionProbe, FusionRules, default_rules

__all__ = [
    "RUNTIME_OVERHEAD",
    "Block",
    "Detection",
    "FusionProbe",
    "FusionRules",
    "Kernel",
    "KernelConfig",
    "default_rules",
    "detect_kernels",
]
