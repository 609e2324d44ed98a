"""Layout conversions measured as kernels of their own (onnxruntime's NCHWc reorders).

onnxruntime's CPU provider runs convolutions in a blocked layout (NCHWc, `BLOCK` channels
per block) and converts with two contrib ops of domain ``com.microsoft.nchwc``:
``ReorderInput`` (plain NCHW -> blocked, channels padded up to a multiple of the block)
and ``ReorderOutput`` (blocked -> plain, attribute ``channels``). A model of that one op
runs like any other kernel model, so a conversion's cost is measured directly, per shape,
instead of being read from the noisy per-node profile of the convolution samples.

`conversion_model` builds the model of a conversion config (`conversion_config`:
type `LAYOUT_IN` or `LAYOUT_OUT`, params ``cin`` and ``hw``); `plan_conversions` draws the
shapes (those the convolution configs read and write, and uniform ones); `fit_conversions`
fits one `ConversionCost` per direction: ``ms = fixed + a * read + b * written`` (M
elements; the padded channels counted where a side is blocked), non-negative least squares
on relative errors. `predictor.layout` uses them to take each convolution sample's own
boundary conversions out and to price the conversions a network really does.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper
from pydantic import BaseModel, ConfigDict, Field
from scipy.optimize import nnls

from predictor.configs import CONV, KernelConfig

DOMAIN = "com.microsoft.nchwc"
BLOCK = 16
"""Channel block of the blocked layout (onnxruntime NCHWc with AVX-512: 16)."""
LAYOUT_IN = "layout_in"
LAYOUT_OUT = "layout_out"
DIRECTION = {LAYOUT_IN: "in", LAYOUT_OUT: "out"}


def padded(channels: int) -> int:
    return -(-channels // BLOCK) * BLOCK


def conversion_config(direction: str, channels: int, hw: int) -> KernelConfig:
    """A conversion of a ``[1, channels, hw, hw]`` tensor; ``direction`` ``in`` (plain ->
    blocked) or ``out`` (blocked -> plain)."""
    types = {v: k for k, v in DIRECTION.items()}
    if direction not in types:
        raise ValueError(f"direction must be one of {sorted(types)}, got {direction!r}")
    return KernelConfig(type=types[direction], params={"cin": int(channels), "hw": int(hw)})


def conversion_model(cfg: KernelConfig) -> onnx.ModelProto:
    """The model of one conversion: its only node is the ``ReorderInput`` or
    ``ReorderOutput`` of ``cfg``'s shape (graph input and output in their layouts)."""
    if cfg.type not in DIRECTION:
        raise ValueError(f"not a conversion config: {cfg.type!r} (use conversion_config)")
    c, hw = int(cfg.params["cin"]), int(cfg.params["hw"])
    plain, blocked = [1, c, hw, hw], [1, padded(c), hw, hw]
    if cfg.type == LAYOUT_IN:
        shapes = (plain, blocked)
        node = helper.make_node("ReorderInput", ["x"], ["y"], domain=DOMAIN)
    else:
        shapes = (blocked, plain)
        node = helper.make_node("ReorderOutput", ["x"], ["y"], domain=DOMAIN, channels=c)
    graph = helper.make_graph(
        [node], "conversion-" + cfg.type,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shapes[0])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shapes[1])],
    )  # fmt: skip
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)]
    )


def conv_shapes(cfg: KernelConfig) -> tuple[tuple[int, int], tuple[int, int]]:
    """``(channels, hw)`` of a convolution config's input and output."""
    p = cfg.params
    hw, s = int(p["hw"]), int(p.get("stride", 1))
    return (int(p["cin"]), hw), (int(p["cout"]), (hw - 1) // s + 1)


MAX_ELEMS = 2_500_000


def plan_conversions(
    per_direction: int, seed: int, prior: Sequence[KernelConfig] = ()
) -> list[KernelConfig]:
    """``per_direction`` shapes per direction: half drawn from the inputs (``in``) and
    outputs (``out``) of the convolution configs in ``prior``, half uniform in log size."""
    rng = random.Random(seed)
    real: dict[str, list[tuple[int, int]]] = {"in": [], "out": []}
    for cfg in prior:
        if cfg.family in CONV:
            (ci, hi), (co, ho) = conv_shapes(cfg)
            if ci >= BLOCK:
                real["in"].append((ci, hi))
            real["out"].append((co, ho))
    out: list[KernelConfig] = []
    for direction in ("in", "out"):
        seen: set[tuple[int, int]] = set()
        pool = sorted(set(real[direction]))
        rng.shuffle(pool)
        for shape in pool[: per_direction // 2]:
            seen.add(shape)
        while len(seen) < per_direction:
            c = rng.choice([8, 16]) * round(2 ** rng.uniform(1, 6.5))
            hw = round(2 ** rng.uniform(2.5, 7))
            if c * hw * hw <= MAX_ELEMS:
                seen.add((c + rng.choice([0, 0, 8]), hw))
        out += [conversion_config(direction, c, hw) for c, hw in sorted(seen)]
    return out


class ConversionCost(BaseModel):
    """``ms = fixed_ms + ms_per_melem_read * read + ms_per_melem_written * written``."""

    model_config = ConfigDict(extra="forbid")

    fixed_ms: float
    ms_per_melem_read: float
    ms_per_melem_written: float
    samples: int
    fit_rmspe: float = Field(description="RMSPE on its own samples")


def _rw(direction: str, channels: int, spatial: int) -> tuple[float, float]:
    """Elements read and written (M) by a conversion of ``channels`` x ``spatial``."""
    plain, blocked = channels * spatial / 1e6, padded(channels) * spatial / 1e6
    return (plain, blocked) if direction == "in" else (blocked, plain)


def conversion_ms(cost: ConversionCost, direction: str, channels: int, spatial: int) -> float:
    """A conversion's cost (ms) by ``cost``: ``channels`` x ``spatial`` positions."""
    r, w = _rw(direction, channels, spatial)
    return cost.fixed_ms + cost.ms_per_melem_read * r + cost.ms_per_melem_written * w


def fit_conversions(
    rows: Sequence[tuple[KernelConfig, float]], overhead_ms: float = 0.0
) -> dict[str, ConversionCost]:
    """One `ConversionCost` per direction with samples, from ``(conversion config,
    measured ms)`` (the runtime's fixed cost per run, ``overhead_ms``, taken out)."""
    by: dict[str, list[tuple[list[float], float]]] = {"in": [], "out": []}
    for cfg, ms in rows:
        d = DIRECTION.get(cfg.type)
        if d is None or not ms > 0:
            continue
        c, hw = int(cfg.params["cin"]), int(cfg.params["hw"])
        by[d].append(([1.0, *_rw(d, c, hw * hw)], ms - overhead_ms))
    out = {}
    for d, pts in by.items():
        if len(pts) < 3:
            continue
        x = np.array([p for p, _ in pts])
        y = np.maximum(np.array([v for _, v in pts]), 1e-4)
        coef, _ = nnls(x / y[:, None], np.ones(len(y)))
        err = (x @ coef - y) / y
        out[d] = ConversionCost(
            fixed_ms=float(coef[0]), ms_per_melem_read=float(coef[1]),
            ms_per_melem_written=float(coef[2]), samples=len(pts),
            fit_rmspe=float(np.sqrt(np.mean(err**2))),
        )  # fmt: skip
    return out
