"""Layout conversions of a predictor build, measured as kernel models of their own.

onnxruntime's CPU provider runs convolutions in its blocked NCHWc layout and converts at
the boundaries (``ReorderInput``/``ReorderOutput``); ``predictor.conversions`` builds a
model of one such conversion per shape, as ``bench.predictor --conversions`` measures them.
A build plans them (``options.conversions`` per direction, `plan_conversions` on the
kernels of the reference architectures, as the bench does) once its measured samples show
time in layout conversions (``predictor_samples.layout_ms`` > 0 in a probe's or kernel's
profile): right after discovery when the fusion probes showed it (the conversions then
share the initial kernels' batch jobs), else when the initial kernels are measured. A
runtime whose profiles show none (no blocked layout) never measures them.

They are samples of kind ``conversion`` (type ``layout_in`` / ``layout_out``) linked to the
initial stage, reused across the builds of a scope like kernels; their failures never fail
the build (a runtime whose conversions are not NCHWc reorders cannot load them): the layout
model then prices the conversions of a direction with fewer than 3 measured from the
samples' profiles, as with ``conversions`` 0. Only a runtime declared with onnxruntime's
blocked layout (``RuntimeDecl.blocked_layout == "nchwc"``, `latencylab.runtimes`) plans
them: OpenVINO's profiles show conversions too (its own ``Reorder``), but it cannot load
the ``com.microsoft.nchwc`` ops these models are made of.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy.orm import Session

from db.predictors import Predictor, PredictorSample
from latencylab.runtimes import RUNTIMES
from server.store.predictor_samples import link_samples, linked, options, sample_key, value_of

KIND = "conversion"
"""``PredictorSample.kind`` of a layout conversion measured alone."""


@lru_cache(maxsize=16)
def real_kernels(rules_json: str) -> tuple[Any, ...]:
    """``predictor.sampling.real_configs`` of the rules (seconds for measured rules)."""
    from predictor.fusion import FusionRules
    from predictor.sampling import real_configs

    return tuple(real_configs(FusionRules.model_validate_json(rules_json)))


@lru_cache(maxsize=16)
def conversion_plan(per_direction: int, seed: int, rules_json: str) -> tuple[Any, ...]:
    """``plan_conversions`` (pure), memoized."""
    from predictor.conversions import plan_conversions

    return tuple(plan_conversions(per_direction, seed, list(real_kernels(rules_json))))


def shown(rows: list[PredictorSample]) -> bool:
    """True when a measured probe or kernel spent time in layout conversions."""
    return any(
        s.kind != KIND and s.status == "succeeded" and (s.layout_ms or 0.0) > 0 for s in rows
    )


def plan(session: Session, p: Predictor, rules_json: str) -> bool:
    """Link the build's conversions to its initial stage once its samples showed
    conversions (idempotent); True when it linked them just now."""
    o = options(p)
    n = int(o.get("conversions", 0))  # builds from before the option measure none
    decl = RUNTIMES.get(p.runtime)
    if n <= 0 or decl is None or decl.blocked_layout != "nchwc":
        return False  # conversion models are onnxruntime's contrib ops: nothing else runs them
    rows = [s for _, s in linked(session, p)]
    if any(s.kind == KIND for s in rows) or not shown(rows):
        return False
    cfgs = conversion_plan(n, int(o["seed"]), rules_json)
    keyed = [(sample_key(c.key()), KIND, c.type, dict(c.params)) for c in cfgs]
    link_samples(session, p, "initial", keyed)
    return True


def model(cfg: Any) -> Any:
    from predictor.conversions import conversion_model

    return conversion_model(cfg)


def measured(session: Session, p: Predictor, stat: str) -> list[tuple[Any, float]]:
    """``(conversion config, ms)`` of the build's measured conversions, for ``train``."""
    from predictor.configs import KernelConfig

    return [
        (KernelConfig(type=s.type, params=s.params), v)
        for _, s in linked(session, p)
        if s.kind == KIND and s.status == "succeeded" and (v := value_of(s, stat)) is not None
    ]
