"""Fusion rules: which chains of neighbouring ops one runtime executes as one kernel.

Rules are data. A `FusionRules` holds op-token sequences (``["conv", "bn", "relu"]``);
detection grows a kernel from its first op along single-consumer edges while the tokens
so far are a prefix of some pattern, so every prefix of a pattern fuses too
(``conv+bn+relu`` implies ``conv+bn``). A runtime whose rules lack ``["conv", "add"]``
yields a conv kernel and a separate add kernel.

Tokens: ``conv`` (regular, grouped and pointwise convolutions), ``dwconv``, ``bn``,
``fc`` (Gemm, MatMul with a constant weight), ``matmul`` (between activations), ``bias``
(Add of a constant), ``add``/``mul`` (between two activations), ``scale`` (Mul/Div by a
constant), activations (`ACTIVATIONS`), and one token per composite kernel (``se``,
``gelu``, ``layernorm``, ``attention``, ...; see `predictor.patterns`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ACTIVATIONS = ("relu", "relu6", "leakyrelu", "sigmoid", "tanh", "hswish", "hsigmoid")
"""Activations a convolution or FC kernel commonly takes as its epilogue."""


class FusionProbe(BaseModel):
    """One measured candidate: the chain's head (all but the last op), its tail op, and both
    together. ``saved_ms = head_ms + tail_ms - block_ms``; it fuses when
    ``saved_ms > margin * min(head_ms, tail_ms)``."""

    model_config = ConfigDict(extra="forbid")

    pattern: list[str]
    head_ms: float
    tail_ms: float
    block_ms: float
    saved_ms: float
    threshold_ms: float
    fuses: bool


class FusionRules(BaseModel):
    """Fusion patterns of one device + runtime (``default``: assumed, ``measured``: found
    by `predictor.discovery.discover_fusion_rules`)."""

    model_config = ConfigDict(extra="forbid")

    device: str | None = None
    runtime: str | None = None
    source: Literal["default", "measured", "custom"] = "custom"
    patterns: list[list[str]] = Field(default_factory=list)
    probes: list[FusionProbe] = Field(default_factory=list)

    def allows(self, tokens: list[str]) -> bool:
        """True when ``tokens`` (length >= 2) is a prefix of some pattern."""
        n = len(tokens)
        return any(len(p) >= n and p[:n] == tokens for p in self.patterns)

    def without(self, *pattern: str) -> FusionRules:
        """These rules with every pattern that starts with ``pattern`` removed."""
        drop = list(pattern)
        keep = [p for p in self.patterns if p[: len(drop)] != drop]
        return self.model_copy(update={"patterns": keep, "source": "custom"})


def default_rules() -> FusionRules:
    """The fusions common CPU runtimes (onnxruntime, TFLite/XNNPACK, OpenVINO) apply:

    - conv / dwconv + BatchNorm, + an activation (either order after BN);
    - conv + residual add (+ ReLU), also after BN (onnxruntime's Conv+Add(+Relu) fusion,
      TFLite's fused add);
    - fc + bias (MatMul+Add -> Gemm), + an activation (not GELU: it stays its own kernel).
    """
    patterns: list[list[str]] = []
    for head in ("conv", "dwconv"):
        patterns += [[head, "bn", act] for act in ACTIVATIONS]
        patterns += [[head, act] for act in ACTIVATIONS]
    patterns += [["conv", "add", "relu"], ["conv", "bn", "add", "relu"]]
    patterns += [["fc", "bias", act] for act in ACTIVATIONS]
    patterns += [["fc", act] for act in ACTIVATIONS]
    return FusionRules(source="default", patterns=patterns)
