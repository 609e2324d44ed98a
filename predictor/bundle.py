"""A trained predictor: fusion rules, the runtime's fixed cost, one LightGBM model per family.

Serialised as JSON only (`PredictorBundle.to_json`, `from_json`): LightGBM models travel
as their text form (``Booster.model_to_string``), never pickled. `predict_onnx` detects
the model's kernels under the bundle's rules, predicts each kernel's latency with its
family's regressor (a ridge power law plus LightGBM on its residuals, in
``log(ms - overhead)``; see `predictor.train`), and adds the runtime's fixed cost
per run once, as a ``runtime_overhead`` entry of the breakdown, so the breakdown sums to
``latency_ms``. A calibrated bundle (`with_calibration`, `predictor.calibration`) scales
the kernels by the fitted coefficient and adds ``layout_conversion``, ``weight_traffic``
and ``dispatch`` entries.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import onnx
from pydantic import BaseModel, ConfigDict, Field

from predictor.baseline import log_sizes
from predictor.calibration import ENTRIES, TERMS, Calibration, weight_elems
from predictor.configs import RUNTIME_OVERHEAD, KernelConfig, from_kernel
from predictor.detect import Detection, Kernel, detect_kernels
from predictor.features import FEATURES
from predictor.fusion import FusionRules
from predictor.layout import LayoutModel, layout_ms

FORMAT: Literal["latencylab-predictor/1"] = "latencylab-predictor/1"
FALLBACK = "elementwise"


class KernelPrediction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    type: str
    config: dict[str, Any]
    latency_ms: float


class Prediction(BaseModel):
    """Predicted latency of one model: the sum of its kernels (``runtime_overhead`` included)."""

    model_config = ConfigDict(extra="forbid")

    latency_ms: float
    kernels: list[KernelPrediction]
    notes: list[str] = Field(default_factory=list)


class FamilyModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    features: list[str]
    linear_features: list[int] = Field(description="indices of the ridge stage's features")
    linear_coef: list[float]
    linear_intercept: float
    model: str = Field(description="LightGBM Booster.model_to_string(): fits the residuals")
    ensemble: list[str] = Field(
        default_factory=list, description="bootstrap models, for the uncertainty only"
    )
    samples: int
    fit_rmspe: float | None = Field(None, description="RMSPE on its own training samples")
    size_features: list[int] = Field(
        default_factory=list, description="indices of the size model's features (baseline.py)"
    )
    size_coef: list[float] = Field(
        default_factory=list, description="size model [c0, c_i...]; empty: the ridge alone"
    )


class BundleData(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["latencylab-predictor/1"] = FORMAT
    rules: FusionRules
    overhead_ms: float
    families: dict[str, FamilyModel]
    sample_keys: list[str] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)
    layout: LayoutModel | None = Field(None, description="blocked layouts (predictor.layout)")
    calibration: Calibration | None = Field(
        None, description="network-level terms fitted on measured networks (predictor.calibration)"
    )


class PredictorBundle:
    """A trained predictor (see the module docstring)."""

    def __init__(self, data: BundleData) -> None:
        self.data = data
        self._models = {f: lgb.Booster(model_str=m.model) for f, m in data.families.items()}
        self._ensembles = {
            f: [lgb.Booster(model_str=s) for s in m.ensemble] for f, m in data.families.items()
        }

    # ------------------------------------------------------------------ JSON
    def to_json(self) -> str:
        return self.data.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes) -> PredictorBundle:
        return cls(BundleData.model_validate_json(text))

    @property
    def rules(self) -> FusionRules:
        return self.data.rules

    @property
    def overhead_ms(self) -> float:
        return self.data.overhead_ms

    @property
    def sample_keys(self) -> list[str]:
        return self.data.sample_keys

    @property
    def families(self) -> list[str]:
        return sorted(self.data.families)

    # ------------------------------------------------------------------ kernels
    def _log_predict(
        self, cfgs: Sequence[KernelConfig], boosters: str = "main"
    ) -> list[np.ndarray]:
        """Log-latency predictions per booster (main model first, then the ensemble)."""
        groups: dict[str, list[int]] = defaultdict(list)
        for i, cfg in enumerate(cfgs):
            own = cfg.family
            fam = own if own in self._models else FALLBACK
            if fam not in self._models:
                raise ValueError(
                    f"the predictor has no regressor for kernel family {own!r} and no "
                    f"{FALLBACK!r} fallback; rebuild it with samples of that family"
                )
            groups[fam].append(i)
        n_models = 1 + (min(len(v) for v in self._ensembles.values()) if boosters == "all" else 0)
        out = [np.zeros(len(cfgs)) for _ in range(n_models)]
        for fam, idx in groups.items():
            x = np.array([FEATURES[fam][1](cfgs[i]) for i in idx], dtype=np.float64)
            fm = self.data.families[fam]
            base = x[:, fm.linear_features] @ np.array(fm.linear_coef) + fm.linear_intercept
            if fm.size_coef:
                base = base + log_sizes(x, fm.size_features, fm.size_coef)
            models = [self._models[fam], *self._ensembles[fam]][:n_models]
            for j, m in enumerate(models):
                out[j][idx] = base + m.predict(x, num_threads=1)
        return out

    def predict_configs(self, cfgs: Sequence[KernelConfig]) -> list[float]:
        """Latency (ms) of each kernel alone, the runtime's fixed cost excluded."""
        if not cfgs:
            return []
        (logs,) = self._log_predict(cfgs)
        return [float(math.exp(v)) for v in logs]

    def uncertainty(self, cfgs: Sequence[KernelConfig]) -> list[float]:
        """Spread (std of log-latency) of the bootstrap ensemble, per config."""
        if not cfgs:
            return []
        preds = np.stack(self._log_predict(cfgs, boosters="all"))
        return [float(v) for v in preds.std(axis=0)]

    # ------------------------------------------------------------------ models
    def _kernel_ms(
        self, det: Detection, configs: Sequence[KernelConfig] | None = None
    ) -> tuple[list[float], list[str]]:
        cfgs = list(configs) if configs is not None else [from_kernel(k) for k in det.kernels]
        missing: dict[str, int] = defaultdict(int)
        for i, (k, c) in enumerate(zip(det.kernels, cfgs, strict=True)):
            if c.family not in self._models:
                missing[c.type] += 1
                cfgs[i] = _fallback(k)
        notes = [
            f"{n} kernel(s) of type {t!r} have no regressor of their own: predicted by "
            f"the {FALLBACK!r} regressor as a pass over their tensor"
            for t, n in sorted(missing.items())
        ]
        return self.predict_configs(cfgs), notes

    def network_terms(
        self,
        det: Detection,
        kernel_ms: Sequence[float] | None = None,
        configs: Sequence[KernelConfig] | None = None,
    ) -> dict[str, float]:
        """The `predictor.calibration.TERMS` of a detected network (uncalibrated);
        ``configs``: its kernels' `from_kernel` configs, where the caller has them."""
        cfgs = list(configs) if configs is not None else [from_kernel(k) for k in det.kernels]
        ms = kernel_ms if kernel_ms is not None else self._kernel_ms(det, cfgs)[0]
        lm = self.data.layout
        layout = layout_ms(det, lm, cfgs) if lm is not None else 0.0
        weights = sum(weight_elems(c) for c in cfgs if c.family == "fc")
        return {
            "kernels": float(sum(ms)), "layout": layout, "fc_weights_mb": 4 * weights / 1e6,
            "kernel_count": float(len(det.kernels)),
        }  # fmt: skip

    def with_calibration(self, calibration: Calibration | None) -> PredictorBundle:
        """This predictor with ``calibration`` (None: without)."""
        return PredictorBundle(self.data.model_copy(update={"calibration": calibration}))

    def predict_detection(self, det: Detection) -> Prediction:
        cfgs = [from_kernel(k) for k in det.kernels]  # once: kernels, layout and weights
        ms, notes = self._kernel_ms(det, cfgs)
        cal = self.data.calibration
        scale = cal.coef[0] if cal is not None else 1.0
        kernels = [
            KernelPrediction(name=RUNTIME_OVERHEAD, type=RUNTIME_OVERHEAD, config={}, latency_ms=self.overhead_ms)
        ]  # fmt: skip
        kernels += [
            KernelPrediction(name=k.name, type=k.type, config=dict(k.config), latency_ms=scale * v)
            for k, v in zip(det.kernels, ms, strict=True)
        ]
        if cal is not None:
            terms = self.network_terms(det, ms, cfgs)
            for name, coef in zip(TERMS[1:], cal.coef[1:], strict=True):
                kernels.append(
                    KernelPrediction(
                        name=ENTRIES[name],
                        type=ENTRIES[name],
                        config={},
                        latency_ms=coef * terms[name],
                    )
                )
        return Prediction(
            latency_ms=sum(k.latency_ms for k in kernels), kernels=kernels, notes=notes
        )

    def predict_onnx(
        self, model: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]] | None = None
    ) -> Prediction:
        """Predicted latency of ``model`` (``input_shapes`` fix its input shapes by name;
        other symbolic dimensions are 1)."""
        return self.predict_detection(detect_kernels(model, self.rules, input_shapes=input_shapes))


def _fallback(k: Kernel) -> KernelConfig:
    """A kernel without a regressor of its own, as one pass over its larger tensor (the
    output, or the input of a reduction such as ``ReduceMean``)."""
    shapes = [k.config.get("output_shape"), k.config.get("input_shape")]
    known = [[int(d) for d in s] for s in shapes if isinstance(s, list) and s]
    dims = max(known, key=math.prod) if known else [1]
    return KernelConfig(
        type="unknown", params={"tokens": max(1, math.prod(dims[:-1])), "dim": dims[-1]}
    )
