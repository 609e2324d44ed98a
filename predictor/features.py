"""Regression features of a `KernelConfig`, per family: sizes, FLOPs, memory traffic, fused ops.

Every family's feature vector has fixed names (`FEATURES`); sizes are given as logs
(``log2``) so that LightGBM's linear leaves fit power laws, plus the raw small integers
(kernel, stride, groups) and codes of the fused epilogue (``bn``, activation, residual).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from predictor.configs import ELEMENTWISE, KernelConfig

ACT_CODES = {
    None: 0, "relu": 1, "relu6": 2, "hswish": 3, "hsigmoid": 4, "sigmoid": 5, "tanh": 6,
    "leakyrelu": 7, "silu": 8, "gelu": 9, "clip": 10,
}  # fmt: skip
OP_CODES = {op: i + 1 for i, op in enumerate(ELEMENTWISE)}


def _lg(v: float) -> float:
    v = float(v)
    return math.log2(v) if v > 1.0 else math.log2(max(v, 1.0))


NUMBER = (int, float)  # a tuple: isinstance on one is quicker than on ``int | float``


def _i(cfg: KernelConfig, name: str, default: int = 1) -> int:
    v = cfg.params.get(name, default)
    return int(v) if isinstance(v, NUMBER) else default


def _dims(cfg: KernelConfig, name: str) -> list[int]:
    v = cfg.params.get(name)
    return [int(d) for d in str(v).split("x")] if v else [1]


def _epilogue(cfg: KernelConfig) -> list[float]:
    tail = cfg.tokens[1:]
    acts = [t for t in tail if t in ACT_CODES]
    return [float("bn" in tail), float(ACT_CODES[acts[-1]] if acts else 0), float("add" in tail)]


EPILOGUE = ["bn", "act", "residual"]


def _conv(cfg: KernelConfig) -> list[float]:
    hw, cin, cout = _i(cfg, "hw"), _i(cfg, "cin"), _i(cfg, "cout")
    k, s = _i(cfg, "kernel"), _i(cfg, "stride")
    groups = cin if cfg.family == "dwconv" else _i(cfg, "groups")
    if cfg.family == "pwconv":
        k = 1
    out = (hw - 1) // s + 1
    flops = out * out * cout * (cin // max(groups, 1)) * k * k
    inb, outb = hw * hw * cin, out * out * cout
    wb = cout * (cin // max(groups, 1)) * k * k
    return [
        _lg(hw), _lg(cin), _lg(cout), k, s, _lg(groups), _lg(flops), _lg(inb), _lg(outb),
        _lg(wb), _lg(inb + outb + wb), cin % 8, cout % 8, *_epilogue(cfg),
    ]  # fmt: skip


CONV_F = [
    "hw", "cin", "cout", "kernel", "stride", "groups", "flops", "in_elems", "out_elems",
    "weights", "traffic", "cin_mod8", "cout_mod8", *EPILOGUE,
]  # fmt: skip


def _fc(cfg: KernelConfig) -> list[float]:
    t, cin, cout = _i(cfg, "tokens"), _i(cfg, "cin"), _i(cfg, "cout")
    return [
        _lg(t), _lg(cin), _lg(cout), _lg(t * cin * cout), _lg(t * cin), _lg(t * cout),
        _lg(cin * cout), float("bias" in cfg.tokens), *_epilogue(cfg),
    ]  # fmt: skip


def _matmul(cfg: KernelConfig) -> list[float]:
    b, m, k, n = (_i(cfg, v) for v in ("batch", "m", "k", "n"))
    return [_lg(b), _lg(m), _lg(k), _lg(n), _lg(b * m * k * n), _lg(b * (m * k + k * n + m * n))]


def _attention(cfg: KernelConfig) -> list[float]:
    h, s, skv, d = (_i(cfg, v) for v in ("heads", "seq", "seq_kv", "dim"))
    return [_lg(h), _lg(s), _lg(skv), _lg(d), _lg(2 * h * s * skv * d), _lg(h * s * skv)]


def _tokens(cfg: KernelConfig) -> list[float]:
    t, d = _i(cfg, "tokens"), _i(cfg, "dim")
    op = OP_CODES.get(cfg.tokens[0], 0)
    binary = float(cfg.tokens[0] in ("add", "mul"))
    return [_lg(t), _lg(d), _lg(t * d), float(op), binary, float(len(cfg.tokens) - 1)]


def _map(cfg: KernelConfig) -> list[float]:
    hw, cin, k, s = _i(cfg, "hw"), _i(cfg, "cin"), _i(cfg, "kernel"), _i(cfg, "stride")
    out = (hw - 1) // s + 1
    extra = [float(cfg.tokens[0] == "maxpool"), _lg(_i(cfg, "mid")), float(cfg.params.get("gate") == "hsigmoid"), _lg(_i(cfg, "groups"))]  # fmt: skip
    return [_lg(hw), _lg(cin), _lg(hw * hw * cin), k, s, _lg(out * out * cin), *extra]


def _shape(cfg: KernelConfig) -> list[float]:
    shape = _dims(cfg, "shape")
    out = _dims(cfg, "out") if "out" in cfg.params else shape
    axis = _i(cfg, "axis", 0)
    perm = [int(p) for p in str(cfg.params.get("perm", "0")).split(",")]
    code = sum(p * 5**i for i, p in enumerate(perm))
    inner = math.prod(shape[axis + 1 :]) if axis < len(shape) else 1
    moved_last = float(bool(perm) and perm[-1] != len(perm) - 1)
    return [
        _lg(math.prod(shape)), _lg(math.prod(out)), float(len(shape)), float(axis),
        _lg(inner), float(_i(cfg, "parts", 1)), float(code), moved_last, _lg(shape[-1]),
        _lg(out[-1]),
    ]  # fmt: skip


Extract = Callable[[KernelConfig], list[float]]
TOKENS_F = ["tokens", "dim", "elems", "op", "binary", "epilogue_ops"]
MAP_F = ["hw", "cin", "elems", "kernel", "stride", "out_elems", "max", "mid", "hsigmoid", "groups"]
SHAPE_F = [
    "in_elems", "out_elems", "rank", "axis", "inner", "parts", "perm", "moves_last",
    "in_last", "out_last",
]  # fmt: skip
FC_F = ["tokens", "cin", "cout", "flops", "in_elems", "out_elems", "weights", "bias", *EPILOGUE]
MATMUL_F = ["batch", "m", "k", "n", "flops", "traffic"]
ATTN_F = ["heads", "seq", "seq_kv", "dim", "flops", "scores"]

FEATURES: dict[str, tuple[list[str], Extract]] = {
    "conv": (CONV_F, _conv),
    "pwconv": (CONV_F, _conv),
    "dwconv": (CONV_F, _conv),
    "fc": (FC_F, _fc),
    "matmul": (MATMUL_F, _matmul),
    "attention": (ATTN_F, _attention),
    "layernorm": (TOKENS_F, _tokens),
    "softmax": (TOKENS_F, _tokens),
    "elementwise": (TOKENS_F, _tokens),
    "bn": (MAP_F, _map),
    "pool": (MAP_F, _map),
    "gap": (MAP_F, _map),
    "se": (MAP_F, _map),
    "channel_shuffle": (MAP_F, _map),
    "transpose": (SHAPE_F, _shape),
    "slice": (SHAPE_F, _shape),
    "concat": (SHAPE_F, _shape),
    "split": (SHAPE_F, _shape),
}
"""family -> (feature names, extractor)."""


def features(cfg: KernelConfig, family: str | None = None) -> list[float]:
    """The feature vector of ``cfg`` for ``family`` (default: its own family)."""
    fam = family or cfg.family
    if fam not in FEATURES:
        raise ValueError(f"no features for kernel family {fam!r} (type {cfg.type!r})")
    return FEATURES[fam][1](cfg)
