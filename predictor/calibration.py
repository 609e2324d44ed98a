"""Network-level calibration: what composing kernels measured alone misses, fitted on
whole networks measured on the device (never the networks a predictor is scored on).

A network's time differs from the sum of its kernels measured alone in a few ways that
single-kernel samples cannot show: the runtime converts layouts at other places than at
each kernel's boundary (`predictor.layout`), and weights come from the last-level cache
or memory once per inference instead of staying in the core's cache across a kernel's
repeated runs; and every kernel of a network costs the runtime's dispatch of a node,
which the samples lose when the runtime's fixed cost per run (an Identity node, one
dispatch among the rest) is taken out of each of them. `Calibration` is a non-negative
linear model over four network terms (`TERMS`):

- ``kernels``: the sum of the kernel regressors' predictions (ms);
- ``layout``: (elements the network converts - elements the kernels' samples converted
  alone) * the `LayoutModel`'s cost per element (ms; negative where the samples paid
  conversions the network does not; 0 without a layout model);
- ``fc_weights_mb``: the network's FC weights (MB of float32). An FC layer uses each
  weight once per token (tens to hundreds of times), a convolution once per output
  position (thousands), so only FC weights read from beyond the core's cache show;
- ``kernel_count``: the number of kernels (coefficient: ms per kernel).

``latency = overhead + Σ coef · term``. `fit_calibration` fits the coefficients by
non-negative least squares on relative errors (each row divided by its measured time).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.optimize import nnls

from predictor.configs import CONV, KernelConfig

TERMS = ("kernels", "layout", "fc_weights_mb", "kernel_count")
ENTRIES = {
    "layout": "layout_conversion", "fc_weights_mb": "weight_traffic",
    "kernel_count": "dispatch",
}  # fmt: skip
"""Breakdown entries (`Prediction.kernels`) of the terms besides ``kernels``."""


class Calibration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    terms: list[str] = Field(default_factory=lambda: list(TERMS))
    coef: list[float]
    networks: list[str] = Field(description="the networks it was fitted on")
    fit_rmspe: float = Field(description="RMSPE on those networks after calibration")
    uncalibrated_rmspe: float = Field(description="RMSPE on those networks before")


def weight_elems(cfg: KernelConfig) -> int:
    """Weight elements of a kernel (convolutions, FC, SE; 0 for others)."""
    p = cfg.params

    def i(name: str, default: int = 1) -> int:
        v = p.get(name, default)
        return int(v) if isinstance(v, int | float) else default

    if cfg.family in CONV:
        groups = i("cin") if cfg.family == "dwconv" else i("groups")
        k = 1 if cfg.family == "pwconv" else i("kernel")
        return i("cout") * (i("cin") // max(groups, 1)) * k * k
    if cfg.family == "fc":
        return i("cin") * i("cout")
    if cfg.family == "se":
        return 2 * i("cin") * i("mid")
    return 0


def apply(coef: Sequence[float], terms: dict[str, float]) -> float:
    return float(sum(c * terms[t] for c, t in zip(coef, TERMS, strict=True)))


def fit_calibration(
    rows: Sequence[tuple[str, dict[str, float], float]], overhead_ms: float
) -> Calibration:
    """Fit on ``(network name, terms, measured ms)`` rows (see the module docstring)."""
    if len(rows) < len(TERMS):
        raise ValueError(
            f"calibration needs at least {len(TERMS)} measured networks, got {len(rows)}"
        )
    x = np.array([[t[n] for n in TERMS] for _, t, _ in rows], dtype=np.float64)
    meas = np.array([m for _, _, m in rows], dtype=np.float64)
    y = meas - overhead_ms
    coef, _ = nnls(x / meas[:, None], y / meas)
    before = (x[:, 0] + overhead_ms - meas) / meas
    after = (x @ coef + overhead_ms - meas) / meas
    return Calibration(
        coef=[float(c) for c in coef],
        networks=[n for n, _, _ in rows],
        fit_rmspe=float(np.sqrt(np.mean(after**2))),
        uncalibrated_rmspe=float(np.sqrt(np.mean(before**2))),
    )
