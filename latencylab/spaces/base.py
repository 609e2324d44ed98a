"""Core types of the search spaces: :class:`Block`, :class:`SearchSpace`, :class:`LutPlan`.

Pure Python, standard library only (this module ships in the light SDK).

Shapes are ``(H, W, C)`` tuples. A :class:`Block` carries everything needed to build it
as a standalone model later. ``groups`` is always the group count of the block's ordinary
(non-depthwise) convs; depthwise convs (``groups == channels``) are implied by the kind.
Padding is always "same" (``kernel // 2``). The meaning of each ``kind``:

``stem``          conv ``kernel``x``kernel`` / ``stride``, BN if ``bn``, ``act``.
``first_mbconv``, ``mbconv``
                  OFA ``MBConvLayer``: [1x1 conv ``C_in -> mid`` + BN + ``act``] only if
                  ``expand_conv``; depthwise ``kernel`` / ``stride`` conv on ``mid`` + BN + ``act``;
                  SE (``mid -> se_mid -> mid``, ReLU then h-sigmoid) if ``se``; 1x1 conv
                  ``mid -> C_out`` + BN; identity residual if ``skip``.
``fbnet_block``   HW-NAS-Bench ``ConvBlock``: 1x1 conv ``C_in -> mid`` (``groups``) + BN + ReLU;
                  channel shuffle if ``shuffle``; depthwise ``kernel`` / ``stride`` + BN + ReLU;
                  1x1 conv ``mid -> C_out`` (``groups``) + BN; identity residual if ``skip``.
``skip``          HW-NAS-Bench ``Skip``: identity (a no-op, :attr:`Block.is_noop`) when
                  ``stride == 1`` and ``C_in == C_out``, else 1x1 conv / ``stride`` + BN + ReLU.
``final_expand``, ``feature_mix``
                  1x1 conv, BN if ``bn``, bias if ``bias``, ``act``.
``pool``          global average pooling to ``1x1``.
``head``          global average pooling (a no-op when the input is already ``1x1``), then
                  ``Linear(C_in, C_out)`` with bias (the classifier; dropout is training-only).
"""

from __future__ import annotations

import itertools
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

Shape = tuple[int, int, int]
Arch = Any
"""An architecture in the space's own encoding (see each space's docstring)."""


def make_divisible(v: float, divisor: int = 8, min_val: int | None = None) -> int:
    """Round a channel count as Once-for-All / TF MobileNet do (``ofa.utils.make_divisible``)."""
    if min_val is None:
        min_val = divisor
    new_v = max(min_val, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:  # never round down by more than 10%
        new_v += divisor
    return new_v


def conv_out(size: int, stride: int) -> int:
    """Spatial size after a 'same'-padded odd-kernel conv: ``(size - 1) // stride + 1``."""
    return (size - 1) // stride + 1


def shape_str(shape: Sequence[int]) -> str:
    """``(7, 7, 320)`` -> ``'7x7x320'`` (OFA's ``repr_shape``)."""
    return "x".join(str(int(s)) for s in shape)


@dataclass(frozen=True, slots=True)
class Block:
    """One latency-table entry: a layer or block, with everything needed to generate it."""

    kind: str
    in_shape: Shape
    out_shape: Shape
    kernel: int = 1
    stride: int = 1
    expand: int = 1
    mid: int = 0
    groups: int = 1
    act: str = "none"
    se: bool = False
    se_mid: int = 0
    skip: bool = False
    expand_conv: bool = False
    shuffle: bool = False
    bn: bool = True
    bias: bool = False
    table: str | None = field(default=None, compare=False)
    """Reference table family: ``ofa-proxyless``, ``ofa-mbv3``, ``hwnas-fbnet`` or None."""

    @property
    def key(self) -> str:
        """Stable, unique string of every attribute that changes the generated block."""
        parts = [
            self.kind,
            f"in:{shape_str(self.in_shape)}",
            f"out:{shape_str(self.out_shape)}",
            f"k{self.kernel}",
            f"s{self.stride}",
            f"e{self.expand}",
            f"mid{self.mid}",
            f"g{self.groups}",
            f"act:{self.act}",
            f"se{self.se_mid if self.se else 0}",
            f"skip{int(self.skip)}",
            f"exp{int(self.expand_conv)}",
            f"shuf{int(self.shuffle)}",
            f"bn{int(self.bn)}",
            f"bias{int(self.bias)}",
        ]
        return "-".join(parts)

    @property
    def is_noop(self) -> bool:
        """True for an identity layer (FBNet ``skip`` with stride 1 and equal channels)."""
        return self.kind == "skip" and self.stride == 1 and self.in_shape[2] == self.out_shape[2]

    @property
    def ofa_key(self) -> str | None:
        """The key Once-for-All's ``LatencyTable.query`` builds for this block, else None."""
        style = self.table
        if style not in ("ofa-proxyless", "ofa-mbv3"):
            return None
        inp, out = f"input:{shape_str(self.in_shape)}", f"output:{shape_str(self.out_shape)}"
        kind = self.kind
        if kind in ("mbconv", "first_mbconv"):
            infos = ["expanded_conv", inp, out]
            if style == "ofa-proxyless":
                infos.append(f"expand:{self.expand}")
            else:
                infos.append(f"expand:{self.mid}")
            infos += [f"kernel:{self.kernel}", f"stride:{self.stride}", f"idskip:{int(self.skip)}"]
            if style == "ofa-mbv3":
                infos += [f"se:{int(self.se)}", f"hs:{int(self.act == 'h_swish')}"]
            return "-".join(infos)
        if kind == "head":
            return f"Logits-{inp}-output:{self.out_shape[2]}"
        names = {
            "ofa-proxyless": {"stem": "Conv", "feature_mix": "Conv_1"},
            "ofa-mbv3": {
                "stem": "Conv",
                "final_expand": "Conv_1",
                "pool": "AvgPool2D",
                "feature_mix": "Conv_2",
            },
        }[style]
        name = names.get(kind)
        return None if name is None else f"{name}-{inp}-{out}"

    @property
    def hwnas_key(self) -> str | None:
        """The key HW-NAS-Bench's ``fbnet_get_metrics`` builds for this block, else None."""
        if self.table != "hwnas-fbnet":
            return None
        h, w, cin = self.in_shape
        cout = self.out_shape[2]
        hw = f"H{h}_W{w}_Cin{cin}_Cout{cout}"
        if self.kind in ("stem", "feature_mix"):
            return f"ConvNorm_{hw}_kernel{self.kernel}_stride{self.stride}_group{self.groups}"
        if self.kind == "fbnet_block":
            return (
                f"ConvBlock_{hw}_exp{self.expand}_kernel{self.kernel}"
                f"_stride{self.stride}_group{self.groups}"
            )
        if self.kind == "skip":
            return f"Skip_{hw}_stride{self.stride}"
        if self.kind == "pool":
            return f"AvgP_{hw}_kernel{h}_stride1"
        if self.kind == "head":
            return f"FC_Cin{cin}_Cout{cout}"
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields plus ``key``, ``ofa_key`` and ``hwnas_key``."""
        d = asdict(self)
        d["in_shape"], d["out_shape"] = list(self.in_shape), list(self.out_shape)
        d.update(key=self.key, ofa_key=self.ofa_key, hwnas_key=self.hwnas_key)
        return d


@dataclass(frozen=True)
class LutPlan:
    """What a fast predictor needs to sum a table for one resolution.

    ``pre`` blocks come first, then the active ``slots`` in order, then ``post``.
    ``slots[j]`` maps a slot choice (e.g. ``(ks, e)``) to its block; ``active[dkey]`` lists
    the slot indexes that a depth key activates; ``decode(arch)`` returns ``(dkey, choices)``
    with ``choices[j]`` the choice of slot ``j`` (it may raise on a malformed arch).
    """

    pre: tuple[Block, ...]
    slots: tuple[dict[Hashable, Block], ...]
    post: tuple[Block, ...]
    active: dict[Hashable, tuple[int, ...]]
    decode: Callable[[Arch], tuple[Hashable, Sequence[Hashable]]]


def unique_blocks(blocks: Iterable[Block]) -> list[Block]:
    """Blocks deduplicated by :attr:`Block.key`, first occurrence order kept."""
    seen: dict[str, Block] = {}
    for b in blocks:
        seen.setdefault(b.key, b)
    return list(seen.values())


class SearchSpace(ABC):
    """A NAS search space: its choices, its blocks and its architecture encoding."""

    name: str = ""
    description: str = ""
    resolutions: tuple[int, ...] = ()
    default_resolution: int = 224
    choices: dict[str, Any] = {}
    arch_format: str = ""

    def check_resolution(self, resolution: int | None) -> int:
        """The resolution to use (default if None); ValueError if the space does not allow it."""
        if resolution is None:
            return self.default_resolution
        if isinstance(resolution, bool) or not isinstance(resolution, int):
            raise ValueError(f"{self.name}: resolution must be an int, got {resolution!r}")
        if resolution not in self.resolutions:
            raise ValueError(
                f"{self.name}: resolution {resolution} not allowed; allowed: "
                f"{_ranges(self.resolutions)}"
            )
        return resolution

    def arch_resolution(self, arch: Arch, resolution: int | None = None) -> int:
        """Resolution of ``arch``: its ``image_size`` / ``r`` entry if any, else ``resolution``."""
        if isinstance(arch, Mapping):
            r = arch.get("image_size", arch.get("r"))
            if isinstance(r, list | tuple) and len(r) == 1:
                r = r[0]
            if r is not None:
                return self.check_resolution(r)
        return self.check_resolution(resolution)

    def normalize(self, arch: Arch) -> Arch:
        """``arch`` in the canonical encoding (spaces may accept shorthands); no validation."""
        return arch

    @abstractmethod
    def validate(self, arch: Arch) -> None:
        """Raise ValueError with a clear message if ``arch`` is not in the space."""

    @abstractmethod
    def sample(self, rng: random.Random | None = None) -> Arch:
        """A random architecture (module-level ``random`` if ``rng`` is None)."""

    @abstractmethod
    def lut_plan(self, resolution: int | None = None) -> LutPlan:
        """The slot structure of the space at ``resolution`` (see :class:`LutPlan`)."""

    def blocks_for(self, arch: Arch, resolution: int | None = None) -> list[Block]:
        """The network ``arch`` defines at ``resolution``, block by block, in order."""
        arch = self.normalize(arch)
        self.validate(arch)
        plan = self.lut_plan(self.arch_resolution(arch, resolution))
        dkey, choices = plan.decode(arch)
        mid = [plan.slots[j][choices[j]] for j in plan.active[dkey]]
        return [*plan.pre, *mid, *plan.post]

    def expand(self, resolution: int | None = None) -> list[Block]:
        """Every unique block needed to cover the whole space at ``resolution``."""
        plan = self.lut_plan(resolution)
        every = [b for slot in plan.slots for b in slot.values()]
        return unique_blocks([*plan.pre, *every, *plan.post])

    def to_dict(self) -> dict[str, Any]:
        """The API description of the space."""
        return {
            "name": self.name,
            "description": self.description,
            "resolutions": list(self.resolutions),
            "default_resolution": self.default_resolution,
            "choices": self.choices,
            "arch_format": self.arch_format,
            "num_unique_blocks": len(self.expand(self.default_resolution)),
        }


def _ranges(values: Sequence[int]) -> str:
    """Compact text of allowed values: ``128..224 step 4`` or ``224``."""
    vs = sorted(values)
    if len(vs) > 2:
        step = vs[1] - vs[0]
        if all(b - a == step for a, b in itertools.pairwise(vs)):
            return f"{vs[0]}..{vs[-1]} step {step}"
    return ", ".join(str(v) for v in vs)
