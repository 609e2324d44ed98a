"""Layout conversions measured as kernels of their own (predictor.conversions) and how the
layout model prices them (predictor.layout, predictor.train). Accuracy is bench's."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest

from bench.quick import quick_ort_ms, session
from predictor.archs import mobilenet_v2, mobilenet_v3, regnet
from predictor.baseline import fit_sizes, log_sizes
from predictor.bundle import PredictorBundle
from predictor.configs import RUNTIME_OVERHEAD, KernelConfig
from predictor.conversions import (
    LAYOUT_IN,
    LAYOUT_OUT,
    ConversionCost,
    conversion_config,
    conversion_model,
    conversion_ms,
    fit_conversions,
    padded,
    plan_conversions,
)
from predictor.detect import detect_kernels
from predictor.kernel_models import kernel_model
from predictor.layout import LayoutModel, alone_ms, fit_layout, layout_ms, layout_terms, signature
from predictor.sampling import UNALIGNED_SHARE, plan_initial, real_configs
from predictor.train import train

_ms = quick_ort_ms


def test_conversion_models_run_the_reorders_onnxruntime_inserts() -> None:
    for direction, c in (("in", 24), ("out", 40)):
        cfg = conversion_config(direction, c, 9)
        model = conversion_model(cfg)
        with tempfile.TemporaryDirectory() as d:
            sess = session(model, str(Path(d) / "opt.onnx"))
            ops = [n.op_type for n in onnx.load(Path(d) / "opt.onnx").graph.node]
        assert ops == ["ReorderInput" if direction == "in" else "ReorderOutput"]
        shape = [1, c if direction == "in" else padded(c), 9, 9]
        x = np.arange(math.prod(shape), dtype=np.float32).reshape(shape)
        (y,) = sess.run(None, {"x": x})
        want = [1, padded(c) if direction == "in" else c, 9, 9]
        assert list(y.shape) == want
        if direction == "in":  # blocked: channel block outermost, channels innermost
            assert y.reshape(-1)[1] == x[0, 1, 0, 0]
    with pytest.raises(ValueError, match="direction"):
        conversion_config("sideways", 16, 8)
    with pytest.raises(ValueError, match="conversion_config"):
        conversion_model(KernelConfig(type="relu", params={"cin": 16, "hw": 8}))


def test_plan_conversions_is_deterministic_and_uses_the_conv_shapes() -> None:
    prior = real_configs()
    plan = plan_conversions(12, 3, prior)
    assert plan == plan_conversions(12, 3, prior)
    assert sum(c.type == LAYOUT_IN for c in plan) == 12
    assert sum(c.type == LAYOUT_OUT for c in plan) == 12
    assert len({c.key() for c in plan}) == len(plan)
    ins = {(c.params["cin"], c.params["hw"]) for c in plan if c.type == LAYOUT_IN}
    real_ins = {(c.params["cin"], c.params["hw"]) for c in prior if c.family == "dwconv"}
    assert ins & real_ins  # half the shapes are those real convolutions read


def test_fit_conversions_recovers_a_cost_and_measured_reorders_fit() -> None:
    true = ConversionCost(
        fixed_ms=0.002, ms_per_melem_read=0.03, ms_per_melem_written=0.07, samples=0,
        fit_rmspe=0.0,
    )  # fmt: skip
    cfgs = [conversion_config("out", c, hw) for c, hw in ((24, 56), (96, 14), (160, 28), (40, 7))]
    rows = [(c, 0.01 + _cost(true, c)) for c in cfgs]
    got = fit_conversions(rows, overhead_ms=0.01)
    assert set(got) == {"out"}
    for name in ("fixed_ms", "ms_per_melem_read", "ms_per_melem_written"):
        assert getattr(got["out"], name) == pytest.approx(getattr(true, name), rel=1e-4)
    assert got["out"].samples == 4 and got["out"].fit_rmspe < 1e-6
    # real measurements: larger tensors cost more, every coefficient non-negative
    real = [conversion_config("in", c, hw) for c, hw in ((16, 8), (32, 32), (64, 64), (48, 40))]
    fitted = fit_conversions([(c, _ms(conversion_model(c))) for c in real])["in"]
    assert min(fitted.fixed_ms, fitted.ms_per_melem_read, fitted.ms_per_melem_written) >= 0
    assert conversion_ms(fitted, "in", 64, 4096) > conversion_ms(fitted, "in", 16, 64)


def _cost(cost: ConversionCost, cfg: KernelConfig) -> float:
    return conversion_ms(cost, "out", int(cfg.params["cin"]), int(cfg.params["hw"]) ** 2)


def _model() -> LayoutModel:
    rows = [
        (KernelConfig(type="dwconv", params=_conv(40, 40, 40)), 0.01),
        (KernelConfig(type="conv+relu", params=_conv(32, 32, 1)), 0.01),
        (KernelConfig(type="conv+relu", params=_conv(64, 64, 8)), 0.0),
        (KernelConfig(type="conv+relu", params=_conv(64, 64, 4)), 0.01),
    ]
    costs = {
        d: ConversionCost(
            fixed_ms=0.001,
            ms_per_melem_read=0.05,
            ms_per_melem_written=0.05,
            samples=3,
            fit_rmspe=0.0,
        )
        for d in ("in", "out")
    }
    model = fit_layout(rows, costs, exclude=True)
    assert model is not None
    return model


def _conv(cin: int, cout: int, groups: int, hw: int = 14) -> dict[str, int | float | str]:
    return {"hw": hw, "cin": cin, "cout": cout, "kernel": 3, "stride": 1, "groups": groups}


def test_layout_model_prices_each_conversion_by_its_shape() -> None:
    model = _model()
    assert model.kernels_exclude_conversions and set(model.conversions) == {"in", "out"}
    assert model.in_ms_per_melem == pytest.approx(0.1)
    dense = KernelConfig(type="conv+relu", params=_conv(32, 48, 1))
    want = 2 * 0.001 + 0.1 * (32 + 48) * 196 / 1e6
    assert alone_ms(dense, model) == pytest.approx(want)
    first = KernelConfig(type="conv+relu", params=_conv(3, 32, 1))  # reads the plain input
    assert alone_ms(first, model) == pytest.approx(0.001 + 0.1 * 32 * 196 / 1e6)
    plain = KernelConfig(type="conv+relu", params=_conv(64, 64, 8))  # group width 8: plain
    assert alone_ms(plain, model) == 0.0
    assert alone_ms(KernelConfig(type="relu", params={"tokens": 9, "dim": 8}), model) == 0.0
    # without measured conversions: the profile's cost per element, as before
    old = fit_layout([(dense, 0.01)])
    assert old is not None and not old.conversions and not old.kernels_exclude_conversions


def test_network_layout_term_follows_onnxruntime_graph() -> None:
    model = _model()
    unit = ConversionCost(
        fixed_ms=1.0, ms_per_melem_read=0.0, ms_per_melem_written=0.0, samples=1, fit_rmspe=0.0
    )
    counting = model.model_copy(update={"conversions": {"in": unit, "out": unit}})
    for net in (mobilenet_v2(96, 0.75), mobilenet_v3(96, 0.75), regnet(96, 1.0)):
        det = detect_kernels(net)
        with tempfile.TemporaryDirectory() as d:
            session(net, str(Path(d) / "opt.onnx"))
            opt = onnx.load(Path(d) / "opt.onnx")
        # priced at 1 ms each, the conversions count onnxruntime's reorder nodes (MobileNetV3:
        # 2 more, the h-swish of two convolutions converted twice, once per reader)
        assert layout_terms(det, counting).network_ms == pytest.approx(_reorders(opt), abs=2)
        t = layout_terms(det, model)
        assert layout_ms(det, model) == pytest.approx(t.network_ms)  # kernels exclude theirs
        kept = model.model_copy(update={"kernels_exclude_conversions": False})
        assert layout_ms(det, kept) == pytest.approx(t.network_ms - t.alone_ms)
        assert t.alone_ms > t.network_ms


def _reorders(opt: onnx.ModelProto) -> int:
    """onnxruntime's reorder nodes, less those inside SE blocks (GAP -> conv -> conv on
    ``[1, C, 1, 1]``: one ``se`` kernel, whose samples include them)."""
    producer = {o: n.op_type for n in opt.graph.node for o in n.output}
    inside: set[str] = set()
    count = 0
    for n in opt.graph.node:  # topological order
        src = n.input[0] if n.input else ""
        if (n.op_type == "ReorderInput" and producer.get(src) == "GlobalAveragePool") or (
            n.op_type == "Conv" and src in inside
        ):
            inside.update(n.output)
        elif n.op_type.startswith("Reorder") and src not in inside:
            count += 1
    return count


def test_train_takes_each_conv_sample_s_own_conversions_out() -> None:
    convs = [
        KernelConfig(type="conv+relu", params=_conv(c, c, 1, hw))
        for c, hw in ((16, 28), (32, 14), (48, 28), (64, 14), (32, 28), (16, 14))
    ]
    samples = [(KernelConfig(type=RUNTIME_OVERHEAD, params={}), 0.004)]
    samples += [(c, _ms(kernel_model(c))) for c in convs]
    layout = [(c, 0.002) for c in convs]
    conv_cfgs = [
        conversion_config(d, c, hw)
        for d in ("in", "out")
        for c, hw in ((16, 28), (64, 14), (32, 20))
    ]
    conversions = [(c, _ms(conversion_model(c))) for c in conv_cfgs]
    raw = train(samples, rounds=5, ensemble=0, layout=layout)
    excl = train(
        samples, rounds=5, ensemble=0, layout=layout, conversions=conversions,
        exclude_conversions=True, baseline="ridge",
    )  # fmt: skip
    kept = train(
        samples, rounds=5, ensemble=0, layout=layout, conversions=conversions,
        baseline="ridge",
    )  # fmt: skip
    assert excl.data.layout is not None and excl.data.layout.kernels_exclude_conversions
    assert kept.data.layout is not None and not kept.data.layout.kernels_exclude_conversions
    assert raw.data.layout is not None and not raw.data.layout.conversions
    lo, hi = excl.predict_configs(convs), kept.predict_configs(convs)
    assert sum(lo) < sum(hi)  # the regressors learn the kernel without its conversions
    again = PredictorBundle.from_json(excl.to_json())
    assert again.data.layout == excl.data.layout
    det = detect_kernels(mobilenet_v2(64, 0.5))
    ms = [0.0] * len(det.kernels)  # a conv-only bundle: the layout term is what matters
    terms = again.network_terms(det, ms)
    assert terms == excl.network_terms(det, ms)
    assert excl.data.layout is not None
    assert terms["layout"] == pytest.approx(layout_terms(det, excl.data.layout).network_ms)


def test_size_baseline_fits_a_linear_cost_and_travels_in_the_bundle() -> None:
    rng = np.random.default_rng(0)
    x = np.log2(rng.uniform(1e5, 1e8, size=(12, 2)))  # log2 sizes, as the features give them
    ms = 0.003 + 0.02 * np.exp2(x[:, 0]) / 1e6 + 0.5 * np.exp2(x[:, 1]) / 1e6
    coef = fit_sizes(x, [0, 1], ms)
    assert coef == pytest.approx([0.003, 0.02, 0.5], rel=1e-6)
    assert np.exp(log_sizes(x, [0, 1], coef)) == pytest.approx(ms, rel=1e-9)
    # a linear cost extrapolates linearly: twice the FLOPs, about twice the time
    big = np.log2(np.array([[2e9, 1e5]]))
    assert np.exp(log_sizes(big, [0, 1], coef))[0] == pytest.approx(0.003 + 40 + 0.05)
    convs = [
        KernelConfig(type="pwconv", params={**_conv(c, 2 * c, 1, hw), "kernel": 1})
        for c, hw in ((16, 28), (32, 14), (48, 28), (64, 14), (32, 28), (16, 14), (64, 28))
    ]
    samples = [(c, _ms(kernel_model(c))) for c in convs]
    bundle = train(samples, rounds=5, ensemble=0, baseline="sizes")
    fm = bundle.data.families["pwconv"]
    assert fm.size_coef and all(c >= 0 for c in fm.size_coef)
    assert fm.linear_coef == [0.0] * len(fm.linear_features)
    again = PredictorBundle.from_json(bundle.to_json())
    assert again.predict_configs(convs) == bundle.predict_configs(convs)
    ridge = train(samples, rounds=5, ensemble=0, baseline="ridge")
    assert ridge.data.families["pwconv"].size_coef == []
    assert ridge.predict_configs(convs) != bundle.predict_configs(convs)
    with pytest.raises(ValueError, match="baseline must be one of"):
        train(samples, baseline="cubic")


def test_unaligned_convolutions_are_sampled_and_run_plain() -> None:
    plan = plan_initial(8, 0, prior=real_configs())
    dw = [c for c in plan if c.family == "dwconv"]
    unaligned = [c for c in dw if int(c.params["cin"]) % 4]
    assert len(unaligned) >= round(UNALIGNED_SHARE["dwconv"] * len(dw))  # jitter adds some
    assert all(c.params["cout"] == c.params["groups"] == c.params["cin"] for c in unaligned)
    assert {signature(c) for c in unaligned} == {"dwconv_unaligned"}
    # onnxruntime's own graph: unaligned convolutions stay plain, aligned ones are blocked
    for cfg, sig in (
        (KernelConfig(type="dwconv", params=_conv(42, 42, 42)), "dwconv_unaligned"),
        (KernelConfig(type="dwconv", params=_conv(44, 44, 44)), "dwconv"),
        (KernelConfig(type="conv+relu", params=_conv(42, 32, 1)), "dense_unaligned"),
        (KernelConfig(type="conv+relu", params=_conv(6, 32, 1)), "dense"),
    ):
        assert signature(cfg) == sig
        with tempfile.TemporaryDirectory() as d:
            session(kernel_model(cfg), str(Path(d) / "opt.onnx"))
            ops = {n.op_type for n in onnx.load(Path(d) / "opt.onnx").graph.node}
        assert ("ReorderOutput" in ops) == (not sig.endswith("_unaligned")), cfg
