"""Once-for-All elastic MobileNet spaces (shared machinery) and the OFA ProxylessNAS space.

Reference: mit-han-lab/once-for-all, ``ofa/imagenet_classification/elastic_nn/networks/
ofa_proxyless.py`` (``OFAProxylessNASNets``) and ``elastic_nn/modules/dynamic_layers.py``
(``DynamicMBConvLayer.get_active_subnet_config``: ``mid = make_divisible(round(C_in * e), 8)``).

Architecture encoding (exactly what ``sample_active_subnet()`` returns)::

    {"ks": [k, ...], "e": [e, ...], "d": [d, ...]}

``ks`` and ``e`` have one entry per elastic block (``len(blocks) - 1`` in OFA: 21 for
ProxylessNAS, whose last stage is a single fixed 320-channel block; 20 for MobileNetV3), in
block order: stage ``s`` block ``i`` is index ``4 * s + i``. Entries of blocks beyond a
stage's depth are ignored, as in OFA. ``d`` has one depth per stage (6 for ProxylessNAS,
whose last entry is always 1 in samples and clamped to 1 by OFA; 5 for MobileNetV3). As with
OFA's ``set_active_subnet``, a scalar broadcasts (``{"ks": 7, "e": 6, "d": 4}`` is the max
net). An optional ``"image_size"`` (or ``"r": [size]``) entry gives the resolution.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .base import Arch, Block, LutPlan, SearchSpace, conv_out, make_divisible

OFA_RESOLUTIONS: tuple[int, ...] = tuple(range(128, 225, 4))
"""OFA's continuous image sizes: multiples of 4 from 128 to 224 (``MyRandomResizedCrop``)."""


@dataclass(frozen=True)
class Stage:
    """One OFA stage: up to ``n_blocks`` MBConv blocks, the first one strided."""

    width: int
    n_blocks: int
    stride: int
    act: str
    se: bool = False
    elastic: bool = True
    """False: the depth is fixed at ``n_blocks`` (OFA clamps ``d`` to it)."""


class OFAElasticSpace(SearchSpace):
    """Elastic kernel / expand / depth over fixed stages, OFA style (subclassed per net)."""

    table: str = ""
    ks_list: tuple[int, ...] = (3, 5, 7)
    e_list: tuple[int, ...] = (3, 4, 6)
    d_list: tuple[int, ...] = (2, 3, 4)
    stages: tuple[Stage, ...] = ()
    n_classes: int = 1000

    def __init__(self) -> None:
        self.resolutions = OFA_RESOLUTIONS
        self.default_resolution = 224
        self.num_blocks = sum(s.n_blocks for s in self.stages)
        self.slot_stage = [si for si, s in enumerate(self.stages) for _ in range(s.n_blocks)]
        self.choices = {
            "ks": list(self.ks_list),
            "e": list(self.e_list),
            "d": list(self.d_list),
            "num_blocks": self.num_blocks,
            "num_stages": len(self.stages),
        }
        self._plans: dict[int, LutPlan] = {}

    # ----------------------------------------------------------------- per-net hooks
    def _pre(self, resolution: int) -> list[Block]:
        """Stem and first block; the last one's output feeds the first stage."""
        raise NotImplementedError

    def _post(self, size: int, channels: int) -> list[Block]:
        """Layers after the last stage."""
        raise NotImplementedError

    # ----------------------------------------------------------------- encoding
    def _allowed_depths(self, stage: Stage) -> tuple[int, ...]:
        return self.d_list if stage.elastic else (1, *self.d_list)

    def normalize(self, arch: Arch) -> Arch:
        """Broadcast scalar ``ks`` / ``e`` / ``d`` as OFA's ``val2list`` does."""
        if not isinstance(arch, Mapping):
            return arch
        out = dict(arch)
        for name, n in (("ks", self.num_blocks), ("e", self.num_blocks), ("d", len(self.stages))):
            v = out.get(name)
            if isinstance(v, int) and not isinstance(v, bool):
                out[name] = [v] * n
        return out

    def validate(self, arch: Arch) -> None:
        """ValueError naming the first problem of ``arch``."""
        if not isinstance(arch, Mapping):
            raise ValueError(f"{self.name}: arch must be a dict with ks, e, d; got {arch!r}")
        missing = [k for k in ("ks", "e", "d") if k not in arch]
        if missing:
            raise ValueError(f"{self.name}: arch is missing {', '.join(missing)}")
        lists = (
            ("ks", self.num_blocks, [self.ks_list] * self.num_blocks),
            ("e", self.num_blocks, [self.e_list] * self.num_blocks),
            ("d", len(self.stages), [self._allowed_depths(s) for s in self.stages]),
        )
        for name, n, allowed in lists:
            v = arch[name]
            if not isinstance(v, list | tuple):
                raise ValueError(f"{self.name}: {name} must be a list, got {v!r}")
            if len(v) != n:
                raise ValueError(
                    f"{self.name}: {name} must have {n} entries, got {len(v)} ({self._layout()})"
                )
            for i, (x, ok) in enumerate(zip(v, allowed, strict=True)):
                if isinstance(x, bool) or x not in ok:
                    raise ValueError(f"{self.name}: {name}[{i}]={x!r} not in {list(ok)}")
        self.arch_resolution(arch)

    def _layout(self) -> str:
        sizes = "+".join(str(s.n_blocks) for s in self.stages)
        return (
            f"ks and e: one per elastic block, {sizes} = {self.num_blocks}; "
            f"d: one per stage, {len(self.stages)}"
        )

    def sample(self, rng: random.Random | None = None) -> dict[str, list[int]]:
        """Same draws, in the same order, as OFA's ``sample_active_subnet()``."""
        r: Any = rng if rng is not None else random
        ks = [r.choice(self.ks_list) for _ in range(self.num_blocks)]
        e = [r.choice(self.e_list) for _ in range(self.num_blocks)]
        d = [r.choice(self.d_list) for _ in self.stages]
        for i, stage in enumerate(self.stages):
            if not stage.elastic:
                d[i] = stage.n_blocks
        return {"ks": ks, "e": e, "d": d}

    def _decode(self, arch: Arch) -> tuple[Hashable, Sequence[Hashable]]:
        ks, e = arch["ks"], arch["e"]
        if len(ks) != self.num_blocks or len(e) != self.num_blocks:
            raise ValueError("bad ks/e length")
        return tuple(arch["d"]), list(zip(ks, e, strict=False))

    # ----------------------------------------------------------------- blocks
    def _mbconv(self, size: int, cin: int, st: Stage, first: bool, k: int, e: int) -> Block:
        stride = st.stride if first else 1
        mid = make_divisible(round(cin * e), 8)
        out = conv_out(size, stride)
        return Block(
            kind="mbconv",
            in_shape=(size, size, cin),
            out_shape=(out, out, st.width),
            kernel=k,
            stride=stride,
            expand=e,
            mid=mid,
            act=st.act,
            se=st.se,
            se_mid=make_divisible(mid // 4, 8) if st.se else 0,
            skip=stride == 1 and cin == st.width,
            expand_conv=e != 1,
            table=self.table,
        )

    def lut_plan(self, resolution: int | None = None) -> LutPlan:
        """Slots are the ``num_blocks`` elastic blocks; choices are ``(ks, e)`` pairs."""
        res = self.check_resolution(resolution)
        if res in self._plans:
            return self._plans[res]
        pre = self._pre(res)
        size, cin = pre[-1].out_shape[0], pre[-1].out_shape[2]
        slots: list[dict[Hashable, Block]] = []
        for st in self.stages:
            for i in range(st.n_blocks):
                slot: dict[Hashable, Block] = {
                    (k, e): self._mbconv(size, cin, st, i == 0, k, e)
                    for k in self.ks_list
                    for e in self.e_list
                }
                slots.append(slot)
                any_block = next(iter(slot.values()))
                size, cin = any_block.out_shape[0], any_block.out_shape[2]
        active: dict[Hashable, tuple[int, ...]] = {}
        for depths in itertools.product(*(self._allowed_depths(s) for s in self.stages)):
            idx: list[int] = []
            start = 0
            for st, d in zip(self.stages, depths, strict=True):
                idx += range(start, start + min(d, st.n_blocks))
                start += st.n_blocks
            active[depths] = tuple(idx)
        plan = LutPlan(tuple(pre), tuple(slots), tuple(self._post(size, cin)), active, self._decode)
        self._plans[res] = plan
        return plan


class OFAProxylessSpace(OFAElasticSpace):
    """``OFAProxylessNASNets`` (ProxylessNAS stage widths), ks {3,5,7}, e {3,4,6}, d {2,3,4}."""

    name = "ofa-proxyless"
    table = "ofa-proxyless"
    arch_format = (
        'OFA sample_active_subnet(): {"ks": [21 ints], "e": [21 ints], "d": [6 ints, last 1]}'
    )

    def __init__(self, width_mult: float = 1.0) -> None:
        base = [32, 16, 24, 40, 80, 96, 192, 320, 1280]
        w = [make_divisible(b * width_mult, 8) for b in base]
        self.stem_width, self.first_width, self.last_channel = w[0], w[1], w[-1]
        self.stages = tuple(
            Stage(width, n, s, "relu6", elastic=n > 1)
            for width, n, s in zip(w[2:-1], [4] * 5 + [1], [2, 2, 2, 1, 2, 1], strict=True)
        )
        self.description = (
            f"Once-for-All ProxylessNAS space (OFAProxylessNASNets, width {width_mult}): "
            "ks {3,5,7}, expand {3,4,6}, depth {2,3,4} per stage, resolutions 128-224 step 4."
        )
        super().__init__()

    def _pre(self, resolution: int) -> list[Block]:
        f = conv_out(resolution, 2)
        c0, c1 = self.stem_width, self.first_width
        stem = Block(
            "stem",
            (resolution, resolution, 3),
            (f, f, c0),
            kernel=3,
            stride=2,
            act="relu6",
            table=self.table,
        )
        first = Block(
            "first_mbconv",
            (f, f, c0),
            (f, f, c1),
            kernel=3,
            stride=1,
            expand=1,
            mid=c0,
            act="relu6",
            skip=False,
            expand_conv=False,
            table=self.table,
        )
        return [stem, first]

    def _post(self, size: int, channels: int) -> list[Block]:
        mix = Block(
            "feature_mix",
            (size, size, channels),
            (size, size, self.last_channel),
            act="relu6",
            table=self.table,
        )
        head = Block(
            "head",
            (size, size, self.last_channel),
            (1, 1, self.n_classes),
            bn=False,
            bias=True,
            table=self.table,
        )
        return [mix, head]
