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
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from predictor.configs import CONV, KernelConfig, from_kernel
from predictor.detect import Detection

BLOCK = 16
"""Channel block of the blocked layout (onnxruntime NCHWc with AVX-512: 16). A grouped
convolution's signature says whether its group width is a multiple of it; a dense
convolution with fewer input channels reads the plain layout directly."""
TRANSPARENT = frozenset({"elementwise", "pool", "gap", "bn"})


def signature(cfg: KernelConfig) -> str | None:
    """The layout signature of a convolution (None for other kernels)."""
    if cfg.family not in CONV:
        return None
    if cfg.family == "dwconv":
        return "dwconv"
    groups = int(cfg.params.get("groups", 1))
    if groups <= 1:
        return "dense"
    gw = int(cfg.params.get("cin", 1)) // groups
    return "grouped_aligned" if gw % BLOCK == 0 else "grouped"


class LayoutModel(BaseModel):
    """Which convolution signatures run blocked, and what a conversion costs."""

    model_config = ConfigDict(extra="forbid")

    blocked: dict[str, bool] = Field(description="signature -> runs in the blocked layout")
    in_ms_per_melem: float = Field(description="plain -> blocked, ms per million elements")
    out_ms_per_melem: float = Field(description="blocked -> plain, ms per million elements")
    samples: int = 0


def _elems(cfg: KernelConfig) -> tuple[int, int]:
    """Input and output elements of a convolution config (input 0 when it is read plain)."""
    p = cfg.params
    hw, cin, s = int(p["hw"]), int(p["cin"]), int(p.get("stride", 1))
    out = (hw - 1) // s + 1
    return (hw * hw * cin if cin >= BLOCK else 0), out * out * int(p["cout"])


def fit_layout(rows: Sequence[tuple[KernelConfig, float]]) -> LayoutModel | None:
    """A `LayoutModel` from ``(config, layout_ms)``: each kernel sample's time in layout
    conversions (its profile share of `LAYOUT_OPS` times its median; 0 when the profile
    has none). None when no convolution sample converted anything (a plain-layout runtime)."""
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
    return LayoutModel(
        blocked={s: sum(v) * 2 > len(v) for s, v in sorted(votes.items())},
        in_ms_per_melem=per,
        out_ms_per_melem=per,
        samples=len(y),
    )


class LayoutTerms(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alone_melems: float = Field(description="elements converted by the kernels' samples alone")
    network_melems: float = Field(description="elements the network converts")


def layout_terms(det: Detection, model: LayoutModel) -> LayoutTerms:
    """Conversions of ``det``'s kernels measured alone and inside the network (M elements)."""
    cfgs = {k.name: from_kernel(k) for k in det.kernels}
    consumers: dict[str, list[str]] = defaultdict(list)
    for k in det.kernels:
        for i in k.inputs:
            consumers[i].append(k.name)
    blocked: dict[str, bool] = {}
    alone = 0.0
    for k in det.kernels:
        c = cfgs[k.name]
        sig = signature(c)
        if sig is not None:
            blocked[k.name] = model.blocked.get(sig, False)
            if blocked[k.name]:
                alone += sum(_elems(c))
        else:
            blocked[k.name] = bool(
                c.family in TRANSPARENT
                and c.tokens[0] != "mul"
                and k.inputs
                and all(blocked.get(i, False) for i in k.inputs)
            )
    out_elems = {k.name: _prod(k.config.get("output_shape")) for k in det.kernels}
    network = 0.0
    converted_in: set[str] = set()
    for k in det.kernels:
        shape = k.config.get("input_shape")
        plain_input = isinstance(shape, list) and len(shape) > 1 and int(shape[1]) >= BLOCK
        if blocked[k.name] and not k.inputs and plain_input:
            network += _prod(shape)
        for i in k.inputs:
            if blocked[k.name] and not blocked.get(i, False) and i not in converted_in:
                converted_in.add(i)
                network += out_elems.get(i, 0)
        outs = consumers.get(k.name, [])
        if blocked[k.name] and (not outs or any(not blocked[o] for o in outs)):
            network += out_elems[k.name]
    return LayoutTerms(alone_melems=alone / 1e6, network_melems=network / 1e6)


def _prod(shape: object) -> int:
    return math.prod(int(d) for d in shape) if isinstance(shape, list) else 0
