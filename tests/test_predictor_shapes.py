"""The predictor's fast prediction path (issue 14, "≤ 5 ms"): our own shape propagation
(`predictor.shapes`) against ``onnx.shape_inference``, and the bundle's prediction against
its kernels predicted one by one. Speed itself is measured in bench/predictor_speed.py."""

from __future__ import annotations

import math
import random
import statistics
import time

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from converters.blocks import network_model
from latencylab.spaces import get_space
from predictor import default_rules, detect_kernels
from predictor.archs import ARCHS, mobilenet_v3, vit
from predictor.bundle import PredictorBundle
from predictor.calibration import Calibration
from predictor.configs import RUNTIME_OVERHEAD, from_kernel
from predictor.graph import OnnxGraph
from predictor.kernel_models import kernel_model
from predictor.layout import LayoutModel, layout_ms
from predictor.sampling import plan_initial, real_configs
from predictor.train import train
from predictor.validation_set import SPACES


def test_own_shapes_match_onnx_shape_inference_on_the_reference_architectures() -> None:
    # every reference architecture (BatchNorm folded and not) and the NAS-space networks of
    # the validation set: every tensor's shape as infer_shapes gives it, the same kernels
    nets = [
        build(32, 0.5, bn=bn, seed=2, **kw) for _, build, kw in ARCHS.values() for bn in (False, True)
    ]  # fmt: skip
    rng = random.Random(3)
    for space in map(get_space, SPACES):  # at their smallest resolution
        nets.append(network_model(space, space.sample(rng), min(space.resolutions)))
    for net in nets:
        own, ref = OnnxGraph(net), OnnxGraph(net, inference="onnx")
        assert (own.inference, ref.inference) == ("own", "onnx"), net.graph.name
        assert own.shapes == ref.shapes, net.graph.name
        assert [n.name for n in own.nodes] == [n.name for n in ref.nodes]
        assert own.constants.keys() == ref.constants.keys()
        assert own.graph_inputs == ref.graph_inputs
        for rules in (default_rules(), default_rules().without("conv", "add")):
            assert detect_kernels(net, rules) == detect_kernels(net, rules, inference="onnx")
    # input shapes by name: batch 2 at 96 px, on both paths
    net = mobilenet_v3(64, 0.75)
    shapes = {net.graph.input[0].name: [2, 3, 96, 96]}
    fast = detect_kernels(net, input_shapes=shapes)
    assert fast == detect_kernels(net, input_shapes=shapes, inference="onnx")
    assert fast.kernels[0].config["hw"] == 96 and fast.kernels[0].config["input_shape"][0] == 2
    with pytest.raises(ValueError, match="input_shapes names"):
        detect_kernels(net, input_shapes={"image": [1, 3, 64, 64]})


def _graph(nodes, inits, opset: int = 17):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8, 6, 6])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    g = helper.make_graph(nodes, "g", [x], [y], [numpy_helper.from_array(v, k) for k, v in inits])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def test_shape_computations_and_unknown_ops_fall_back_to_onnx() -> None:
    w = np.ones((8, 8, 3, 3), np.float32)
    conv = helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2])
    cases = {
        # a traced reshape: Shape -> Reshape folds (only onnx's path folds)
        "fold": [conv, helper.make_node("Shape", ["c"], ["s"]),
                 helper.make_node("Reshape", ["c", "s"], ["y"])],
        # an op predictor.shapes does not know
        "unknown": [conv, helper.make_node("DepthToSpace", ["c"], ["y"], blocksize=2)],
        # SAME_UPPER padding, ReduceMean with axes as an input (opset 18), Unsqueeze
        "own": [helper.make_node("Conv", ["x", "w"], ["c"], auto_pad="SAME_UPPER", strides=[2, 2]),
                helper.make_node("ReduceMean", ["c", "ax"], ["r"], keepdims=0),
                helper.make_node("Unsqueeze", ["r", "ax"], ["y"])],
    }  # fmt: skip
    for name, nodes in cases.items():
        model = _graph(nodes, [("w", w), ("ax", np.array([2, 3], np.int64))], opset=18)
        g, ref = OnnxGraph(model, {"n": 2}), OnnxGraph(model, {"n": 2}, inference="onnx")
        assert g.inference == ("own" if name == "own" else "onnx"), name
        assert g.shapes == ref.shapes, name
    assert g.shape("c") == [2, 8, 3, 3] and g.shape("y") == [2, 8, 1, 1]


def _ort_ms(model) -> float:
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    feeds = {i.name: np.ones(i.shape, np.float32) for i in sess.get_inputs()}
    sess.run(None, feeds)
    times = []
    for _ in range(7):
        t = time.perf_counter_ns()
        sess.run(None, feeds)
        times.append((time.perf_counter_ns() - t) / 1e6)
    return statistics.median(times)


def test_prediction_equals_its_kernels_predicted_one_by_one() -> None:
    # real (quick) kernel measurements; the test is about the arithmetic of the fast path
    plan = plan_initial(1, 5, prior=real_configs())
    bundle = train([(c, _ort_ms(kernel_model(c))) for c in plan], rounds=20)
    layout = LayoutModel(
        blocked={"dense": True, "dwconv": True}, in_ms_per_melem=0.3, out_ms_per_melem=0.25
    )
    cal = Calibration(
        coef=[1.1, 0.9, 0.03, 0.002], networks=["n"], fit_rmspe=0.1, uncalibrated_rmspe=0.2
    )
    calibrated = PredictorBundle(bundle.data.model_copy(update={"layout": layout}))
    calibrated = calibrated.with_calibration(cal)
    for net in (mobilenet_v3(96, 0.75, seed=5), vit(64, 1.0, seed=5, dim=96, depth=2, heads=3)):
        det = detect_kernels(net, bundle.rules)
        cfgs = [from_kernel(k) for k in det.kernels]
        own = [i for i, c in enumerate(cfgs) if c.family in bundle.families]
        assert len(own) > len(cfgs) // 2
        # one LightGBM call per family vs one per kernel
        batch = bundle.predict_configs([cfgs[i] for i in own])
        alone = [bundle.predict_configs([cfgs[i]])[0] for i in own]
        assert batch == pytest.approx(alone, rel=1e-12)
        for b, scale in ((bundle, 1.0), (calibrated, cal.coef[0])):
            pred = b.predict_detection(det)
            assert pred == b.predict_onnx(net)
            assert pred.kernels[0].type == RUNTIME_OVERHEAD
            got = {k.name: k.latency_ms for k in pred.kernels}
            for i, a in zip(own, alone, strict=True):
                assert got[det.kernels[i].name] == pytest.approx(scale * a, rel=1e-12)
            assert math.isclose(sum(got.values()), pred.latency_ms, rel_tol=1e-12)
        terms = calibrated.network_terms(det)  # the slow path: configs of its own
        entries = {k.type: k.latency_ms for k in calibrated.predict_detection(det).kernels}
        assert entries["layout_conversion"] == pytest.approx(cal.coef[1] * layout_ms(det, layout))
        assert entries["weight_traffic"] == pytest.approx(cal.coef[2] * terms["fc_weights_mb"])
        assert entries["dispatch"] == pytest.approx(cal.coef[3] * len(det.kernels))
