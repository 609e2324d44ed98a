"""Train a predictor: one LightGBM regressor per kernel family on measured kernel latencies.

Targets are ``log(ms - overhead)`` (the runtime's fixed cost per run, the median of the
``runtime_overhead`` samples, taken out of every kernel; floored at `FLOOR_MS`), so the
L2 loss weighs relative errors, which is what acc10 and RMSPE score. Two stages per
family: a ridge regression (scikit-learn) on the log-size features (`LINEAR`: FLOPs,
memory traffic, element counts) is a power law that extrapolates sanely beyond the
sampled sizes; the LightGBM regressor fits what it leaves (its residuals), so trees
correct shapes, alignment and epilogues without ever extrapolating on their own. Two
bootstrap LightGBM models per family are kept for `PredictorBundle.uncertainty`
(refinement sampling) only. The kernel samples' layout-conversion times, where the
measurements have them, give the bundle's `predictor.layout.LayoutModel`; a network-level
`predictor.calibration.Calibration` is fitted afterwards on measured networks.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import lightgbm as lgb
import numpy as np
from sklearn.linear_model import Ridge

from predictor.bundle import BundleData, FamilyModel, PredictorBundle
from predictor.configs import RUNTIME_OVERHEAD, KernelConfig
from predictor.features import FEATURES, features
from predictor.fusion import FusionRules, default_rules
from predictor.layout import fit_layout

FLOOR_MS = 0.0005
ROUNDS = 300
ENSEMBLE = 2
PARAMS: dict[str, Any] = {
    "objective": "regression",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_bin": 1,
    "verbose": -1,
    "num_threads": 1,
    "deterministic": True,
    "force_row_wise": True,
    "seed": 0,
}


LINEAR = {
    "flops", "traffic", "in_elems", "out_elems", "weights", "elems", "scores", "tokens", "dim",
}  # fmt: skip
"""Features of the ridge stage (log sizes), where a family has them."""


def _fit(x: np.ndarray, y: np.ndarray, names: list[str], seed: int, rounds: int) -> lgb.Booster:
    params = dict(PARAMS, seed=seed, min_data_in_leaf=max(1, min(3, len(y) // 4)))
    data = lgb.Dataset(x, y, feature_name=names, params=params, free_raw_data=True)
    return lgb.train(params, data, num_boost_round=rounds)


def train(
    samples: Sequence[tuple[KernelConfig, float]],
    rules: FusionRules | None = None,
    *,
    rounds: int = ROUNDS,
    ensemble: int = ENSEMBLE,
    meta: dict[str, Any] | None = None,
    layout: Sequence[tuple[KernelConfig, float]] | None = None,
) -> PredictorBundle:
    """A `PredictorBundle` from ``(config, latency_ms)`` samples measured under ``rules``.
    ``layout``: ``(config, ms in layout conversions)`` of the same samples, from their
    per-layer profiles, for the bundle's `predictor.layout.LayoutModel` (None: no model)."""
    rules = rules or default_rules()
    bad = [(c.type, ms) for c, ms in samples if not (ms > 0 and math.isfinite(ms))]
    if bad:
        raise ValueError(f"latencies must be positive and finite; got {bad[:3]}")
    overhead = [ms for c, ms in samples if c.type == RUNTIME_OVERHEAD]
    overhead_ms = float(np.median(overhead)) if overhead else 0.0
    by_family: dict[str, list[tuple[KernelConfig, float]]] = defaultdict(list)
    for c, ms in samples:
        if c.type != RUNTIME_OVERHEAD:
            if c.family not in FEATURES:
                raise ValueError(f"no regressor family for kernel type {c.type!r}")
            by_family[c.family].append((c, ms))
    if not by_family:
        raise ValueError("no kernel samples to train on (only runtime_overhead probes)")
    families: dict[str, FamilyModel] = {}
    rng = np.random.default_rng(0)
    for fam, rows in sorted(by_family.items()):
        names = FEATURES[fam][0]
        x = np.array([features(c, fam) for c, _ in rows], dtype=np.float64)
        lat = np.array([v for _, v in rows])
        y = np.log(np.maximum(lat - overhead_ms, FLOOR_MS))
        lin = [i for i, n in enumerate(names) if n in LINEAR]
        ridge = Ridge(alpha=1.0).fit(x[:, lin], y)
        base = ridge.predict(x[:, lin])
        main = _fit(x, y - base, names, 0, rounds)
        boots = []
        for i in range(ensemble):
            idx = rng.integers(0, len(y), len(y))
            boots.append(
                _fit(x[idx], y[idx] - base[idx], names, i + 1, rounds // 2).model_to_string()
            )
        fit = np.exp(base + main.predict(x)) + overhead_ms
        rmspe = float(np.sqrt(np.mean(((fit - lat) / lat) ** 2)))
        families[fam] = FamilyModel(
            features=names, linear_features=lin, linear_coef=[float(v) for v in ridge.coef_],
            linear_intercept=float(ridge.intercept_), model=main.model_to_string(),
            ensemble=boots, samples=len(rows), fit_rmspe=rmspe,
        )  # fmt: skip
    data = BundleData(
        rules=rules,
        overhead_ms=overhead_ms,
        families=families,
        sample_keys=sorted({c.key() for c, _ in samples}),
        meta=dict(meta or {}, samples=len(samples)),
        layout=fit_layout(layout) if layout else None,
    )
    return PredictorBundle(data)
