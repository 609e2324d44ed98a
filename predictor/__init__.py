"""Latency prediction: kernel detection, fusion rules and their discovery by measurement."""

from predictor.detect import Block, Detection, Kernel, detect_kernels
from predictor.fusion import FusionProbe, FusionRules, default_rules

__all__ = [
    "Block",
    "Detection",
    "FusionProbe",
    "FusionRules",
    "Kernel",
    "default_rules",
    "detect_kernels",
]
