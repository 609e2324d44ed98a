"""Modern convolutional architectures for the zoo (``converters.zoo``), small, random weights.

Each keeps the graph features that make its family hard to convert, at a few channels:
ConvNeXt (7x7 depthwise, channels-last LayerNorm, layer scale), RegNetY (group convs,
squeeze-excite), GhostNet (ghost modules: concat + channel slice, hard-sigmoid SE), MobileOne
(multi-branch blocks re-parameterised into single convs, as deployed) and a YOLO-style
detector (C2f split/concat, SPPF, nearest upsample + concat neck, ``view(b, no, -1)`` head
concatenated over scales). Attention models are in ``converters.zoo_attention``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


def bn(c: int) -> nn.BatchNorm2d:
    """BatchNorm with non-trivial running statistics (so folding it is exercised)."""
    layer = nn.BatchNorm2d(c)
    assert layer.running_mean is not None and layer.running_var is not None
    with torch.no_grad():
        layer.running_mean.uniform_(-0.1, 0.1)
        layer.running_var.uniform_(0.5, 1.5)
    return layer


def conv_bn(
    cin: int, cout: int, k: int = 1, s: int = 1, groups: int = 1, act: nn.Module | None = None
) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False)]
    layers.append(bn(cout))
    if act is not None:
        layers.append(act)
    return nn.Sequential(*layers)


# -- ConvNeXt -----------------------------------------------------------------------------
class LayerNorm2d(nn.LayerNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = nn.LayerNorm(c)
        self.mlp = nn.Sequential(nn.Linear(c, 4 * c), nn.GELU(), nn.Linear(4 * c, c))
        self.gamma = nn.Parameter(torch.full((c,), 0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.mlp(self.norm(self.dw(x).permute(0, 2, 3, 1))) * self.gamma
        return x + y.permute(0, 3, 1, 2)


class ConvNeXtTiny(nn.Module):
    def __init__(self, dims: tuple[int, ...] = (16, 32, 48), classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, dims[0], 4, 4), LayerNorm2d(dims[0])]
        for i, c in enumerate(dims):
            if i:
                layers += [LayerNorm2d(dims[i - 1]), nn.Conv2d(dims[i - 1], c, 2, 2)]
            layers.append(ConvNeXtBlock(c))
        self.body = nn.Sequential(*layers)
        self.norm, self.head = nn.LayerNorm(dims[-1]), nn.Linear(dims[-1], classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.body(x).mean(dim=(-2, -1))))


# -- RegNetY ------------------------------------------------------------------------------
class SE(nn.Module):
    def __init__(self, c: int, squeeze: int, gate: nn.Module | None = None) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, squeeze, 1), nn.Conv2d(squeeze, c, 1)
        self.gate = gate or nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True)))))


class RegNetYBlock(nn.Module):
    """1x1 -> 3x3 group conv (group width 8) -> SE -> 1x1, residual."""

    def __init__(self, cin: int, cout: int, stride: int, group_width: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_bn(cin, cout, 1, act=nn.ReLU()),
            conv_bn(cout, cout, 3, stride, groups=cout // group_width, act=nn.ReLU()),
            SE(cout, max(cin // 4, 4)),
            conv_bn(cout, cout, 1),
        )
        self.short = conv_bn(cin, cout, 1, stride) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.short(x))


class RegNetTiny(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_bn(3, 16, 3, 2, act=nn.ReLU()),
            RegNetYBlock(16, 24, 2),
            RegNetYBlock(24, 48, 2),
            RegNetYBlock(48, 48, 1),
        )
        self.head = nn.Linear(48, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).mean(dim=(2, 3)))


# -- GhostNet -----------------------------------------------------------------------------
class GhostModule(nn.Module):
    """Half the channels from a 1x1 conv, the other half from a cheap depthwise 3x3 on them."""

    def __init__(self, cin: int, cout: int, relu: bool = True) -> None:
        super().__init__()
        self.cout = cout
        init = math.ceil(cout / 2)
        act = nn.ReLU() if relu else None
        self.primary = conv_bn(cin, init, 1, act=act)
        self.cheap = conv_bn(init, init, 3, groups=init, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.primary(x)
        return torch.cat([y, self.cheap(y)], dim=1)[:, : self.cout]


class GhostBottleneck(nn.Module):
    def __init__(self, cin: int, mid: int, cout: int, stride: int, se: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = [GhostModule(cin, mid)]
        if stride > 1:
            layers.append(conv_bn(mid, mid, 3, stride, groups=mid))
        if se:
            layers.append(SE(mid, max(mid // 4, 4), nn.Hardsigmoid()))
        layers.append(GhostModule(mid, cout, relu=False))
        self.body = nn.Sequential(*layers)
        self.short = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(conv_bn(cin, cin, 3, stride, groups=cin), conv_bn(cin, cout, 1))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.short(x)


class GhostNetTiny(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_bn(3, 16, 3, 2, act=nn.ReLU()),
            GhostBottleneck(16, 24, 16, 1, False),
            GhostBottleneck(16, 48, 24, 2, True),
            GhostBottleneck(24, 72, 30, 2, True),  # 30: the ghost concat is sliced
            conv_bn(30, 64, 1, act=nn.ReLU()),
        )
        self.head = nn.Linear(64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).mean(dim=(2, 3)))


# -- MobileOne ----------------------------------------------------------------------------
class MobileOneBlock(nn.Module):
    """Training form: k branches of conv+BN, a 1x1 conv+BN branch and a BN skip, summed.
    ``reparameterize()`` folds them into one conv (the deployed form)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, groups: int = 1) -> None:
        super().__init__()
        self.k, self.stride, self.groups = k, stride, groups
        self.convs = nn.ModuleList(conv_bn(cin, cout, k, stride, groups) for _ in range(2))
        self.scale = conv_bn(cin, cout, 1, stride, groups) if k > 1 else None
        self.skip = bn(cin) if cin == cout and stride == 1 else None
        self.fused: nn.Conv2d | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused is not None:
            return F.relu(self.fused(x))
        y = self.convs[0](x)
        for conv in self.convs[1:]:
            y = y + conv(x)
        if self.scale is not None:
            y = y + self.scale(x)
        if self.skip is not None:
            y = y + self.skip(x)
        return F.relu(y)

    @staticmethod
    def _fold(weight: torch.Tensor, norm: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
        assert norm.running_var is not None and norm.running_mean is not None
        std = (norm.running_var + norm.eps).sqrt()
        t = (norm.weight / std).reshape(-1, 1, 1, 1)
        return weight * t, norm.bias - norm.running_mean * norm.weight / std

    @staticmethod
    def _parts(branch: nn.Module) -> tuple[torch.Tensor, nn.BatchNorm2d]:
        assert isinstance(branch, nn.Sequential)
        conv, norm = branch[0], branch[1]
        assert isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d)
        return conv.weight, norm

    @torch.no_grad()
    def reparameterize(self) -> None:
        first, _ = self._parts(self.convs[0])
        cout, cin_g = first.shape[:2]
        kernel = torch.zeros_like(first)
        bias = torch.zeros(cout)
        branches = [self._parts(c) for c in self.convs]
        if self.scale is not None:
            w, norm = self._parts(self.scale)
            branches.append((F.pad(w, [self.k // 2] * 4), norm))
        if self.skip is not None:
            ident = torch.zeros_like(first)
            for i in range(cout):
                ident[i, i % cin_g, self.k // 2, self.k // 2] = 1.0
            branches.append((ident, self.skip))
        for w, norm in branches:
            kw, kb = self._fold(w, norm)
            kernel += kw
            bias += kb
        self.fused = nn.Conv2d(
            cin_g * self.groups, cout, self.k, self.stride, self.k // 2, groups=self.groups
        )
        self.fused.weight.copy_(kernel)
        assert self.fused.bias is not None
        self.fused.bias.copy_(bias)
        del self.convs, self.scale, self.skip
        self.convs, self.scale, self.skip = nn.ModuleList(), None, None


class MobileOneTiny(nn.Module):
    """Stem, then depthwise 3x3 + pointwise 1x1 MobileOne blocks; ``deploy`` re-parameterises."""

    def __init__(self, classes: int = 10, deploy: bool = True) -> None:
        super().__init__()
        spec = [(3, 16, 3, 2, 1), (16, 16, 3, 2, 16), (16, 32, 1, 1, 1), (32, 32, 3, 1, 32)]
        spec += [(32, 32, 1, 1, 1), (32, 32, 3, 2, 32), (32, 48, 1, 1, 1)]
        self.blocks = nn.Sequential(*(MobileOneBlock(*s) for s in spec))
        self.head = nn.Linear(48, classes)
        if deploy:
            self.eval()
            for b in self.blocks:
                assert isinstance(b, MobileOneBlock)
                b.reparameterize()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x).mean(dim=(2, 3)))


# -- YOLO-style detector ------------------------------------------------------------------
def cbs(cin: int, cout: int, k: int = 1, s: int = 1) -> nn.Sequential:
    return conv_bn(cin, cout, k, s, act=nn.SiLU())


class C2f(nn.Module):
    def __init__(self, cin: int, cout: int, n: int = 1) -> None:
        super().__init__()
        self.c = cout // 2
        self.cv1, self.cv2 = cbs(cin, 2 * self.c), cbs((2 + n) * self.c, cout)
        self.m = nn.ModuleList(
            nn.Sequential(cbs(self.c, self.c, 3), cbs(self.c, self.c, 3)) for _ in range(n)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = list(self.cv1(x).chunk(2, 1))
        for m in self.m:
            y.append(y[-1] + m(y[-1]))
        return self.cv2(torch.cat(y, 1))


class SPPF(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.cv1, self.cv2 = cbs(c, c // 2), cbs(2 * c, c)
        self.pool = nn.MaxPool2d(5, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv1(x)]
        for _ in range(3):
            y.append(self.pool(y[-1]))
        return self.cv2(torch.cat(y, 1))


class YoloTiny(nn.Module):
    """Backbone (P3 at /8, P4 at /16), upsample+concat neck, two heads: (b, 4 + nc, anchors)."""

    def __init__(self, nc: int = 4) -> None:
        super().__init__()
        self.no = 4 + nc
        self.p3 = nn.Sequential(cbs(3, 8, 3, 2), cbs(8, 16, 3, 2), C2f(16, 16), cbs(16, 32, 3, 2))
        self.p4 = nn.Sequential(C2f(32, 32), cbs(32, 48, 3, 2), C2f(48, 48), SPPF(48))
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.n3, self.down, self.n4 = C2f(80, 32), cbs(32, 32, 3, 2), C2f(80, 48)
        self.box = nn.ModuleList(
            nn.Sequential(cbs(c, 16, 3), nn.Conv2d(16, 4, 1)) for c in (32, 48)
        )
        self.cls = nn.ModuleList(
            nn.Sequential(cbs(c, 16, 3), nn.Conv2d(16, nc, 1)) for c in (32, 48)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p3 = self.p3(x)
        p4 = self.p4(p3)
        n3 = self.n3(torch.cat([self.up(p4), p3], 1))
        n4 = self.n4(torch.cat([self.down(n3), p4], 1))
        outs = []
        for feat, box, cls in zip((n3, n4), self.box, self.cls, strict=True):
            b = feat.shape[0]
            outs.append(torch.cat([box(feat), cls(feat).sigmoid()], 1).view(b, self.no, -1))
        return torch.cat(outs, 2)


# -- the bench MobileNetV2 layout ---------------------------------------------------------
class MobileNetV2Like(nn.Module):
    """``bench.models.mobilenet_v2_like`` in torch: the full MobileNetV2 layout (17 inverted
    residuals, ReLU6, BatchNorm folded into biased convs, He-normal weights). Deep, without
    normalisation and random: its int8 error is larger than the small zoo nets' (the case
    int8 validation is judged by SQNR for)."""

    def __init__(self, width: float = 0.35, classes: int = 100) -> None:
        super().__init__()

        def ch(c: float) -> int:
            return max(8, int(c * width + 4) // 8 * 8)

        def conv(cin: int, cout: int, k: int, s: int = 1, g: int = 1, act: bool = True) -> Any:
            layer = nn.Conv2d(cin, cout, k, s, k // 2, groups=g)
            assert layer.bias is not None
            with torch.no_grad():
                layer.weight.normal_(0.0, math.sqrt(2.0 / (cin // g * k * k)))
                layer.bias.normal_(0.0, 0.01)
            return nn.Sequential(layer, nn.ReLU6()) if act else layer

        self.stem = conv(3, ch(32), 3, 2)
        cin, blocks, self.residual = ch(32), [], []
        cfg = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2)]
        for t, c, n, s in [*cfg, (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
            for i in range(n):
                stride, hidden = (s if i == 0 else 1), cin * t
                body = [conv(cin, hidden, 1)] if t != 1 else []
                body += [conv(hidden, hidden, 3, stride, hidden), conv(hidden, ch(c), 1, act=False)]
                blocks.append(nn.Sequential(*body))
                self.residual.append(stride == 1 and cin == ch(c))
                cin = ch(c)
        self.blocks = nn.ModuleList(blocks)
        self.last = conv(cin, 1280, 1)
        self.fc = nn.Linear(1280, classes)
        with torch.no_grad():
            self.fc.weight.normal_(0.0, math.sqrt(1.0 / 1280))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block, residual in zip(self.blocks, self.residual, strict=True):
            x = x + block(x) if residual else block(x)
        return self.fc(self.last(x).mean(dim=(2, 3)))
