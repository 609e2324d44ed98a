"""The Once-for-All MobileNetV3 space (``OFAMobileNetV3``).

Reference: mit-han-lab/once-for-all, ``ofa/imagenet_classification/elastic_nn/networks/
ofa_mbv3.py``. Stem 3x3/2 h-swish to 16 channels; a fixed first block (3x3, expand 1, ReLU,
16 -> 16 with identity skip); five elastic stages of up to 4 blocks:

=====  =====  ======  =======  ===
width  first  act     SE       d
=====  =====  ======  =======  ===
24     s2     relu    no       2-4
40     s2     relu    yes      2-4
80     s2     h_swish no       2-4
112    s1     h_swish yes      2-4
160    s2     h_swish yes      2-4
=====  =====  ======  =======  ===

then the final expand layer (1x1 conv 160 -> 960, BN, h-swish), global average pooling, the
feature mix layer (1x1 conv 960 -> 1280, no BN, no bias, h-swish) and the classifier.

Architecture encoding: OFA's ``{"ks": [20 ints], "e": [20 ints], "d": [5 ints]}`` (see
:mod:`latencylab.spaces.ofa_proxyless` for the shared rules). OFA's MobileNetV3 latency
table keys blocks by their middle channel count (``expand:<mid>``) plus ``se`` and ``hs``.
"""

from __future__ import annotations

from .base import Block, make_divisible
from .ofa_proxyless import OFAElasticSpace, Stage


class OFAMobileNetV3Space(OFAElasticSpace):
    """``OFAMobileNetV3``: ks {3,5,7}, e {3,4,6}, d {2,3,4}, SE and h-swish per stage."""

    name = "ofa-mbv3"
    table = "ofa-mbv3"
    arch_format = 'OFA sample_active_subnet(): {"ks": [20 ints], "e": [20 ints], "d": [5 ints]}'

    def __init__(self, width_mult: float = 1.0) -> None:
        base = [16, 16, 24, 40, 80, 112, 160, 960, 1280]
        self.final_expand_width = make_divisible(base[-2] * width_mult, 8)
        self.last_channel = make_divisible(base[-1] * width_mult, 8)
        widths = [make_divisible(b * width_mult, 8) for b in base[:-2]]
        self.stem_width, self.first_width = widths[0], widths[1]
        strides = [1, 2, 2, 2, 1, 2]
        acts = ["relu", "relu", "relu", "h_swish", "h_swish", "h_swish"]
        ses = [False, False, True, False, True, True]
        self.first_stride, self.first_act, self.first_se = strides[0], acts[0], ses[0]
        self.stages = tuple(
            Stage(w, 4, s, a, se)
            for w, s, a, se in zip(widths[2:], strides[1:], acts[1:], ses[1:], strict=True)
        )
        self.description = (
            f"Once-for-All MobileNetV3 space (OFAMobileNetV3, width {width_mult}): ks {{3,5,7}}, "
            "expand {3,4,6}, depth {2,3,4} per stage, SE and h-swish per stage, "
            "resolutions 128-224 step 4."
        )
        super().__init__()

    def _pre(self, resolution: int) -> list[Block]:
        f = (resolution - 1) // 2 + 1
        c0, c1 = self.stem_width, self.first_width
        fo = (f - 1) // self.first_stride + 1
        stem = Block(
            "stem",
            (resolution, resolution, 3),
            (f, f, c0),
            kernel=3,
            stride=2,
            act="h_swish",
            table=self.table,
        )
        mid = round(c0 * 1)
        first = Block(
            "first_mbconv",
            (f, f, c0),
            (fo, fo, c1),
            kernel=3,
            stride=self.first_stride,
            expand=1,
            mid=mid,
            act=self.first_act,
            se=self.first_se,
            se_mid=make_divisible(mid // 4, 8) if self.first_se else 0,
            skip=c0 == c1,
            expand_conv=False,
            table=self.table,
        )
        return [stem, first]

    def _post(self, size: int, channels: int) -> list[Block]:
        fe, last, t = self.final_expand_width, self.last_channel, self.table
        return [
            Block("final_expand", (size, size, channels), (size, size, fe), act="h_swish", table=t),
            Block("pool", (size, size, fe), (1, 1, fe), bn=False, table=t),
            Block("feature_mix", (1, 1, fe), (1, 1, last), act="h_swish", bn=False, table=t),
            Block("head", (1, 1, last), (1, 1, self.n_classes), bn=False, bias=True, table=t),
        ]
