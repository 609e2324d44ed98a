"""Kernel detection on networks exported from PyTorch modules written like OFA's code.

The normalised export (`converters.onnx_normalize`) is detected as exactly the kernels of
the generated network of the same arch; the export as it is keeps what onnxruntime runs
(OFA's ``x.mean(3).mean(2)`` pooling as two reductions, the written-out h-swish and
h-sigmoid as their elementwise ops), not the fused kernels of the generated network.
Structure only, no timing; the smallest resolution the spaces allow.
"""

from __future__ import annotations

import random
import warnings
from collections import Counter

import pytest

from converters.blocks import network_model
from converters.onnx_normalize import normalize
from converters.torch_reference import SUPPORTED, exported_network
from latencylab.spaces import get_space
from predictor.configs import from_kernel
from predictor.detect import detect_kernels

RESOLUTION = 128


@pytest.mark.parametrize("space_name", SUPPORTED)
def test_exported_kernels_match_generated_after_normalisation(space_name: str) -> None:
    space = get_space(space_name)
    arch = space.sample(random.Random(3))
    generated = detect_kernels(network_model(space, arch, RESOLUTION))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        exported = exported_network(space, arch, RESOLUTION)
    normalized, rewrites = normalize(exported)
    assert rewrites["GlobalAveragePool"] >= 1
    det = detect_kernels(normalized)
    # same kernels, in the same order, with the same configurations the regressors read
    assert [k.type for k in det.kernels] == [k.type for k in generated.kernels]
    assert [from_kernel(k).key() for k in det.kernels] == [
        from_kernel(k).key() for k in generated.kernels
    ]
    assert [b.config for b in det.blocks] == [b.config for b in generated.blocks]

    gen_types = Counter(k.type for k in generated.kernels)
    raw = Counter(k.type for k in detect_kernels(exported).kernels)
    # every x.mean(3).mean(2) is two reductions: the final pooling and one per SE block
    assert raw["reducemean"] == 2 * (gen_types["gap"] + gen_types["se"])
    assert raw["gap"] == raw["se"] == 0
    if space_name == "ofa-mbv3":
        assert any("hswish" in t for t in gen_types)
        # written-out h-swish: no fused h-swish kernel; Add(+3), Clip, Mul, Div(/6) each one
        assert not any("hswish" in t for t in raw)
        assert raw["relu6"] == raw["scale"] > 0 and raw["bias"] >= raw["relu6"]
    else:  # ReLU6 only: the convolutions fuse alike
        assert {t: n for t, n in raw.items() if t != "reducemean"} == {
            t: n for t, n in gen_types.items() if t != "gap"
        }
