"""The predictor library (issue 14): kernel models, sampling, training, JSON bundles,
prediction on real architectures, accuracy scores. Accuracy goals are measured in
bench/predictor.py, not here."""

from __future__ import annotations

import json
import math

import onnx
import onnxruntime as ort
import pytest

from bench.quick import quick_ort_ms
from predictor import default_rules, detect_kernels
from predictor.accuracy import score
from predictor.archs import mobilenet_v2, mobilenet_v3, regnet, resnet, vit
from predictor.bundle import PredictorBundle
from predictor.calibration import TERMS, fit_calibration
from predictor.configs import FAMILIES, RUNTIME_OVERHEAD, KernelConfig, family, from_kernel
from predictor.kernel_models import LAYOUT_OPS, kernel_latency, kernel_model
from predictor.layout import fit_layout, layout_terms
from predictor.sampling import (
    WEIGHT,
    _types,
    compute_real_configs,
    plan_initial,
    plan_refinement,
    real_configs,
)
from predictor.train import train


@pytest.fixture(scope="module")
def prior() -> list[KernelConfig]:
    return real_configs()


def _ort_ms(model) -> float:
    """Real but quick in-process measurements, for the plumbing tests only (the bench uses
    the full protocol)."""
    return quick_ort_ms(model, runs=15, warmup=3)


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


def test_shipped_real_configs_are_current(prior) -> None:
    # the shipped list is what building and detecting the networks gives today
    # (if not: .venv/bin/python -c "from predictor.sampling import write_real_configs as w; w()")
    assert prior == compute_real_configs(default_rules())
    other = default_rules().without("conv", "add")
    types = {c.type for c in real_configs(other)}
    assert "conv+add+relu" in {c.type for c in prior} and "conv+add+relu" not in types


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
    # calibration on whole networks measured in-process: terms, fit, breakdown, JSON
    nets = [
        mobilenet_v2(96, 0.5, seed=4), resnet(64, 0.5, seed=4), vit(64, 1.0, dim=96, depth=2),
        regnet(64, 0.5, seed=4),
    ]  # fmt: skip
    rows = []
    for i, net in enumerate(nets):
        terms = bundle.network_terms(detect_kernels(net, bundle.rules))
        assert set(terms) == set(TERMS) and terms["kernels"] > 0
        rows.append((f"net{i}", terms, _ort_ms(net)))
    cal = fit_calibration(rows, bundle.overhead_ms)
    assert cal.fit_rmspe <= cal.uncalibrated_rmspe + 1e-9 and all(c >= 0 for c in cal.coef)
    calibrated = PredictorBundle.from_json(bundle.with_calibration(cal).to_json())
    assert calibrated.data.calibration == cal and bundle.data.calibration is None
    pred = calibrated.predict_onnx(nets[0])
    assert math.isclose(sum(k.latency_ms for k in pred.kernels), pred.latency_ms, rel_tol=1e-12)
    assert [k.type for k in pred.kernels[-3:]] == [
        "layout_conversion",
        "weight_traffic",
        "dispatch",
    ]
    with pytest.raises(ValueError, match="at least"):
        fit_calibration(rows[:2], bundle.overhead_ms)
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


def _reorders(model) -> tuple[bool, float]:
    """Whether onnxruntime's optimized graph of ``model`` converts layouts, and how many
    elements (M) its conversions move (shapes from the original graph's tensors)."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.log_severity_level = 3
        so.optimized_model_filepath = str(Path(d) / "opt.onnx")
        ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        opt = onnx.load(so.optimized_model_filepath)
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]
    }
    moved = 0
    for n in opt.graph.node:
        if n.op_type in LAYOUT_OPS:
            plain = n.input[0] if n.op_type == "ReorderInput" else n.output[0]
            moved += math.prod(shapes.get(plain, [0]))
    return any(n.op_type in LAYOUT_OPS for n in opt.graph.node), moved / 1e6


def test_layout_model_matches_onnxruntime_conversions() -> None:
    # which convolutions run blocked: onnxruntime's own graph optimiser says, per kernel model
    convs = [
        ("conv+relu", {"hw": 14, "cin": 32, "cout": 32, "kernel": 3, "stride": 1, "groups": 1}),
        ("dwconv", {"hw": 14, "cin": 40, "cout": 40, "kernel": 3, "stride": 1, "groups": 40}),
        ("conv+relu", {"hw": 14, "cin": 64, "cout": 64, "kernel": 3, "stride": 1, "groups": 8}),
        ("conv+relu", {"hw": 14, "cin": 64, "cout": 64, "kernel": 3, "stride": 1, "groups": 4}),
        ("pwconv", {"hw": 14, "cin": 24, "cout": 48, "kernel": 1, "stride": 1, "groups": 1}),
    ]
    rows = []
    for t, p in convs:
        cfg = KernelConfig(type=t, params=p)
        rows.append((cfg, 0.01 if _reorders(kernel_model(cfg))[0] else 0.0))
    model = fit_layout(rows)
    assert model is not None
    assert model.blocked == {
        "dense": True, "dwconv": True, "grouped": False, "grouped_aligned": True,
    }  # fmt: skip
    assert fit_layout([(c, 0.0) for c, _ in rows]) is None  # a plain-layout runtime
    # the conversions a network makes: none inside MobileNetV2, around SE blocks (V3) and
    # the grouped convolutions onnxruntime keeps plain (RegNet)
    for net in (mobilenet_v2(96, 0.75), mobilenet_v3(96, 0.75), regnet(96, 1.0)):
        terms = layout_terms(detect_kernels(net), model)
        _, moved = _reorders(net)
        assert terms.network_melems == pytest.approx(moved, rel=0.1, abs=0.01)
        assert terms.alone_melems > terms.network_melems
