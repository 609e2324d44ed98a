"""One small ONNX model per `KernelConfig`: the kernel alone, random weights, batch 1.

`kernel_model` builds the kernel's first op from its family's parameters, then its fused
epilogue tokens in order (``bn``, activations, ``add`` of a second graph input, ``bias``,
``scale``), so that `detect_kernels` finds exactly that one kernel (under the rules the
type came from). Operands that come from other kernels in a network (the residual of
``conv+add``, the keys and values of ``attention``, the second operand of ``add``/
``mul``/``matmul``) are graph inputs. ``RUNTIME_OVERHEAD`` is an Identity on one element:
no kernel at all, the runtime's fixed cost per run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import onnx

from predictor.configs import RUNTIME_OVERHEAD, KernelConfig
from predictor.netbuild import ACTS, NetBuilder

Builder = Callable[[NetBuilder, KernelConfig], str]

LAYOUT_OPS = frozenset({"ReorderInput", "ReorderOutput", "Reorder"})
"""Layout conversions a runtime adds at a model's boundary (onnxruntime's NCHWc
``ReorderInput``/``ReorderOutput``, OpenVINO's ``Reorder``). Inside a network the blocked
layout flows from kernel to kernel; a kernel measured alone pays a conversion in and out,
which can cost as much as the kernel itself, so `kernel_latency` takes it out."""


def kernel_latency(median_ms: float, layers: Sequence[tuple[str | None, float]]) -> float:
    """A kernel model's latency without its boundary layout conversions: the measured
    median times the share of the per-layer profile ``(layer type, ms)`` that is not
    `LAYOUT_OPS` (the median itself when there is no profile)."""
    total = sum(ms for _, ms in layers)
    if total <= 0:
        return median_ms
    layout = sum(ms for t, ms in layers if t in LAYOUT_OPS)
    return median_ms * (1.0 - layout / total)


def _i(cfg: KernelConfig, name: str) -> int:
    return int(cfg.params[name])


def _dims(cfg: KernelConfig, name: str) -> list[int]:
    return [int(d) for d in str(cfg.params[name]).split("x")]


def _map(b: NetBuilder, cfg: KernelConfig) -> str:
    hw = _i(cfg, "hw")
    return b.input([1, _i(cfg, "cin"), hw, hw])


def _tok(b: NetBuilder, cfg: KernelConfig) -> str:
    return b.input([1, _i(cfg, "tokens"), _i(cfg, "dim")])


def _conv(b: NetBuilder, cfg: KernelConfig) -> str:
    x = _map(b, cfg)
    groups = _i(cfg, "cin") if cfg.family == "dwconv" else _i(cfg, "groups")
    k = 1 if cfg.family == "pwconv" else _i(cfg, "kernel")
    return b.conv(x, _i(cfg, "cout"), k, _i(cfg, "stride"), groups, bias="bn" not in cfg.tokens)


def _fc(b: NetBuilder, cfg: KernelConfig) -> str:
    tokens, cin, cout = _i(cfg, "tokens"), _i(cfg, "cin"), _i(cfg, "cout")
    x = b.input([1, tokens, cin] if tokens > 1 else [1, cin])
    if "bias" in cfg.tokens or tokens > 1:
        w = b.const(b.rng.standard_normal((cin, cout)) * cin**-0.5)
        return b.node("MatMul", [x, w], [*b.shapes[x][:-1], cout])
    return b.fc(x, cout, bias=True)  # 2-D Linear: one Gemm with its bias


def _matmul(b: NetBuilder, cfg: KernelConfig) -> str:
    bs, m, k, n = (_i(cfg, v) for v in ("batch", "m", "k", "n"))
    return b.matmul(b.input([bs, m, k]), b.input([bs, k, n]))


def _attention(b: NetBuilder, cfg: KernelConfig) -> str:
    h, s, skv, d = (_i(cfg, v) for v in ("heads", "seq", "seq_kv", "dim"))
    q, kt, v = b.input([1, h, s, d]), b.input([1, h, d, skv]), b.input([1, h, skv, d])
    return b.attention(q, kt, v)


def _elementwise(b: NetBuilder, cfg: KernelConfig) -> str:
    x = _tok(b, cfg)
    return _token(b, cfg.tokens[0], x)


def _token(b: NetBuilder, token: str, x: str) -> str:
    if token in ACTS:
        return b.act(x, token)
    if token in ("add", "mul"):
        y = b.input(b.shapes[x])
        return b.add(x, y) if token == "add" else b.mul(x, y)
    if token == "bias":
        return b.node("Add", [x, b.const(np.zeros(b.shapes[x][-1]))], b.shapes[x])
    if token == "scale":
        return b.scale(x)
    if token == "bn":
        return b.bn(x)
    if token == "clip":
        lo, hi = b.const(np.array(-1.0)), b.const(np.array(1.0))
        return b.node("Clip", [x, lo, hi], b.shapes[x])
    if token == "erf":
        return b.node("Erf", [x], b.shapes[x])
    raise ValueError(f"no kernel model for op token {token!r}")


def _transpose(b: NetBuilder, cfg: KernelConfig) -> str:
    perm = [int(p) for p in str(cfg.params["perm"]).split(",")]
    return b.transpose(b.input(_dims(cfg, "shape")), perm)


def _slice(b: NetBuilder, cfg: KernelConfig) -> str:
    axis = _i(cfg, "axis")
    return b.slice(b.input(_dims(cfg, "shape")), axis, 0, _dims(cfg, "out")[axis])


def _concat(b: NetBuilder, cfg: KernelConfig) -> str:
    out, axis, parts = _dims(cfg, "shape"), _i(cfg, "axis"), _i(cfg, "parts")
    sizes = _sizes(out[axis], parts)
    return b.concat([b.input([*out[:axis], s, *out[axis + 1 :]]) for s in sizes], axis)


def _sizes(total: int, parts: int) -> list[int]:
    parts = max(1, min(parts, total))
    base = total // parts
    return [base] * (parts - 1) + [total - base * (parts - 1)]


def _split(b: NetBuilder, cfg: KernelConfig) -> str:
    shape, axis, parts = _dims(cfg, "shape"), _i(cfg, "axis"), _i(cfg, "parts")
    x = b.input(shape)
    sizes = _sizes(shape[axis], parts)
    outs = [b.name("split") for _ in sizes]
    split = b.const(np.array(sizes), np.int64)
    b.nodes.append(
        onnx.helper.make_node("Split", [x, split], outs, name=b.name("Split"), axis=axis)
    )
    for o, s in zip(outs, sizes, strict=True):
        b.shapes[o] = [*shape[:axis], s, *shape[axis + 1 :]]
    b.extra_outputs += outs[1:]
    return outs[0]


def _pool(b: NetBuilder, cfg: KernelConfig) -> str:
    return b.pool(_map(b, cfg), cfg.tokens[0], _i(cfg, "kernel"), _i(cfg, "stride"))


BUILDERS: dict[str, Builder] = {
    "conv": _conv,
    "pwconv": _conv,
    "dwconv": _conv,
    "fc": _fc,
    "matmul": _matmul,
    "attention": _attention,
    "layernorm": lambda b, c: b.layernorm(_tok(b, c)),
    "softmax": lambda b, c: b.softmax(_tok(b, c)),
    "elementwise": _elementwise,
    "bn": lambda b, c: b.bn(_map(b, c)),
    "pool": _pool,
    "gap": lambda b, c: b.pool(_map(b, c), "gap"),
    "se": lambda b, c: b.se(_map(b, c), _i(c, "mid"), "relu", str(c.params["gate"])),
    "channel_shuffle": lambda b, c: b.shuffle(_map(b, c), _i(c, "groups")),
    "transpose": _transpose,
    "slice": _slice,
    "concat": _concat,
    "split": _split,
}


def kernel_model(cfg: KernelConfig, seed: int = 0) -> onnx.ModelProto:
    """A model whose only kernel is ``cfg`` (see the module docstring)."""
    b = NetBuilder(seed)
    if cfg.type == RUNTIME_OVERHEAD:
        x = b.input([1, 1])
        return b.model([b.node("Identity", [x], [1, 1])], RUNTIME_OVERHEAD)
    build = BUILDERS.get(cfg.family)
    if build is None:
        raise ValueError(
            f"no kernel model for kernel type {cfg.type!r} (family {cfg.family!r}); "
            f"families with models: {', '.join(sorted(BUILDERS))}"
        )
    y = build(b, cfg)
    for token in cfg.tokens[1:]:
        y = _token(b, token, y)
    outs = [y, *b.extra_outputs]
    return b.model(outs, "kernel-" + cfg.type)
