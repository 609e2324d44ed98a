"""Kernel configurations: what one predictor sample is, and how a detected kernel maps to one.

A `KernelConfig` is a kernel ``type`` as `predictor.detect.detect_kernels` writes it
(``dwconv+bn+relu6``, ``fc+bias``, ``attention``, ``transpose``...) plus the parameters
that determine its cost. Types fall into *families* (`family`), one regressor each: the
type's first op kind (``conv``, ``pwconv``, ``dwconv``, ``fc``, ``attention``...), except
that elementwise ops (activations, add, mul, bias, scale, GELU, SiLU, h-swish) share the
``elementwise`` family, max/avg pooling the ``pool`` family. The fused epilogue
(``+bn+relu6``) is a feature of the family's regressor.

``RUNTIME_OVERHEAD`` is the special type of the runtime's fixed cost per run (an Identity
model on one element): every standalone kernel measurement pays it once, a whole network
pays it once too, so training subtracts it from each kernel and prediction adds it once.
"""

from __future__ import annotations

import json
import math

from pydantic import BaseModel, ConfigDict

from predictor.detect import Kernel

RUNTIME_OVERHEAD = "runtime_overhead"

CONV = ("conv", "pwconv", "dwconv")
ELEMENTWISE = (
    "relu", "relu6", "sigmoid", "hsigmoid", "tanh", "leakyrelu", "clip", "hswish", "silu",
    "gelu", "add", "mul", "bias", "scale", "erf",
)  # fmt: skip
POOL = ("maxpool", "avgpool")
FAMILIES = (
    *CONV, "fc", "matmul", "attention", "layernorm", "softmax", "elementwise", "bn", "pool",
    "gap", "se", "channel_shuffle", "transpose", "slice", "concat", "split",
)  # fmt: skip
"""Families with a kernel model and a regressor (``RUNTIME_OVERHEAD`` aside)."""

Params = dict[str, int | float | str]


class KernelConfig(BaseModel):
    """One kernel to measure: its detected ``type`` and the parameters of its cost."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    params: Params

    def key(self) -> str:
        """Stable, unique text of this config (reuse of samples measured before)."""
        return json.dumps({"type": self.type, "params": self.params}, sort_keys=True)

    @property
    def tokens(self) -> list[str]:
        return self.type.split("+")

    @property
    def family(self) -> str:
        return family(self.type)


def family(kernel_type: str) -> str:
    """The regressor family of a kernel type (see the module docstring)."""
    if kernel_type == RUNTIME_OVERHEAD:
        return kernel_type
    base = kernel_type.split("+")[0]
    if base in ELEMENTWISE:
        return "elementwise"
    if base in POOL:
        return "pool"
    return base


def _int(v: object, default: int = 0) -> int:
    return int(v) if isinstance(v, int | float) and not isinstance(v, bool) else default


def _shape(v: object) -> list[int]:
    return [int(d) for d in v] if isinstance(v, list) else []


def shape_str(shape: list[int]) -> str:
    return "x".join(str(d) for d in shape)


def from_kernel(k: Kernel) -> KernelConfig:
    """The `KernelConfig` of a detected kernel (the parameters its family's model needs)."""
    c = k.config
    fam = family(k.type)
    xs = _shape(c.get("input_shape"))
    ys = _shape(c.get("output_shape"))
    p: Params
    if fam in CONV:
        p = {n: _int(c.get(n), 1) for n in ("hw", "cin", "cout", "kernel", "stride", "groups")}
    elif fam == "fc":
        p = {
            "tokens": _int(c.get("tokens"), 1),
            "cin": _int(c.get("cin")),
            "cout": _int(c.get("cout")),
        }
    elif fam == "matmul":
        p = {n: _int(c.get(n), 1) for n in ("batch", "m", "k", "n")}
    elif fam == "attention":
        p = {n: _int(c.get(n), 1) for n in ("heads", "seq", "seq_kv", "dim")}
    elif fam in ("pool", "gap"):
        p = {n: _int(c.get(n), 1) for n in ("hw", "cin", "kernel", "stride")}
        if fam == "gap":
            p = {"hw": p["hw"], "cin": p["cin"]}
    elif fam == "se":
        p = {"hw": _int(c.get("hw"), 1), "cin": _int(c.get("cin")), "mid": _int(c.get("mid"), 1)}
        p["gate"] = str(c.get("gate", "sigmoid"))
    elif fam == "channel_shuffle":
        p = {n: _int(c.get(n), 1) for n in ("groups", "cin", "hw")}
    elif fam == "bn":
        p = {"cin": xs[1] if len(xs) > 1 else 1, "hw": xs[2] if len(xs) > 2 else 1}
    elif fam == "transpose":
        p = {"shape": shape_str(xs), "perm": _perm_of(xs, ys)}
    elif fam in ("slice", "concat", "split"):
        p = {"shape": shape_str(ys if fam == "concat" else xs), "out": shape_str(ys)}
        p["axis"] = _int(c.get("axis"), _diff_axis(xs, ys))
        if fam != "slice":
            p["parts"] = _int(c.get("parts"), 2)
    else:  # elementwise, layernorm, softmax and any other type: a [tokens, dim] tensor
        dim = xs[-1] if xs else 1
        p = {"tokens": max(1, math.prod(xs[:-1])) if xs else 1, "dim": dim}
    return KernelConfig(type=k.type, params=p)


def _diff_axis(xs: list[int], ys: list[int]) -> int:
    for i, (a, b) in enumerate(zip(xs, ys, strict=False)):
        if a != b:
            return i
    return 0


def _perm_of(xs: list[int], ys: list[int]) -> str:
    """A permutation taking shape ``xs`` to ``ys`` (first match per axis)."""
    left = list(range(len(xs)))
    perm: list[int] = []
    for d in ys:
        j = next((i for i in left if xs[i] == d), left[0] if left else 0)
        perm.append(j)
        if j in left:
            left.remove(j)
    return ",".join(str(i) for i in perm)
