"""The predictor library (issue 14): kernel models, sampling, training, JSON bundles,
prediction on real architectures, accuracy scores. Accuracy goals are measured in
bench/predictor.py, not here."""

from __future__ import annotations

import json
import math
import statistics
import time

import numpy as np
import onnxruntime as ort
import pytest

from predictor import default_rules, detect_kernels
from predictor.accuracy import score
from predictor.archs import mobilenet_v2, vit
from predictor.bundle import PredictorBundle
from predictor.configs import FAMILIES, RUNTIME_OVERHEAD, KernelConfig, family, from_kernel
from predictor.kernel_models import kernel_latency, kernel_model
from predictor.sampling import WEIGHT, _types, plan_initial, plan_refinement, real_configs
from predictor.train import train


@pytest.fixture(scope="module")
def prior() -> list[KernelConfig]:
    return real_configs()


def _ort_ms(model) -> float:
    """Median of 15 runs in an in-process onnxruntime session (1 thread): real but quick
    measurements, for the plumbing tests only (the bench uses the full protocol)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {i.name: rng.standard_normal(i.shape).astype(np.float32) for i in sess.get_inputs()}
    for _ in range(3):
        sess.run(None, feeds)
    times = []
    for _ in range(15):
        t = time.perf_counter_ns()
        sess.run(None, feeds)
        times.append((time.perf_counter_ns() - t) / 1e6)
    return statistics.median(times)


def test_sampling_is_deterministic_and_covers_real_models(prior) -> None:
    a = plan_initial(3, 7, prior=prior)
    b = plan_initial(3, 7, prior=prior)
    assert [c.key() for c in a] == [c.key() for c in b]
    assert [c.key() for c in plan_initial(3, 8, prior=prior)] != [c.key() for c in a]
    assert a[0].type == RUNTIME_OVERHEAD
    assert len({c.key() for c in a}) == len(a)
    real_families = {c.family for c in prior}
    # every family the real architectures use (and that has a kernel model) is sampled
    planned = {c.family for c in a}
    assert real_families & set(FAMILIES) <= planned
    for fam in planned - {RUNTIME_OVERHEAD}:
        assert sum(c.family == fam for c in a) == 3 * WEIGHT.get(fam, 1)
    # the types real models use are the ones drawn most (70% of draws for conv/fc)
    rules = default_rules()
    for c in a[1:]:
        assert c.type in _types(c.family, prior, rules) or c.type in {p.type for p in prior}
    # the prior is what detection finds on the real models: MobileNetV2's kernels are in it
    keys = {c.key() for c in prior}
    mbv2 = detect_kernels(mobilenet_v2(224, 1.0, bn=False, seed=1)).kernels
    assert sum(from_kernel(k).key() in keys for k in mbv2) == len(mbv2)


def test_kernel_model_detects_as_its_own_kernel(prior) -> None:
    plan = plan_initial(2, 0, prior=prior)
    seen = set()
    for cfg in plan[1:]:
        kernels = detect_kernels(kernel_model(cfg)).kernels
        assert [k.type for k in kernels] == [cfg.type], cfg
        assert from_kernel(kernels[0]).family == cfg.family
        seen.add(cfg.family)
    assert {"conv", "pwconv", "dwconv", "fc", "attention", "layernorm", "se"} <= seen
    assert (
        detect_kernels(kernel_model(KernelConfig(type=RUNTIME_OVERHEAD, params={}))).kernels == []
    )
    with pytest.raises(ValueError, match="no kernel model for kernel type"):
        kernel_model(KernelConfig(type="resize", params={}))


def test_train_bundle_round_trip_and_predict(prior) -> None:
    # real measurements, few runs: the test is about the plumbing, not the accuracy
    plan = plan_initial(4, 1, prior=prior)
    samples = [(c, _ort_ms(kernel_model(c))) for c in plan]
    bundle = train(samples, rounds=30)
    text = bundle.to_json()
    doc = json.loads(text)
    assert doc["format"] == "latencylab-predictor/1"
    assert all(m["model"].startswith("tree") for m in doc["families"].values())
    again = PredictorBundle.from_json(text)
    assert again.to_json() == text
    for model in (mobilenet_v2(96, 0.5, seed=3), vit(64, 1.0, seed=3, dim=96, depth=2, heads=3)):
        p1, p2 = bundle.predict_onnx(model), again.predict_onnx(model)
        assert p1 == p2
        det = detect_kernels(model, bundle.rules)
        assert [k.name for k in p1.kernels] == [RUNTIME_OVERHEAD] + [k.name for k in det.kernels]
        assert math.isclose(sum(k.latency_ms for k in p1.kernels), p1.latency_ms, rel_tol=1e-12)
        assert all(k.latency_ms > 0 for k in p1.kernels[1:])
        assert p1.kernels[0].latency_ms == bundle.overhead_ms
    vit_types = {k.type for k in bundle.predict_onnx(vit(64, 1.0, dim=96, depth=1)).kernels}
    assert {"attention", "layernorm", "gelu", "fc+bias"} <= vit_types
    refine = plan_refinement(bundle, 2, 5, prior=prior)
    assert refine and not {c.key() for c in refine} & set(bundle.sample_keys)
    by_family: dict[str, int] = {}
    for c in refine:
        by_family[family(c.type)] = by_family.get(family(c.type), 0) + 1
    assert max(by_family.values()) <= 2


def test_missing_family_falls_back_with_a_note(prior) -> None:
    plan = [c for c in plan_initial(3, 2, prior=prior) if c.family in ("pwconv", "elementwise")]
    bundle = train([(c, _ort_ms(kernel_model(c))) for c in plan], rounds=10)
    pred = bundle.predict_onnx(mobilenet_v2(64, 0.5))
    assert any("dwconv" in n and "no regressor" in n for n in pred.notes)
    assert all(k.latency_ms > 0 for k in pred.kernels[1:])


def test_score_on_known_rows() -> None:
    rows = [("a", 104.0, 100.0), ("a", 92.0, 100.0), ("b", 120.0, 100.0), ("b", 50.0, 50.0)]
    rep = score(rows)
    assert rep.overall.n == 4
    assert rep.overall.acc5 == 0.5
    assert rep.overall.acc10 == 0.75
    assert math.isclose(rep.overall.rmspe, math.sqrt((0.04**2 + 0.08**2 + 0.2**2) / 4))
    assert math.isclose(rep.overall.worst_error, 0.2)
    assert rep.families["a"].acc10 == 1.0 and rep.families["b"].acc5 == 0.5
    assert rep.families["a"].rho is None  # two rows: no rank correlation
    ranked = score([("x", 1.0, 1.1), ("x", 2.0, 2.5), ("x", 3.0, 2.9), ("x", 4.0, 5.0)])
    assert ranked.overall.rho == pytest.approx(1.0)
    swapped = score([("x", 1.0, 2.0), ("x", 2.0, 1.0), ("x", 3.0, 3.0)])
    assert swapped.overall.rho == pytest.approx(0.5)
    assert json.loads(rep.model_dump_json())["overall"]["acc10"] == 0.75
    with pytest.raises(ValueError, match="no rows"):
        score([])
    with pytest.raises(ValueError, match="positive"):
        score([("a", 1.0, 0.0)])


def test_kernel_latency_drops_boundary_layout_conversions() -> None:
    layers = [("ReorderInput", 1.0), ("Conv", 2.0), ("ReorderOutput", 1.0)]
    assert kernel_latency(0.8, layers) == pytest.approx(0.4)
    assert kernel_latency(0.8, [("Conv", 2.0)]) == 0.8
    assert kernel_latency(0.8, []) == 0.8
