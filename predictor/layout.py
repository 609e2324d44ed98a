"""Blocked memory layouts: which kernels a runtime runs in a blocked layout, and where a
network converts between layouts.

Runtimes with blocked layouts (onnxruntime's NCHWc on x86, OpenVINO's ``nChw16c``)
run convolutions on channel blocks and insert layout conversions (`LAYOUT_OPS`) between
a blocked kernel and one that reads the plain layout. A kernel model measured alone pays
a conversion at its input and its output; inside a network the blocked layout flows from
kernel to kernel, so the sum of kernel samples over-counts conversions where neighbours
are blocked (MobileNetV2: none inside the network) and under-counts none where they are
not (an SE block's ``Mul``, a transpose, a grouped convolution the runtime keeps plain).

`fit_layout` learns, from kernel samples with their profile's layout-conversion time,
which convolution *signatures* (`signature`) run blocked and the cost of a conversion per
element; `layout_terms` walks a detected network and counts the elements its kernels'
samples converted alone (``alone``) and the elements the network converts (``network``):
pooling, GAP, BN and elementwise ops other than ``mul`` take their inputs' layout, every
other non-convolution kernel reads the plain layout.

With conversions measured as kernels of their own (`predictor.conversions`, passed to
`fit_layout` as ``conversions``) the model prices each conversion by its shape
(`ConversionCost`): `alone_ms` is what a convolution sample paid at its own boundary
(taken out of the sample before training when ``kernels_exclude_conversions``), and
`layout_ms` is the network's term: the conversions it really does, minus those its
kernels' predictions still include.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from predictor.configs import CONV, KernelConfig, from_kernel
from predictor.conversions import BLOCK, ConversionCost, conv_shapes, conversion_ms
from predictor.detect import Detection

# BLOCK: channel block of the blocked layout (onnxruntime NCHWc with AVX-512: 16). A
# grouped convolution's signature says whether its group width is a multiple of it; a
# dense convolution with fewer input channels reads the plain layout directly.
TRANSPARENT = frozenset({"elementwise", "pool", "gap", "bn"})


ALIGN = 4
"""Channel alignment onnxruntime's NCHWc convolutions need: a depthwise convolution, or a
dense one reading 16 channels or more, with input channels not a multiple of it stays in
the plain layout (GhostNet's odd widths): its own signature (``*_unaligned``)."""


def signature(cfg: KernelConfig) -> str | None:
    """The layout signature of a convolution (None for other kernels)."""
    if cfg.family not in CONV:
        return None
    cin = int(cfg.params.get("cin", 1))
    if cfg.family == "dwconv":
        return "dwconv" if cin % ALIGN == 0 else "dwconv_unaligned"
    groups = int(cfg.params.get("groups", 1))
    if groups <= 1:
        return "dense" if cin < BLOCK or cin % ALIGN == 0 else "dense_unaligned"
    gw = cin // groups
    return "grouped_aligned" if gw % BLOCK == 0 else "grouped"


class LayoutModel(BaseModel):
    """Which convolution signatures run blocked, and what a conversion costs."""

    model_config = ConfigDict(extra="forbid")

    blocked: dict[str, bool] = Field(description="signature -> runs in the blocked layout")
    in_ms_per_melem: float = Field(description="plain -> blocked, ms per million elements")
    out_ms_per_melem: float = Field(description="blocked -> plain, ms per million elements")
    samples: int = 0
    conversions: dict[str, ConversionCost] = Field(
        default_factory=dict,
        description="measured conversion costs by direction (in, out): predictor.conversions",
    )
    kernels_exclude_conversions: bool = Field(
        False, description="the convolution samples were trained without their own conversions"
    )

    def cost_ms(self, direction: str, channels: int, spatial: int) -> float:
        """One conversion of ``channels`` x ``spatial`` positions (ms)."""
        cost = self.conversions.get(direction)
        if cost is not None:
            return conversion_ms(cost, direction, channels, spatial)
        per = self.in_ms_per_melem if direction == "in" else self.out_ms_per_melem
        return per * channels * spatial / 1e6


def _elems(cfg: KernelConfig) -> tuple[int, int]:
    """Input and output elements of a convolution config (input 0 when it is read plain)."""
    p = cfg.params
    hw, cin, s = int(p["hw"]), int(p["cin"]), int(p.get("stride", 1))
    out = (hw - 1) // s + 1
    return (hw * hw * cin if cin >= BLOCK else 0), out * out * int(p["cout"])


def alone_ms(cfg: KernelConfig, model: LayoutModel) -> float:
    """The conversions a convolution sample of ``cfg`` pays at its own boundary (ms; 0 for
    a signature that runs plain and for other kernels)."""
    sig = signature(cfg)
    if sig is None or not model.blocked.get(sig, False):
        return 0.0
    (ci, hi), (co, ho) = conv_shapes(cfg)
    into = model.cost_ms("in", ci, hi * hi) if ci >= BLOCK else 0.0
    return into + model.cost_ms("out", co, ho * ho)


def fit_layout(
    rows: Sequence[tuple[KernelConfig, float]],
    conversions: dict[str, ConversionCost] | None = None,
    *,
    exclude: bool = False,
) -> LayoutModel | None:
    """A `LayoutModel` from ``(config, layout_ms)``: each kernel sample's time in layout
    conversions (its profile share of `LAYOUT_OPS` times its median; 0 when the profile
    has none). None when no convolution sample converted anything (a plain-layout runtime).
    ``conversions``: measured costs (`predictor.conversions.fit_conversions`), which then
    price every conversion (the profiles only say which signatures convert); ``exclude``:
    the convolution samples are trained without their own conversions (`alone_ms`)."""
    votes: dict[str, list[bool]] = defaultdict(list)
    x, y = [], []
    for cfg, ms in rows:
        sig = signature(cfg)
        if sig is None:
            continue
        votes[sig].append(ms > 0)
        if ms > 0:
            x.append([e / 1e6 for e in _elems(cfg)])
            y.append(ms)
    if not y:
        return None
    # per-element cost: the median ratio is robust to the profile's noise on tiny kernels
    xa, ya = np.array(x), np.array(y)
    total = xa.sum(axis=1)
    keep = total > 0.05  # kernels of < 50k elements: per-node profiling overhead dominates
    per = float(np.median(ya[keep] / total[keep])) if keep.any() else float(np.median(ya / total))
    conv = dict(conversions or {})
    slope = {d: c.ms_per_melem_read + c.ms_per_melem_written for d, c in conv.items()}
    return LayoutModel(
        blocked={s: sum(v) * 2 > len(v) for s, v in sorted(votes.items())},
        in_ms_per_melem=slope.get("in", per),
        out_ms_per_melem=slope.get("out", per),
        samples=len(y),
        conversions=conv,
        kernels_exclude_conversions=bool(exclude and conv),
    )


class LayoutTerms(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alone_melems: float = Field(description="elements converted by the kernels' samples alone")
    network_melems: float = Field(description="elements the network converts")
    alone_ms: float = Field(0.0, description="cost of the samples' own conversions")
    network_ms: float = Field(0.0, description="cost of the network's conversions")


def layout_terms(
    det: Detection, model: LayoutModel, configs: Sequence[KernelConfig] | None = None
) -> LayoutTerms:
    """Conversions of ``det``'s kernels measured alone and inside the network (M elements).
    ``configs``: the kernels' `from_kernel` configs, where the caller has them already."""
    kcfgs = configs if configs is not None else [from_kernel(k) for k in det.kernels]
    cfgs = {k.name: c for k, c in zip(det.kernels, kcfgs, strict=True)}
    consumers: dict[str, list[str]] = defaultdict(list)
    for k in det.kernels:
        for i in k.inputs:
            consumers[i].append(k.name)
    blocked: dict[str, bool] = {}
    alone = alone_cost = 0.0
    for k in det.kernels:
        c = cfgs[k.name]
        sig = signature(c)
        if sig is not None:
            blocked[k.name] = model.blocked.get(sig, False)
            if blocked[k.name]:
                alone += sum(_elems(c))
                alone_cost += alone_ms(c, model)
        else:
            blocked[k.name] = bool(
                c.family in TRANSPARENT
                and c.tokens[0] != "mul"
                and k.inputs
                and all(blocked.get(i, False) for i in k.inputs)
            )
    out_shapes = {k.name: k.config.get("output_shape") for k in det.kernels}
    network = network_cost = 0.0

    def convert(direction: str, shape: object) -> None:
        nonlocal network, network_cost
        channels, spatial = _cs(shape)
        network += channels * spatial
        network_cost += model.cost_ms(direction, channels, spatial) if channels else 0.0

    converted_in: set[str] = set()
    for k in det.kernels:
        shape = k.config.get("input_shape")
        plain_input = isinstance(shape, list) and len(shape) > 1 and int(shape[1]) >= BLOCK
        if blocked[k.name] and not k.inputs and plain_input:
            convert("in", shape)
        for i in k.inputs:
            if blocked[k.name] and not blocked.get(i, False) and i not in converted_in:
                converted_in.add(i)
                convert("in", out_shapes.get(i))
        outs = consumers.get(k.name, [])
        if blocked[k.name] and (not outs or any(not blocked[o] for o in outs)):
            convert("out", out_shapes[k.name])
    return LayoutTerms(
        alone_melems=alone / 1e6, network_melems=network / 1e6,
        alone_ms=alone_cost, network_ms=network_cost,
    )  # fmt: skip


def layout_ms(
    det: Detection, model: LayoutModel, configs: Sequence[KernelConfig] | None = None
) -> float:
    """The network's layout term (ms): the conversions it does minus those its kernels'
    predictions include (the samples' own, unless the samples were trained without them)."""
    t = layout_terms(det, model, configs)
    if not model.conversions:  # profile-only model: one cost per element
        return (t.network_melems - t.alone_melems) * model.in_ms_per_melem
    return t.network_ms - (0.0 if model.kernels_exclude_conversions else t.alone_ms)


def _cs(shape: object) -> tuple[int, int]:
    """Channels and spatial positions of a ``[N, C, ...]`` shape (0, 0 when unknown)."""
    if not isinstance(shape, list) or len(shape) < 2:
        return 0, 0
    dims = [int(d) for d in shape]
    return dims[1], math.prod(dims[2:]) * dims[0]
