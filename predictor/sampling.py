"""Which kernel configurations to measure: dense around real models, plus uniform coverage.

`plan_initial` takes the kernels `detect_kernels` finds in the real architectures of
`predictor.archs` (224 px, width 1.0, BatchNorm folded in every other one) and one network
of each NAS space (the ``prior``, `real_configs`: shipped in ``data/real_configs.json``
for the default rules, computed for others), and draws
``per_type`` configurations per family: 75% are real configurations jittered (sizes
scaled by ``exp(N(0, 0.3))``, channel counts kept multiples of 8 where they were), 25%
are drawn uniformly over each family's ranges (families without a uniform sampler jitter
real ones more). Types are those the real models use (70%) or any fused pattern of the
rules (30%), so every drawn type is one `detect_kernels` produces under those rules.

`plan_refinement` draws a fresh candidate pool the same way and keeps the ``per_type``
candidates per family where the bundle's bootstrap ensemble disagrees most.
"""

from __future__ import annotations

import json
import math
import random
from collections import defaultdict
from pathlib import Path

from converters.blocks import network_model
from latencylab.spaces import get_space
from predictor.archs import ARCHS
from predictor.bundle import PredictorBundle
from predictor.configs import CONV, RUNTIME_OVERHEAD, KernelConfig, Params, family, from_kernel
from predictor.detect import detect_kernels
from predictor.fusion import FusionRules, default_rules
from predictor.kernel_models import BUILDERS

SPACES = ("ofa-proxyless", "ofa-mbv3", "fbnet")
UNIFORM_SHARE = 0.25
WEIGHT = {"conv": 3, "pwconv": 2, "dwconv": 2, "fc": 2}
"""Families drawn ``WEIGHT`` times ``per_type``: they carry most of a network's time and
the widest range of configurations (grouped, strided, 1x1 to 7x7; ``conv`` most: dense
and grouped convolutions run different code paths)."""
GROUPED_SHARE = 0.4
"""Share of the uniform ``conv`` draws that are grouped (group width 8, 16 or 32)."""
UNALIGNED_SHARE = {"dwconv": 0.25, "conv": 0.1, "pwconv": 0.1}
"""Share of a family's initial configs given input channels that are not a multiple of
`predictor.layout.ALIGN` (4): onnxruntime runs those convolutions in the plain layout, at
several times the cost (GhostNet's odd widths); the other draws keep multiples of 8."""


SHIPPED = Path(__file__).resolve().parent / "data" / "real_configs.json"
"""`compute_real_configs` under the default rules, shipped with the package (building and
detecting 13 networks at 224 px takes seconds; `write_real_configs` regenerates it, and
tests/test_predictor_core.py checks it is current)."""


def real_configs(rules: FusionRules | None = None) -> list[KernelConfig]:
    """Every kernel of the reference architectures and NAS-space networks (deduplicated):
    the shipped list when ``rules`` have the default patterns, else computed."""
    rules = rules or default_rules()
    if SHIPPED.exists():
        doc = json.loads(SHIPPED.read_text())
        if doc["patterns"] == [list(p) for p in rules.patterns]:
            return [KernelConfig.model_validate(c) for c in doc["configs"]]
    return compute_real_configs(rules)


def write_real_configs(path: Path = SHIPPED) -> None:
    """Regenerate the shipped `real_configs` of the default rules."""
    rules = default_rules()
    doc = {
        "patterns": [list(p) for p in rules.patterns],
        "configs": [c.model_dump() for c in compute_real_configs(rules)],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=0) + "\n")


def compute_real_configs(rules: FusionRules) -> list[KernelConfig]:
    """`real_configs` computed: build the networks, detect their kernels."""
    models = [
        build(224, 1.0, bn=bool(i % 2), seed=1, **kw)
        for i, (_, build, kw) in enumerate(ARCHS.values())
    ]
    rng = random.Random(12345)
    for name in SPACES:
        space = get_space(name)
        models.append(network_model(space, space.sample(rng), 224))
    out: dict[str, KernelConfig] = {}
    for m in models:
        for k in detect_kernels(m, rules).kernels:
            cfg = from_kernel(k)
            out.setdefault(cfg.key(), cfg)
    return list(out.values())


def _types(fam: str, real: list[KernelConfig], rules: FusionRules) -> list[str]:
    """Kernel types of ``fam`` under ``rules``: its fused patterns (and those real models use)."""
    seen = sorted({c.type for c in real if c.family == fam})
    heads = {"conv": ["conv"], "pwconv": ["conv"], "dwconv": ["dwconv"], "fc": ["fc"]}.get(fam)
    if heads:
        kind = fam
        for p in rules.patterns:
            if p[0] in heads:
                for n in range(1, len(p) + 1):
                    t = "+".join([kind, *p[1:n]])
                    if t not in seen:
                        seen.append(t)
    return seen


def _r8(v: float, was: int) -> int:
    if was % 8 == 0 and v >= 8:
        return max(8, round(v / 8) * 8)
    return max(1, round(v))


SIZES = ("hw", "cin", "cout", "tokens", "dim", "mid", "seq", "seq_kv", "m", "k", "n", "batch")


def _jitter(cfg: KernelConfig, rng: random.Random, sigma: float) -> KernelConfig | None:
    p = dict(cfg.params)
    fam = cfg.family
    if fam in CONV and fam != "dwconv" and int(p["groups"]) > 1:
        gw = int(p["cin"]) // int(p["groups"])
        c = _r8(int(p["cin"]) * math.exp(rng.gauss(0, sigma)), int(p["cin"]))
        c = max(2 * gw, c // gw * gw)
        p.update(cin=c, cout=c, groups=c // gw)
        p["hw"] = max(1, round(int(p["hw"]) * math.exp(rng.gauss(0, sigma))))
        return KernelConfig(type=cfg.type, params=p)
    if "shape" in p:
        return _jitter_shape(cfg, rng, sigma)
    factors: dict[int, float] = {}
    for name in SIZES:
        if name in p and isinstance(p[name], int):
            v = int(p[name])
            f = factors.setdefault(v, math.exp(rng.gauss(0, sigma)))
            p[name] = _r8(v * f, v) if v > 1 else v
    if fam == "dwconv":
        p["cout"] = p["groups"] = p["cin"]
    if fam == "attention" and cfg.params["seq"] == cfg.params["seq_kv"]:
        p["seq_kv"] = p["seq"]
    return KernelConfig(type=cfg.type, params=p)


def _jitter_shape(cfg: KernelConfig, rng: random.Random, sigma: float) -> KernelConfig | None:
    """Scale every dimension value above 4 by one factor per value (equal dims stay equal)."""
    p = dict(cfg.params)
    factors: dict[int, float] = {}

    def scale(dims: str) -> list[int]:
        out = []
        for d in (int(v) for v in dims.split("x")):
            f = factors.setdefault(d, math.exp(rng.gauss(0, sigma)))
            out.append(max(1, round(d * f)) if d > 4 else d)
        return out

    shape = scale(str(p["shape"]))
    p["shape"] = "x".join(map(str, shape))
    if "out" in p:
        out = scale(str(p["out"]))
        axis = int(p.get("axis", 0))
        if cfg.family == "slice" and (len(out) != len(shape) or out[axis] > shape[axis]):
            return None
        p["out"] = "x".join(map(str, out))
    return KernelConfig(type=cfg.type, params=p)


MAX_ELEMS = 1_600_000
"""Largest activation tensor drawn uniformly (MobileNetV2's 112x112x96 at 224 px is 1.2M)."""


def _uniform(fam: str, t: str, rng: random.Random) -> KernelConfig | None:
    """A uniform draw over the family's ranges, activations at most `MAX_ELEMS` elements
    (wide channels go with small maps, as in real networks)."""

    def c8(lo: int, hi: int) -> int:
        return 8 * rng.randint(max(1, lo // 8), max(1, lo // 8, hi // 8))

    hw = rng.choice([7, 14, 14, 28, 28, 56, 56, 112, 7, 10, 20, 40, 80])
    wide = max(8, min(1024, MAX_ELEMS // (hw * hw)))
    if fam in CONV:
        cin = 3 if fam == "conv" and rng.random() < 0.05 else c8(8, min(512, wide))
        k = 1 if fam == "pwconv" else rng.choice([3, 3, 5, 7])
        s = rng.choice([1, 1, 2])
        if fam == "dwconv":
            p = {"hw": hw, "cin": cin, "cout": cin, "kernel": k, "stride": s, "groups": cin}
        else:
            grouped = fam == "conv" and rng.random() < GROUPED_SHARE
            gw = rng.choice([8, 16, 32]) if grouped else cin
            groups = max(1, cin // gw)
            cin = max(gw, cin // gw * gw)
            cout = c8(8, min(512, wide * s * s)) if groups == 1 else cin
            p = {"hw": hw, "cin": cin, "cout": cout, "kernel": k, "stride": s, "groups": groups}
        return KernelConfig(type=t, params=p)
    if fam == "fc":
        tokens = rng.choice([1, 1, 16, 49, 65, 145, 197, 257])
        cap = max(16, min(1536, 400_000 // tokens))
        return KernelConfig(
            type=t, params={"tokens": tokens, "cin": c8(16, cap), "cout": c8(16, cap)}
        )
    if fam in ("elementwise", "layernorm", "softmax"):
        tokens = rng.choice([hw * hw, 197, 65, 1, hw, hw * 32])
        return KernelConfig(
            type=t, params={"tokens": tokens, "dim": c8(8, max(8, min(1024, MAX_ELEMS // tokens)))}
        )
    if fam == "attention":
        s = rng.choice([17, 50, 65, 101, 145, 197, 257])
        d = rng.choice([32, 48, 64])
        return KernelConfig(
            type=t,
            params={"heads": rng.choice([1, 2, 3, 4, 6, 8]), "seq": s, "seq_kv": s, "dim": d},
        )
    if fam in ("bn", "gap", "se", "pool", "channel_shuffle"):
        cin = c8(8, wide)
        q: Params = {"hw": hw, "cin": cin}
        if fam == "pool":
            q.update(kernel=rng.choice([2, 3, 3]), stride=rng.choice([1, 2, 2]))
        if fam == "se":
            q.update(
                mid=max(8, cin // rng.choice([4, 8, 16])), gate=rng.choice(["sigmoid", "hsigmoid"])
            )
        if fam == "channel_shuffle":
            g = rng.choice([2, 4, 8])
            q.update(cin=max(g, cin // g * g), groups=g)
        return KernelConfig(type=t, params=q)
    return None


def _family_plan(
    fam: str, n: int, real: list[KernelConfig], rules: FusionRules, rng: random.Random
) -> list[KernelConfig]:
    own = [c for c in real if c.family == fam]
    types = _types(fam, real, rules) or [fam]
    used = [c.type for c in own] or types

    def pick() -> str:
        return rng.choice(used) if rng.random() < 0.7 else rng.choice(types)

    out: dict[str, KernelConfig] = {}
    tries = 0
    while len(out) < n and tries < 50 * n:
        tries += 1
        cfg: KernelConfig | None = None
        if rng.random() < UNIFORM_SHARE:
            cfg = _uniform(fam, pick(), rng)
        if cfg is None and own:
            base = rng.choice(own)
            t = pick() if fam in CONV or fam == "fc" else base.type
            sigma = 0.3 if tries < 20 * n else 0.6
            cfg = _jitter(KernelConfig(type=t, params=base.params), rng, sigma)
        if cfg is not None:
            out.setdefault(cfg.key(), cfg)
    return list(out.values())


def families_of(real: list[KernelConfig]) -> list[str]:
    return sorted({c.family for c in real if c.family in BUILDERS})


def plan_initial(
    per_type: int,
    seed: int,
    rules: FusionRules | None = None,
    prior: list[KernelConfig] | None = None,
) -> list[KernelConfig]:
    """``per_type`` configurations per kernel family (`WEIGHT` times that for the conv and
    FC families; see the module docstring), the runtime-overhead probe first. Same arguments, same list. ``prior``: `real_configs`
    computed before (it takes seconds), else computed here."""
    rules = rules or default_rules()
    real = prior if prior is not None else real_configs(rules)
    plan = [KernelConfig(type=RUNTIME_OVERHEAD, params={})]
    for fam in families_of(real):
        n = per_type * WEIGHT.get(fam, 1)
        cfgs = _family_plan(fam, n, real, rules, random.Random(f"{seed}:{fam}"))
        plan += _unaligned(cfgs, UNALIGNED_SHARE.get(fam, 0.0), random.Random(f"{seed}:{fam}:u"))
    return plan


def _unaligned(cfgs: list[KernelConfig], share: float, rng: random.Random) -> list[KernelConfig]:
    """``cfgs`` with the last ``share`` of them (dense or depthwise convolutions reading 16
    channels or more) moved to a channel count that is not a multiple of 4."""
    out = list(cfgs)
    keys = {c.key() for c in cfgs}
    todo = round(share * len(cfgs))
    for i in range(len(out) - 1, -1, -1):
        if todo <= 0:
            break
        p = dict(out[i].params)
        dense = out[i].family != "dwconv" and int(p.get("groups", 1)) == 1
        if not (dense or out[i].family == "dwconv") or int(p["cin"]) < 16:
            continue
        p["cin"] = int(p["cin"]) + rng.choice([-2, -1, 1, 2, 3])
        if p["cin"] % 4 == 0:
            p["cin"] = int(p["cin"]) + 2
        if out[i].family == "dwconv":
            p["cout"] = p["groups"] = p["cin"]
        cfg = KernelConfig(type=out[i].type, params=p)
        if cfg.key() not in keys:
            keys.add(cfg.key())
            out[i] = cfg
            todo -= 1
    return out


def plan_refinement(
    bundle: PredictorBundle, per_type: int, seed: int, prior: list[KernelConfig] | None = None
) -> list[KernelConfig]:
    """``per_type`` new configurations per family where ``bundle`` is least sure: the
    highest spread of its bootstrap ensemble over a candidate pool ten times larger."""
    real = prior if prior is not None else real_configs(bundle.rules)
    known = set(bundle.sample_keys)
    by_family: dict[str, list[KernelConfig]] = defaultdict(list)
    for fam in families_of(real):
        pool = _family_plan(fam, 10 * per_type, real, bundle.rules, random.Random(f"r{seed}:{fam}"))
        by_family[fam] = [c for c in pool if c.key() not in known and family(c.type) == fam]
    plan: list[KernelConfig] = []
    for _fam, pool in sorted(by_family.items()):
        if not pool:
            continue
        spread = bundle.uncertainty(pool)
        ranked = sorted(zip(spread, range(len(pool)), strict=True), reverse=True)
        plan += [pool[i] for _, i in ranked[:per_type]]
    return plan
