"""Search spaces: shapes and keys against the reference code, sampling, validation, LUT sums.

The ``_ref_*`` helpers transcribe the reference code (mit-han-lab/once-for-all
``OFAProxylessNASNets`` / ``OFAMobileNetV3`` ``__init__`` + ``get_active_net_config``,
``DynamicMBConvLayer.get_active_subnet_config``, ``ProxylessNASLatencyTable`` /
``MBv3LatencyTable.predict_network_latency_given_config``; GATECH-EIC/HW-NAS-Bench
``fbnet_get_metrics``) independently of ``latencylab.spaces``, so that the keys our blocks
give are checked against the keys the reference tables are queried with.
"""

from __future__ import annotations

import random
import re
import subprocess
import sys
import time
from typing import Any

import pytest

from latencylab.spaces import SPACES, FBNetSpace, LocalPredictor, OFAElasticSpace, get_space
from latencylab.spaces.lut import lut_sum_ofa_style, naive_lut_sum, ofa_entries, to_ofa_yaml


# ----------------------------------------------------------------------------- reference (OFA)
def _ref_make_divisible(v, divisor, min_val=None):
    if min_val is None:
        min_val = divisor
    new_v = max(min_val, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _ref_ofa_config(kind: str, arch: dict) -> dict:
    """OFA ``get_active_net_config()`` after ``set_active_subnet(**arch)`` (width 1.0)."""
    md = _ref_make_divisible
    if kind == "proxyless":
        base = [32, 16, 24, 40, 80, 96, 192, 320, 1280]
        input_channel, first_w, last = md(base[0], 8), md(base[1], 8), md(base[-1], 8)
        first = {
            "in_channels": input_channel,
            "out_channels": first_w,
            "kernel_size": 3,
            "stride": 1,
            "expand_ratio": 1,
            "mid_channels": None,
            "act_func": "relu6",
            "use_se": False,
        }
        blocks = [{"conv": first, "shortcut": None}]
        stages = zip(
            [md(w, 8) for w in base[2:-1]],
            [4] * 5 + [1],
            [2, 2, 2, 1, 2, 1],
            ["relu6"] * 6,
            [False] * 6,
            strict=True,
        )
        feature = first_w
    else:
        base = [16, 16, 24, 40, 80, 112, 160, 960, 1280]
        widths = [md(w, 8) for w in base[:-2]]
        input_channel, first_w = widths[0], widths[1]
        final_expand, last = md(base[-2], 8), md(base[-1], 8)
        first = {
            "in_channels": input_channel,
            "out_channels": first_w,
            "kernel_size": 3,
            "stride": 1,
            "expand_ratio": 1,
            "mid_channels": None,
            "act_func": "relu",
            "use_se": False,
        }
        blocks = [{"conv": first, "shortcut": {} if input_channel == first_w else None}]
        stages = zip(
            widths[2:],
            [4] * 5,
            [2, 2, 2, 1, 2],
            ["relu", "relu", "h_swish", "h_swish", "h_swish"],
            [False, True, False, True, True],
            strict=True,
        )
        feature = first_w
    dyn, groups, idx = [], [], 1
    for width, n, s, act, se in stages:
        groups.append(list(range(idx, idx + n)))
        idx += n
        for i in range(n):
            stride = s if i == 0 else 1
            shortcut = stride == 1 and feature == width
            dyn.append({"out": width, "stride": stride, "act": act, "se": se, "sc": shortcut})
            feature = width
    ks, e, d = arch["ks"], arch["e"], arch["d"]
    runtime_depth = [min(len(g), dd) for g, dd in zip(groups, d, strict=True)]
    cin = first_w
    for gi, g in enumerate(groups):
        for bi in g[: runtime_depth[gi]]:
            b = dyn[bi - 1]
            k, er = ks[bi - 1], e[bi - 1]
            conv = {
                "in_channels": cin,
                "out_channels": b["out"],
                "kernel_size": k,
                "stride": b["stride"],
                "expand_ratio": er,
                "mid_channels": md(round(cin * er), 8),
                "act_func": b["act"],
                "use_se": b["se"],
            }
            blocks.append({"conv": conv, "shortcut": {} if b["sc"] else None})
            cin = b["out"]
    cfg = {
        "first_conv": {"out_channels": input_channel},
        "blocks": blocks,
        "classifier": {"in_features": last, "out_features": 1000},
    }
    if kind == "proxyless":
        cfg["feature_mix_layer"] = {"in_channels": cin, "out_channels": last}
    else:
        cfg["final_expand_layer"] = {"in_channels": cin, "out_channels": final_expand}
        cfg["feature_mix_layer"] = {"in_channels": final_expand, "out_channels": last}
    return cfg


def _repr_shape(shape):
    return "x".join(str(_) for _ in shape)


def _ref_ofa_keys(kind: str, cfg: dict, image_size: int) -> list[str]:
    """The keys ``predict_network_latency_given_config`` queries, in order."""
    keys: list[str] = []

    def query(l_type, input_shape, output_shape, **kw):
        infos = [l_type, f"input:{_repr_shape(input_shape)}", f"output:{_repr_shape(output_shape)}"]
        if l_type == "expanded_conv":
            if kind == "proxyless":
                infos += [
                    f"expand:{int(kw['expand'])}",
                    f"kernel:{int(kw['ks'])}",
                    f"stride:{int(kw['stride'])}",
                    f"idskip:{int(kw['id_skip'])}",
                ]
            else:
                infos += [
                    f"expand:{int(kw['mid'])}",
                    f"kernel:{int(kw['ks'])}",
                    f"stride:{int(kw['stride'])}",
                    f"idskip:{int(kw['id_skip'])}",
                    f"se:{int(kw['se'])}",
                    f"hs:{int(kw['h_swish'])}",
                ]
        keys.append("-".join(infos))

    half = (image_size + 1) // 2
    query("Conv", [image_size, image_size, 3], [half, half, cfg["first_conv"]["out_channels"]])
    fsize = half
    for block in cfg["blocks"]:
        mb = block["conv"]
        idskip = 0 if block["shortcut"] is None else 1
        out_fz = int((fsize - 1) / mb["stride"] + 1)
        mid = (
            mb["mid_channels"]
            if mb["mid_channels"] is not None
            else round(mb["in_channels"] * mb["expand_ratio"])
        )
        query(
            "expanded_conv",
            [fsize, fsize, mb["in_channels"]],
            [out_fz, out_fz, mb["out_channels"]],
            expand=mb["expand_ratio"],
            mid=mid,
            ks=mb["kernel_size"],
            stride=mb["stride"],
            id_skip=idskip,
            se=1 if mb["use_se"] else 0,
            h_swish=1 if mb["act_func"] == "h_swish" else 0,
        )
        fsize = out_fz
    cls = cfg["classifier"]
    if kind == "proxyless":
        fm = cfg["feature_mix_layer"]
        query("Conv_1", [fsize, fsize, fm["in_channels"]], [fsize, fsize, fm["out_channels"]])
        query("Logits", [fsize, fsize, cls["in_features"]], [cls["out_features"]])
    else:
        fe, fm = cfg["final_expand_layer"], cfg["feature_mix_layer"]
        query("Conv_1", [fsize, fsize, fe["in_channels"]], [fsize, fsize, fe["out_channels"]])
        query("AvgPool2D", [fsize, fsize, fe["out_channels"]], [1, 1, fe["out_channels"]])
        query("Conv_2", [1, 1, fm["in_channels"]], [1, 1, fm["out_channels"]])
        query("Logits", [1, 1, cls["in_features"]], [cls["out_features"]])
    return keys


def _ref_ofa_sample(kind: str, rng: Any) -> dict:
    """OFA ``sample_active_subnet()`` (random.choice over sorted lists, same draw order)."""
    n_blocks, n_groups = (21, 6) if kind == "proxyless" else (20, 5)
    ks = [rng.choice([3, 5, 7]) for _ in range(n_blocks)]
    e = [rng.choice([3, 4, 6]) for _ in range(n_blocks)]
    d = [rng.choice([2, 3, 4]) for _ in range(n_groups)]
    if kind == "proxyless":
        d[-1] = 1
    return {"ks": ks, "e": e, "d": d}


def _ref_hwnas_keys(arch_index: list[int]) -> list[str]:
    """Keys HW-NAS-Bench ``fbnet_get_metrics`` (ImageNet) looks up, in order."""
    cb = [(1, 3, 1), (1, 3, 2), (3, 3, 1), (6, 3, 1), (1, 5, 1), (1, 5, 2), (3, 5, 1), (6, 5, 1)]
    chans, strides, hw, keys = [16, 24, 32, 64, 112, 184, 352], [1, 2, 2, 2, 1, 2, 1], 224, []
    keys.append(f"ConvNorm_H{hw}_W{hw}_Cin3_Cout16_kernel3_stride2_group1")
    hw //= 2
    layer = 0
    for sid, n in enumerate([1, 4, 4, 4, 4, 4, 1]):
        for i in range(n):
            op = arch_index[layer]
            cin = (16 if sid == 0 else chans[sid - 1]) if i == 0 else chans[sid]
            s = strides[sid] if i == 0 else 1
            if op < 8:
                ex, k, g = cb[op]
                keys.append(
                    f"ConvBlock_H{hw}_W{hw}_Cin{cin}_Cout{chans[sid]}_exp{ex}"
                    f"_kernel{k}_stride{s}_group{g}"
                )
            else:
                keys.append(f"Skip_H{hw}_W{hw}_Cin{cin}_Cout{chans[sid]}_stride{s}")
            hw //= s
            layer += 1
    keys.append(f"ConvNorm_H{hw}_W{hw}_Cin352_Cout1984_kernel1_stride1_group1")
    keys.append(f"AvgP_H{hw}_W{hw}_Cin1984_Cout1984_kernel{hw}_stride1")
    keys.append("FC_Cin1984_Cout1000")
    return keys


OFA = {"ofa-proxyless": "proxyless", "ofa-mbv3": "mbv3"}


def _table(space, resolutions=None, seed=0):
    rng = random.Random(seed)
    return {
        b.key: {"mean": rng.uniform(0.01, 3.0), "count": 20, "var": rng.uniform(0, 1e-3)}
        for r in (resolutions or [space.default_resolution])
        for b in space.expand(r)
    }


# ----------------------------------------------------------------------------- registry
def test_registry_and_get_space():
    assert set(SPACES) == {"ofa-proxyless", "ofa-mbv3", "fbnet"}
    assert get_space("ofa-mbv3") is SPACES["ofa-mbv3"]
    with pytest.raises(KeyError, match="valid names: fbnet, ofa-mbv3, ofa-proxyless"):
        get_space("mobilenet")
    with pytest.raises(ValueError, match="unknown search space"):
        get_space("nope")


@pytest.mark.parametrize(
    ("name", "n_unique", "n_res"),
    [("ofa-proxyless", 103, 25), ("ofa-mbv3", 96, 25), ("fbnet", 112, 1)],
)
def test_to_dict_and_unique_counts(name, n_unique, n_res):
    space = get_space(name)
    d = space.to_dict()
    assert d["name"] == name and d["description"]
    assert d["num_unique_blocks"] == n_unique
    assert len(d["resolutions"]) == n_res and d["default_resolution"] in d["resolutions"]
    assert len({b.key for b in space.expand()}) == n_unique
    if name != "fbnet":
        assert d["resolutions"] == list(range(128, 225, 4))
        assert d["choices"]["ks"] == [3, 5, 7] and d["choices"]["e"] == [3, 4, 6]
        assert d["choices"]["d"] == [2, 3, 4]
        assert len(space.expand(128)) == n_unique


# ----------------------------------------------------------------------------- shapes
def test_ofa_proxyless_shapes_224():
    space = get_space("ofa-proxyless")
    arch = {"ks": [7] * 21, "e": [6] * 21, "d": [4, 4, 4, 4, 4, 1]}
    blocks = space.blocks_for(arch, 224)
    assert len(blocks) == 2 + 21 + 2
    stem, first, *mb, mix, head = blocks
    assert (stem.kind, stem.in_shape, stem.out_shape, stem.stride, stem.kernel, stem.act) == (
        "stem",
        (224, 224, 3),
        (112, 112, 32),
        2,
        3,
        "relu6",
    )
    assert (first.kind, first.out_shape, first.expand, first.kernel, first.skip) == (
        "first_mbconv",
        (112, 112, 16),
        1,
        3,
        False,
    )
    assert not first.expand_conv and first.mid == 32
    firsts = [mb[i] for i in (0, 4, 8, 12, 16, 20)]
    assert [b.out_shape for b in firsts] == [
        (56, 56, 24),
        (28, 28, 40),
        (14, 14, 80),
        (14, 14, 96),
        (7, 7, 192),
        (7, 7, 320),
    ]
    assert [b.stride for b in firsts] == [2, 2, 2, 1, 2, 1]
    assert not any(b.skip for b in firsts)
    assert all(b.skip and b.stride == 1 for i, b in enumerate(mb) if i % 4 and i < 20)
    assert all(b.act == "relu6" and not b.se and b.expand_conv for b in mb)
    assert mb[0].mid == 16 * 6 and mb[4].mid == 24 * 6 and mb[20].mid == 192 * 6
    assert (mix.in_shape, mix.out_shape, mix.kind) == ((7, 7, 320), (7, 7, 1280), "feature_mix")
    assert (head.in_shape, head.out_shape) == ((7, 7, 1280), (1, 1, 1000))
    assert head.ofa_key == "Logits-input:7x7x1280-output:1000"
    assert mix.ofa_key == "Conv_1-input:7x7x320-output:7x7x1280"
    assert stem.ofa_key == "Conv-input:224x224x3-output:112x112x32"
    assert first.ofa_key == (
        "expanded_conv-input:112x112x32-output:112x112x16-expand:1-kernel:3-stride:1-idskip:0"
    )
    assert mb[0].ofa_key == (
        "expanded_conv-input:112x112x16-output:56x56x24-expand:6-kernel:7-stride:2-idskip:0"
    )


def test_ofa_mbv3_shapes_224():
    space = get_space("ofa-mbv3")
    blocks = space.blocks_for({"ks": 3, "e": 4, "d": 4}, 224)  # scalars broadcast as in OFA
    stem, first, *mb, fe, pool, mix, head = blocks
    assert len(mb) == 20
    assert (stem.out_shape, stem.act) == ((112, 112, 16), "h_swish")
    assert (first.out_shape, first.skip, first.act, first.se, first.mid) == (
        (112, 112, 16),
        True,
        "relu",
        False,
        16,
    )
    firsts = mb[::4]
    assert [b.out_shape for b in firsts] == [
        (56, 56, 24),
        (28, 28, 40),
        (14, 14, 80),
        (14, 14, 112),
        (7, 7, 160),
    ]
    assert [b.se for b in firsts] == [False, True, False, True, True]
    assert [b.act for b in firsts] == ["relu", "relu", "h_swish", "h_swish", "h_swish"]
    assert mb[4].mid == 24 * 4 and mb[4].se_mid == _ref_make_divisible(96 // 4, 8)
    assert (fe.in_shape, fe.out_shape, fe.act, fe.bn) == ((7, 7, 160), (7, 7, 960), "h_swish", True)
    assert (pool.in_shape, pool.out_shape) == ((7, 7, 960), (1, 1, 960))
    assert (mix.in_shape, mix.out_shape, mix.bn, mix.bias) == (
        (1, 1, 960),
        (1, 1, 1280),
        False,
        False,
    )
    assert [str(b.ofa_key).split("-")[0] for b in (stem, fe, pool, mix, head)] == [
        "Conv",
        "Conv_1",
        "AvgPool2D",
        "Conv_2",
        "Logits",
    ]
    assert mb[5].ofa_key == (
        "expanded_conv-input:28x28x40-output:28x28x40-expand:160-kernel:3-stride:1-idskip:1-se:1-hs:0"
    )


def test_fbnet_shapes_and_hwnas_keys():
    space = get_space("fbnet")
    arch = [0] * 22
    blocks = space.blocks_for(arch)
    assert len(blocks) == 1 + 22 + 3
    assert blocks[0].out_shape == (112, 112, 16)
    assert [b.out_shape[2] for b in blocks[1:23]] == [16] + [24] * 4 + [32] * 4 + [64] * 4 + [
        112
    ] * 4 + [184] * 4 + [352]
    assert blocks[22].out_shape == (7, 7, 352) and blocks[23].out_shape == (7, 7, 1984)
    g2 = space.blocks_for(["k5_e1_g2"] * 22)[3]
    assert (g2.groups, g2.shuffle, g2.kernel, g2.expand_conv, g2.skip) == (2, True, 5, True, True)
    skips = space.blocks_for([8] * 22)
    assert skips[1].is_noop and not skips[2].is_noop and skips[2].stride == 2
    rng = random.Random(7)
    for _ in range(50):
        a = space.sample(rng)
        assert [b.hwnas_key for b in space.blocks_for(a)] == _ref_hwnas_keys(a)
        assert all(b.ofa_key is None for b in space.blocks_for(a))


def test_fbnet_cifar_setting():
    space = FBNetSpace("cifar100")
    blocks = space.blocks_for(space.sample(random.Random(0)))
    assert blocks[0].in_shape == (32, 32, 3) and blocks[0].out_shape == (32, 32, 16)
    assert blocks[-3].in_shape == (4, 4, 352) and blocks[-1].out_shape == (1, 1, 100)
    with pytest.raises(ValueError, match="dataset"):
        FBNetSpace("mnist")


# ----------------------------------------------------------------------------- reference keys
@pytest.mark.parametrize("name", sorted(OFA))
@pytest.mark.parametrize("resolution", [128, 160, 172, 224])
def test_ofa_keys_match_reference_latency_table(name, resolution):
    space, kind = get_space(name), OFA[name]
    assert isinstance(space, OFAElasticSpace)
    rng = random.Random(resolution)
    archs = [space.sample(rng) for _ in range(40)]
    archs.append(
        {"ks": [7] * space.num_blocks, "e": [6] * space.num_blocks, "d": [4] * len(space.stages)}
    )
    for arch in archs:
        ours = [b.ofa_key for b in space.blocks_for(arch, resolution)]
        assert ours == _ref_ofa_keys(kind, _ref_ofa_config(kind, arch), resolution)


@pytest.mark.parametrize("name", sorted(OFA))
def test_sample_matches_ofa_sample_active_subnet(name):
    space = get_space(name)
    for seed in range(5):
        assert space.sample(random.Random(seed)) == _ref_ofa_sample(OFA[name], random.Random(seed))
    random.seed(3)
    a = space.sample()
    random.seed(3)
    assert a == _ref_ofa_sample(OFA[name], random)


@pytest.mark.parametrize("name", sorted(SPACES))
def test_every_sampled_block_is_in_expand(name):
    space = get_space(name)
    rng = random.Random(11)
    for res in space.resolutions[:: max(1, len(space.resolutions) // 4)]:
        keys = {b.key for b in space.expand(res)}
        for _ in range(30):
            arch = space.sample(rng)
            space.validate(arch)
            assert {b.key for b in space.blocks_for(arch, res)} <= keys


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("arch", "match"),
    [
        ([1, 2], "must be a dict"),
        ({"ks": [3] * 21, "e": [3] * 21}, "missing d"),
        ({"ks": [3] * 20, "e": [3] * 21, "d": [2] * 6}, "ks must have 21 entries"),
        ({"ks": [3] * 21, "e": [3] * 20 + [5], "d": [2] * 6}, r"e\[20\]=5 not in \[3, 4, 6\]"),
        ({"ks": [3] * 21, "e": [3] * 21, "d": [1] * 6}, r"d\[0\]=1 not in \[2, 3, 4\]"),
        ({"ks": [3] * 21, "e": [3] * 21, "d": [2] * 6, "image_size": 225}, "resolution 225"),
        ({"ks": "3", "e": [3] * 21, "d": [2] * 6}, "ks must be a list"),
    ],
)
def test_ofa_validation_errors(arch, match):
    space = get_space("ofa-proxyless")
    with pytest.raises(ValueError, match=match):
        space.validate(arch)
    with pytest.raises(ValueError, match=match):
        space.blocks_for(arch)


def test_other_validation_errors():
    fb = get_space("fbnet")
    with pytest.raises(ValueError, match="22 ops"):
        fb.validate([0] * 21)
    with pytest.raises(ValueError, match="op 3 is 'k7_e6'"):
        fb.validate([0, 0, 0, "k7_e6"] + [0] * 18)
    fb.validate({"op_idx_list": [8] * 22})
    with pytest.raises(ValueError, match=re.escape("allowed: 128..224 step 4")):
        get_space("ofa-mbv3").expand(100)
    get_space("ofa-proxyless").validate({"ks": [3] * 21, "e": [3] * 21, "d": [2] * 5 + [4]})


# ----------------------------------------------------------------------------- predictor
@pytest.mark.parametrize("name", sorted(SPACES))
def test_local_predictor_equals_naive_sum(name):
    space = get_space(name)
    res = list(space.resolutions[:2]) if name != "fbnet" else [224]
    table = _table(space, [*res, space.default_resolution])
    pred = LocalPredictor(space, table, {"kind": "linear", "a": 1.5, "b": 0.25})
    rng = random.Random(5)
    archs = [space.sample(rng) for _ in range(200)]
    lat, lut = pred.predict(archs)
    for arch, la, lu in zip(archs, lat, lut, strict=True):
        assert lu == pytest.approx(naive_lut_sum(space, table, arch), rel=1e-12)
        assert la == pytest.approx(1.5 * lu + 0.25, rel=1e-12)
    _, lut_r = pred.predict(archs[:20], resolution=res[0])
    assert lut_r == pytest.approx([naive_lut_sum(space, table, a, res[0]) for a in archs[:20]])
    plain = LocalPredictor(space, {k: v["mean"] for k, v in table.items()})
    assert plain.predict(archs)[0] == pytest.approx(lut, rel=1e-12)


def test_predictor_shorthands_resolution_and_errors():
    space = get_space("ofa-proxyless")
    table = _table(space, [128, 224])
    pred = LocalPredictor(space, table)
    arch = space.sample(random.Random(1))
    at128 = naive_lut_sum(space, table, arch, 128)
    assert pred.predict_one({**arch, "image_size": 128}) == pytest.approx((at128, at128))
    assert pred.predict_one({**arch, "r": [128]})[1] == pytest.approx(at128)
    assert pred.predict_one({"ks": 7, "e": 6, "d": 4})[1] == pytest.approx(
        naive_lut_sum(space, table, {"ks": [7] * 21, "e": [6] * 21, "d": [4] * 6})
    )
    with pytest.raises(ValueError, match="ks must have 21"):
        pred.predict([{"ks": [3] * 20, "e": [3] * 21, "d": [2] * 6}])
    missing = space.blocks_for(arch)[5].key
    partial = {k: v for k, v in table.items() if k != missing}
    with pytest.raises(KeyError, match="no entry for block"):
        LocalPredictor(space, partial).predict([arch])
    with pytest.raises(ValueError, match="calibration kind"):
        LocalPredictor(space, table, {"kind": "spline"})
    fb = get_space("fbnet")
    fbt = _table(fb)
    ops = fb.sample(random.Random(2))
    names = [
        ("k3_e1", "k3_e1_g2", "k3_e3", "k3_e6", "k5_e1", "k5_e1_g2", "k5_e3", "k5_e6", "skip")[i]
        for i in ops
    ]
    fpred = LocalPredictor(fb, fbt, {"kind": "scale", "a": 2.0})
    assert (
        fpred.predict_one(names)
        == fpred.predict_one(ops)
        == fpred.predict_one({"op_idx_list": ops})
    )


def test_predictor_throughput_is_logged(capsys):
    """Throughput is a benchmark goal (>= 100k arch/s on one core), printed, not asserted."""
    space = get_space("ofa-proxyless")
    pred = LocalPredictor(space, _table(space))
    rng = random.Random(0)
    archs = [space.sample(rng) for _ in range(20000)]
    t0 = time.perf_counter()
    lat, _ = pred.predict(archs)
    rate = len(archs) / (time.perf_counter() - t0)
    with capsys.disabled():
        print(f"\nofa-proxyless LocalPredictor: {rate:,.0f} arch/s")
    assert len(lat) == len(archs)


# ----------------------------------------------------------------------------- OFA yaml
@pytest.mark.parametrize("name", sorted(OFA))
def test_ofa_yaml_loads_and_gives_the_same_sums(name):
    yaml = pytest.importorskip("yaml", reason="PyYAML reads the export back as OFA does")
    space = get_space(name)
    table = _table(space, [160])
    table[space.expand(160)[0].key]["var"] = 1e-05  # an exponent float must stay a float
    entries = ofa_entries(space, table, 160)
    assert len(entries) == len(space.expand(160))
    text = to_ofa_yaml(entries, header=f"{name} @160")
    lut = yaml.load(text, Loader=yaml.FullLoader)  # how OFA's LatencyTable loads it
    assert lut == entries and isinstance(lut[next(iter(lut))]["var"], float)
    pred = LocalPredictor(space, table, resolution=160)
    rng = random.Random(3)
    for _ in range(30):
        arch = space.sample(rng)
        keys = _ref_ofa_keys(OFA[name], _ref_ofa_config(OFA[name], arch), 160)
        ofa_sum = 0
        for k in keys:  # what the reference predict_network_latency_given_config adds up
            ofa_sum += lut[k]["mean"]
        assert ofa_sum == pytest.approx(pred.predict_one(arch)[1], rel=1e-12)
        assert lut_sum_ofa_style(space, arch, lut, 160) == pytest.approx(ofa_sum, rel=1e-12)


def test_to_ofa_yaml_format():
    text = to_ofa_yaml({"Conv-input:224x224x3-output:112x112x32": {"mean": 1.5, "count": 3}})
    assert text == (
        "Conv-input:224x224x3-output:112x112x32:\n  count: 3\n  mean: 1.5\n  var: 0.0\n"
    )
    assert to_ofa_yaml([("a b: c", 2e-7)]).startswith('"a b: c":\n  count: 1\n  mean: 2.0e-07')
    assert to_ofa_yaml({}) == "{}\n"


def test_sdk_package_imports_stay_light():
    code = (
        "import sys, latencylab.spaces as s; s.get_space('ofa-mbv3').expand(); "
        "bad = [m for m in ('numpy', 'torch', 'yaml', 'onnx') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
