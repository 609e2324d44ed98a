"""Train a predictor: one LightGBM regressor per kernel family on measured kernel latencies.

Targets are ``log(ms - overhead)`` (the runtime's fixed cost per run, the median of the
``runtime_overhead`` samples, taken out of every kernel; floored at `FLOOR_MS`), so the
L2 loss weighs relative errors, which is what acc10 and RMSPE score. Two stages per
family: a first stage on the size features (`LINEAR`: FLOPs, memory traffic, element
counts) that extrapolates sanely beyond the sampled sizes, either a power law (ridge
regression on their logs) or a cost linear in them (`predictor.baseline`), picked per
family by cross-validation (`BASELINES`); the LightGBM regressor fits what it leaves (its
residuals), so trees
correct shapes, alignment and epilogues without ever extrapolating on their own. Two
bootstrap LightGBM models per family are kept for `PredictorBundle.uncertainty`
(refinement sampling) only. The kernel samples' layout-conversion times, where the
measurements have them, give the bundle's `predictor.layout.LayoutModel`; conversions
measured as kernels of their own (`predictor.conversions`, ``conversions``) price them per
shape; with ``exclude_conversions`` each convolution sample's own boundary conversions
(`predictor.layout.alone_ms`) are taken out of its target (at most `MAX_EXCLUDED` of it),
so the convolution regressors predict the kernel as it runs inside a network and the
network's layout term adds the conversions it really does (off by default: on this host's
calibration networks it cross-validated worse, docs/predictor.md). A network-level
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

from predictor.baseline import fit_sizes, log_sizes
from predictor.bundle import BundleData, FamilyModel, PredictorBundle
from predictor.configs import RUNTIME_OVERHEAD, KernelConfig
from predictor.conversions import fit_conversions
from predictor.features import FEATURES, features
from predictor.fusion import FusionRules, default_rules
from predictor.layout import alone_ms, fit_layout

FLOOR_MS = 0.0005
MAX_EXCLUDED = 0.8
"""At most this share of a convolution sample is taken out as its own conversions (the
conversion model is a fit: on a tiny kernel it can exceed the measured time)."""
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


BASELINES = ("ridge", "sizes")
"""The first stage's two forms: a power law (ridge on the log sizes) or a cost linear in
the sizes (`predictor.baseline`); ``auto`` picks per family by `CV_FOLDS`-fold
cross-validation of the whole two-stage model on the family's own samples."""
CV_FOLDS = 4
Base = tuple[list[float], float, list[float]]


def _fit_base(x: np.ndarray, y: np.ndarray, lin: list[int], kind: str) -> Base:
    """Ridge coefficients, intercept and size-model coefficients (empty for a ridge)."""
    if kind == "sizes":
        return [0.0] * len(lin), 0.0, [float(c) for c in fit_sizes(x, lin, np.exp(y))]
    ridge = Ridge(alpha=1.0).fit(x[:, lin], y)
    return [float(v) for v in ridge.coef_], float(ridge.intercept_), []


def _eval_base(x: np.ndarray, lin: list[int], base: Base) -> np.ndarray:
    coef, intercept, sizes = base
    out = x[:, lin] @ np.array(coef) + intercept
    return out + log_sizes(x, lin, sizes) if sizes else out


def _pick_base(x: np.ndarray, y: np.ndarray, names: list[str], lin: list[int], rounds: int) -> str:
    """The baseline form of lower cross-validated RMSPE (the ridge below 2 folds' worth)."""
    if len(y) < 2 * CV_FOLDS or not lin:
        return "ridge"
    folds = np.arange(len(y)) % CV_FOLDS
    best, pick = math.inf, "ridge"
    for kind in BASELINES:
        errs = []
        for f in range(CV_FOLDS):
            tr, te = folds != f, folds == f
            b = _fit_base(x[tr], y[tr], lin, kind)
            m = _fit(x[tr], y[tr] - _eval_base(x[tr], lin, b), names, 0, max(1, rounds // 3))
            errs.append(np.exp(_eval_base(x[te], lin, b) + m.predict(x[te]) - y[te]) - 1)
        rmspe = float(np.sqrt(np.mean(np.concatenate(errs) ** 2)))
        if rmspe < best:
            best, pick = rmspe, kind
    return pick


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
    conversions: Sequence[tuple[KernelConfig, float]] | None = None,
    exclude_conversions: bool = False,
    baseline: str = "auto",
) -> PredictorBundle:
    """A `PredictorBundle` from ``(config, latency_ms)`` samples measured under ``rules``.
    ``layout``: ``(config, ms in layout conversions)`` of the same samples, from their
    per-layer profiles, for the bundle's `predictor.layout.LayoutModel` (None: no model).
    ``conversions``: ``(conversion config, ms)`` measured alone (`predictor.conversions`),
    which price the layout model's conversions; ``exclude_conversions``: train the
    convolution regressors without each sample's own boundary conversions. ``baseline``:
    the first stage per family, one of `BASELINES` or ``auto``."""
    if baseline not in (*BASELINES, "auto"):
        raise ValueError(f"baseline must be one of {[*BASELINES, 'auto']}, got {baseline!r}")
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
    costs = fit_conversions(conversions, overhead_ms) if conversions else None
    lmodel = fit_layout(layout, costs, exclude=exclude_conversions) if layout else None
    families: dict[str, FamilyModel] = {}
    rng = np.random.default_rng(0)
    for fam, rows in sorted(by_family.items()):
        names = FEATURES[fam][0]
        x = np.array([features(c, fam) for c, _ in rows], dtype=np.float64)
        lat = np.array([v for _, v in rows])
        net = lat - overhead_ms
        if lmodel is not None and lmodel.kernels_exclude_conversions:
            own = np.array([alone_ms(c, lmodel) for c, _ in rows])
            net = net - np.minimum(own, MAX_EXCLUDED * net)
        y = np.log(np.maximum(net, FLOOR_MS))
        lin = [i for i, n in enumerate(names) if n in LINEAR]
        kind = _pick_base(x, y, names, lin, rounds) if baseline == "auto" else baseline
        first = _fit_base(x, y, lin, kind)
        base = _eval_base(x, lin, first)
        main = _fit(x, y - base, names, 0, rounds)
        boots = []
        for i in range(ensemble):
            idx = rng.integers(0, len(y), len(y))
            boots.append(
                _fit(x[idx], y[idx] - base[idx], names, i + 1, rounds // 2).model_to_string()
            )
        fit = np.exp(base + main.predict(x))
        goal = np.exp(y)
        rmspe = float(np.sqrt(np.mean(((fit - goal) / (goal + overhead_ms)) ** 2)))
        families[fam] = FamilyModel(
            features=names, linear_features=lin, linear_coef=first[0], linear_intercept=first[1],
            model=main.model_to_string(), ensemble=boots, samples=len(rows), fit_rmspe=rmspe,
            size_features=lin if first[2] else [], size_coef=first[2],
        )  # fmt: skip
    data = BundleData(
        rules=rules,
        overhead_ms=overhead_ms,
        families=families,
        sample_keys=sorted({c.key() for c, _ in samples}),
        meta=dict(meta or {}, samples=len(samples)),
        layout=lmodel,
    )
    return PredictorBundle(data)
