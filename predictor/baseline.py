"""A family's baseline cost model: time linear in the kernel's sizes.

``ms = c0 + Σ c_i · size_i`` (sizes in millions: FLOPs, elements read and written,
weights..., the family's `predictor.train.LINEAR` features, which `predictor.features`
gives as ``log2``), fitted by non-negative least squares on relative errors. Unlike a
power law in the sizes (a ridge on their logs), it keeps a fixed cost per call and
extrapolates linearly: a kernel twice as large costs twice as much beyond the fixed part.
`predictor.train` fits LightGBM on what it leaves, in log space, and keeps it where it
cross-validates better than the power law (`FamilyModel.size_coef`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import nnls

FLOOR = 1e-9


def size_design(x: np.ndarray, cols: Sequence[int]) -> np.ndarray:
    """``[1, size_i / 1e6 ...]`` per row of ``x`` (log2 features at ``cols``)."""
    x = np.atleast_2d(x)
    return np.column_stack([np.ones(len(x))] + [np.exp2(x[:, i]) / 1e6 for i in cols])


def fit_sizes(x: np.ndarray, cols: Sequence[int], ms: np.ndarray) -> np.ndarray:
    """Non-negative ``[c0, c_i ...]`` minimising the relative error on ``ms`` (> 0)."""
    a = size_design(x, cols)
    coef, _ = nnls(a / ms[:, None], np.ones(len(ms)))
    return np.asarray(coef)


def log_sizes(x: np.ndarray, cols: Sequence[int], coef: Sequence[float] | np.ndarray) -> np.ndarray:
    """``log(ms)`` of the size model, per row of ``x``."""
    return np.log(np.maximum(size_design(x, cols) @ np.asarray(coef, dtype=np.float64), FLOOR))
