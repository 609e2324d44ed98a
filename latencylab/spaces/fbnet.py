"""The FBNet space as HW-NAS-Bench uses it.

Reference: GATECH-EIC/HW-NAS-Bench, ``hw_nas_bench_api/fbnet_models/model_infer.py``
(``FBNet_Infer``) and ``hw_nas_bench_api.py`` (``fbnet_get_metrics``). ImageNet setting:
stem 3x3/2 conv + BN + ReLU to 16 channels; 22 searchable layers in 7 stages of
``[1, 4, 4, 4, 4, 4, 1]`` layers with widths ``[16, 24, 32, 64, 112, 184, 352]`` and first
strides ``[1, 2, 2, 2, 1, 2, 1]``; header 1x1 conv + BN + ReLU to 1984; average pool; FC.
(The CIFAR-100 setting, ``FBNetSpace("cifar100")``: 32x32 input, stem stride 1, strides
``[1, 1, 2, 2, 1, 2, 1]``, header 1504, 100 classes.)

Architecture encoding: a list of 22 ops, one per layer in order, each either its index in
:data:`PRIMITIVES` (HW-NAS-Bench's ``arch_index`` / ``op_idx_list``) or its name::

    [3, 8, 0, ...]  or  ["k3_e6", "skip", "k3_e1", ...]

A dict with an ``op_idx_list`` (HW-NAS-Bench's ``get_net_config`` output) is accepted too.
``kK_eE`` is a ``ConvBlock`` (1x1 expand to ``E * C_in``, depthwise ``KxK``, 1x1 project,
residual when the shape is kept); ``_g2`` makes both 1x1 convs 2-group with a channel shuffle;
``skip`` is the identity, or a 1x1 conv + BN + ReLU where the layer strides or changes width.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from .base import Arch, Block, LutPlan, SearchSpace, conv_out

PRIMITIVES: tuple[str, ...] = (
    "k3_e1",
    "k3_e1_g2",
    "k3_e3",
    "k3_e6",
    "k5_e1",
    "k5_e1_g2",
    "k5_e3",
    "k5_e6",
    "skip",
)
"""The 9 candidate ops, in HW-NAS-Bench's index order."""

_OP_PARAMS: dict[str, tuple[int, int, int]] = {
    name: (int(name[1]), int(name[4]), 2 if name.endswith("_g2") else 1)
    for name in PRIMITIVES
    if name != "skip"
}
"""op name -> (kernel, expand, groups)."""

_SETTINGS: dict[str, dict[str, Any]] = {
    "ImageNet": {
        "resolution": 224,
        "stem_stride": 2,
        "strides": (1, 2, 2, 2, 1, 2, 1),
        "header": 1984,
        "classes": 1000,
    },
    "cifar100": {
        "resolution": 32,
        "stem_stride": 1,
        "strides": (1, 1, 2, 2, 1, 2, 1),
        "header": 1504,
        "classes": 100,
    },
}


class FBNetSpace(SearchSpace):
    """FBNet (v1) space of HW-NAS-Bench: 22 layers x 9 candidate ops."""

    name = "fbnet"
    num_layers_per_stage: tuple[int, ...] = (1, 4, 4, 4, 4, 4, 1)
    widths: tuple[int, ...] = (16, 24, 32, 64, 112, 184, 352)
    stem_width = 16
    arch_format = "list of 22 ops, each an index 0-8 into choices.ops or the op name"

    def __init__(self, dataset: str = "ImageNet") -> None:
        if dataset not in _SETTINGS:
            raise ValueError(f"fbnet: dataset must be one of {sorted(_SETTINGS)}, got {dataset!r}")
        self.dataset = dataset
        cfg = _SETTINGS[dataset]
        self.stem_stride: int = cfg["stem_stride"]
        self.strides: tuple[int, ...] = cfg["strides"]
        self.header: int = cfg["header"]
        self.n_classes: int = cfg["classes"]
        self.resolutions = (cfg["resolution"],)
        self.default_resolution = cfg["resolution"]
        self.num_layers = sum(self.num_layers_per_stage)
        self.description = (
            f"FBNet space as in HW-NAS-Bench ({dataset} setting): 22 searchable layers, "
            f"9 candidate ops each, input {self.default_resolution}x{self.default_resolution}."
        )
        self.choices = {"ops": list(PRIMITIVES), "num_layers": self.num_layers}
        self._index: dict[Hashable, int] = {n: i for i, n in enumerate(PRIMITIVES)}
        self._index.update({i: i for i in range(len(PRIMITIVES))})
        self._plans: dict[int, LutPlan] = {}

    def normalize(self, arch: Arch) -> Arch:
        """The op list of ``arch`` as indexes (names mapped; an ``op_idx_list`` dict unwrapped)."""
        if isinstance(arch, Mapping) and "op_idx_list" in arch:
            arch = arch["op_idx_list"]
        if isinstance(arch, list | tuple):
            return [self._index.get(op, op) if isinstance(op, Hashable) else op for op in arch]
        return arch

    def validate(self, arch: Arch) -> None:
        """ValueError naming the first problem of ``arch``."""
        ops = arch["op_idx_list"] if isinstance(arch, Mapping) and "op_idx_list" in arch else arch
        if not isinstance(ops, list | tuple):
            raise ValueError(f"fbnet: arch must be a list of {self.num_layers} ops, got {arch!r}")
        if len(ops) != self.num_layers:
            raise ValueError(f"fbnet: arch must have {self.num_layers} ops, got {len(ops)}")
        for i, op in enumerate(ops):
            if isinstance(op, bool) or not isinstance(op, Hashable) or op not in self._index:
                raise ValueError(
                    f"fbnet: op {i} is {op!r}; expected an index 0-8 or one of {list(PRIMITIVES)}"
                )

    def sample(self, rng: random.Random | None = None) -> list[int]:
        """Uniform op indexes for the 22 layers (HW-NAS-Bench ``arch_index`` format)."""
        r: Any = rng if rng is not None else random
        return [r.randrange(len(PRIMITIVES)) for _ in range(self.num_layers)]

    def _decode(self, arch: Arch) -> tuple[Hashable, Sequence[Hashable]]:
        if isinstance(arch, Mapping):
            arch = arch["op_idx_list"]
        if len(arch) != self.num_layers:
            raise ValueError("bad length")
        return None, arch

    def _layer(self, size: int, cin: int, cout: int, stride: int, op: str) -> Block:
        out = conv_out(size, stride)
        ins, outs = (size, size, cin), (out, out, cout)
        if op == "skip":
            return Block("skip", ins, outs, stride=stride, act="relu", table="hwnas-fbnet")
        k, e, g = _OP_PARAMS[op]
        return Block(
            "fbnet_block",
            ins,
            outs,
            kernel=k,
            stride=stride,
            expand=e,
            mid=cin * e,
            groups=g,
            act="relu",
            skip=cin == cout and stride == 1,
            expand_conv=True,
            shuffle=g > 1,
            table="hwnas-fbnet",
        )

    def lut_plan(self, resolution: int | None = None) -> LutPlan:
        """One slot per layer; a slot's choices are both the op indexes and the op names."""
        res = self.check_resolution(resolution)
        if res in self._plans:
            return self._plans[res]
        t = "hwnas-fbnet"
        size = conv_out(res, self.stem_stride)
        stem = Block(
            "stem",
            (res, res, 3),
            (size, size, self.stem_width),
            kernel=3,
            stride=self.stem_stride,
            act="relu",
            table=t,
        )
        cin = self.stem_width
        slots: list[dict[Hashable, Block]] = []
        for n, width, stage_stride in zip(
            self.num_layers_per_stage, self.widths, self.strides, strict=True
        ):
            for i in range(n):
                stride = stage_stride if i == 0 else 1
                slot: dict[Hashable, Block] = {}
                for idx, op in enumerate(PRIMITIVES):
                    slot[idx] = slot[op] = self._layer(size, cin, width, stride, op)
                slots.append(slot)
                size, cin = conv_out(size, stride), width
        post = (
            Block("feature_mix", (size, size, cin), (size, size, self.header), act="relu", table=t),
            Block("pool", (size, size, self.header), (1, 1, self.header), bn=False, table=t),
            Block(
                "head", (1, 1, self.header), (1, 1, self.n_classes), bn=False, bias=True, table=t
            ),
        )
        plan = LutPlan((stem,), tuple(slots), post, {None: tuple(range(len(slots)))}, self._decode)
        self._plans[res] = plan
        return plan
