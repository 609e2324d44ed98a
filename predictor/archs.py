"""Real architectures built in code (random weights, batch 1, NCHW, opset 17).

Each builder takes ``resolution``, a ``width`` multiplier, ``bn`` (True: BatchNorm left
to the runtime as ``BatchNormalization`` nodes, as the dynamo exporter and TFLite/OpenVINO
converters see it; False: folded into the conv bias, as ``torch.onnx.export`` in eval
mode leaves it) and ``seed``. Layouts follow the reference implementations (torchvision,
timm, the GhostNet paper); only the classifier width is reduced to 1000 classes as usual.
"""

from __future__ import annotations

from collections.abc import Callable

import onnx

from predictor.netbuild import NetBuilder


def _ch(c: float, width: float, div: int = 8) -> int:
    v = c * width
    out = max(div, int(v + div / 2) // div * div)
    return out + div if out < 0.9 * v else out


class _Net(NetBuilder):
    def __init__(self, seed: int, bn: bool) -> None:
        super().__init__(seed)
        self.use_bn = bn

    def cba(
        self, x: str, cout: int, k: int = 1, s: int = 1, groups: int = 1, act: str | None = None
    ) -> str:
        y = self.conv(x, cout, k, s, groups, bias=not self.use_bn)
        if self.use_bn:
            y = self.bn(y)
        return self.act(y, act) if act else y

    def classifier(self, x: str, classes: int = 1000) -> str:
        c = self.shapes[x][1]
        g = self.pool(x, "gap") if self.shapes[x][2] > 1 else x
        return self.fc(self.reshape(g, [1, c]), classes)


def mobilenet_v2(
    resolution: int, width: float = 1.0, bn: bool = False, seed: int = 0
) -> onnx.ModelProto:
    g = _Net(seed, bn)
    x = g.cba(g.input([1, 3, resolution, resolution]), _ch(32, width), 3, 2, act="relu6")
    cin = _ch(32, width)
    for t, c, n, s in [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ]:
        cout = _ch(c, width)
        for i in range(n):
            stride = s if i == 0 else 1
            h = g.cba(x, cin * t, 1, act="relu6") if t != 1 else x
            h = g.cba(h, cin * t, 3, stride, cin * t, act="relu6")
            h = g.cba(h, cout, 1)
            x = g.add(x, h) if stride == 1 and cin == cout else h
            cin = cout
    x = g.cba(x, max(1280, _ch(1280, width)), 1, act="relu6")
    return g.model([g.classifier(x)], "mobilenet_v2")


MBV3_LARGE = [  # kernel, expanded, out, se, act, stride (torchvision mobilenet_v3_large)
    (3, 16, 16, False, "relu", 1), (3, 64, 24, False, "relu", 2), (3, 72, 24, False, "relu", 1),
    (5, 72, 40, True, "relu", 2), (5, 120, 40, True, "relu", 1), (5, 120, 40, True, "relu", 1),
    (3, 240, 80, False, "hswish", 2), (3, 200, 80, False, "hswish", 1),
    (3, 184, 80, False, "hswish", 1), (3, 184, 80, False, "hswish", 1),
    (3, 480, 112, True, "hswish", 1), (3, 672, 112, True, "hswish", 1),
    (5, 672, 160, True, "hswish", 2), (5, 960, 160, True, "hswish", 1),
    (5, 960, 160, True, "hswish", 1),
]  # fmt: skip


def mobilenet_v3(
    resolution: int, width: float = 1.0, bn: bool = False, seed: int = 0
) -> onnx.ModelProto:
    g = _Net(seed, bn)
    cin = _ch(16, width)
    x = g.cba(g.input([1, 3, resolution, resolution]), cin, 3, 2, act="hswish")
    for k, e, c, se, act, s in MBV3_LARGE:
        mid, cout = _ch(e, width), _ch(c, width)
        h = g.cba(x, mid, 1, act=act) if mid != cin else x
        h = g.cba(h, mid, k, s, mid, act=act)
        if se:
            h = g.se(h, _ch(mid // 4, 1.0), "relu", "hsigmoid")
        h = g.cba(h, cout, 1)
        x = g.add(x, h) if s == 1 and cin == cout else h
        cin = cout
    x = g.cba(x, 6 * cin, 1, act="hswish")
    f = g.act(g.fc(g.reshape(g.pool(x, "gap"), [1, 6 * cin]), 1280), "hswish")
    return g.model([g.fc(f, 1000)], "mobilenet_v3")


def resnet(
    resolution: int, width: float = 1.0, bn: bool = False, seed: int = 0, depth: int = 18
) -> onnx.ModelProto:
    g = _Net(seed, bn)
    x = g.cba(g.input([1, 3, resolution, resolution]), _ch(64, width), 7, 2, act="relu")
    x = g.pool(x, "maxpool", 3, 2)
    blocks = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3)}[depth]
    expansion = 4 if depth >= 50 else 1
    cin = _ch(64, width)
    for stage, n in enumerate(blocks):
        planes = _ch(64 * 2**stage, width)
        for i in range(n):
            s = 2 if stage > 0 and i == 0 else 1
            cout = planes * expansion
            if expansion == 1:
                h = g.cba(g.cba(x, planes, 3, s, act="relu"), planes, 3)
            else:
                h = g.cba(g.cba(x, planes, 1, act="relu"), planes, 3, s, act="relu")
                h = g.cba(h, cout, 1)
            short = g.cba(x, cout, 1, s) if s != 1 or cin != cout else x
            x = g.act(g.add(h, short), "relu")
            cin = cout
    return g.model([g.classifier(x)], f"resnet{depth}")


def efficientnet_b0(
    resolution: int, width: float = 1.0, bn: bool = False, seed: int = 0
) -> onnx.ModelProto:
    g = _Net(seed, bn)
    cin = _ch(32, width)
    x = g.cba(g.input([1, 3, resolution, resolution]), cin, 3, 2, act="silu")
    for e, k, s, c, n in [
        (1, 3, 1, 16, 1),
        (6, 3, 2, 24, 2),
        (6, 5, 2, 40, 2),
        (6, 3, 2, 80, 3),
        (6, 5, 1, 112, 3),
        (6, 5, 2, 192, 4),
        (6, 3, 1, 320, 1),
    ]:
        cout = _ch(c, width)
        for i in range(n):
            stride = s if i == 0 else 1
            mid = cin * e
            h = g.cba(x, mid, 1, act="silu") if e != 1 else x
            h = g.cba(h, mid, k, stride, mid, act="silu")
            h = g.se(h, max(1, cin // 4), "silu", "sigmoid")
            h = g.cba(h, cout, 1)
            x = g.add(x, h) if stride == 1 and cin == cout else h
            cin = cout
    x = g.cba(x, _ch(1280, width), 1, act="silu")
    return g.model([g.classifier(x)], "efficientnet_b0")


def convnext(
    resolution: int, width: float = 1.0, bn: bool = False, seed: int = 0
) -> onnx.ModelProto:
    """ConvNeXt-femto layout (timm: dims 48-384, depths 2-2-6-2), channels-last LayerNorm."""
    g = _Net(seed, bn)
    dims = [_ch(d, width) for d in (48, 96, 192, 384)]

    def ln_cf(x: str) -> str:  # LayerNorm2d: permute, LayerNorm over channels, permute back
        return g.transpose(g.layernorm(g.transpose(x, [0, 2, 3, 1])), [0, 3, 1, 2])

    x = ln_cf(g.conv(g.input([1, 3, resolution, resolution]), dims[0], 4, 4, pad=0))
    for stage, (d, n) in enumerate(zip(dims, (2, 2, 6, 2), strict=True)):
        if stage > 0:
            x = g.conv(ln_cf(x), d, 2, 2, pad=0)
        for _ in range(n):
            h = g.transpose(g.conv(x, d, 7, 1, d), [0, 2, 3, 1])
            h = g.fc(g.act(g.fc(g.layernorm(h), 4 * d), "gelu"), d)
            x = g.add(x, g.transpose(g.scale(h), [0, 3, 1, 2]))
    pooled = g.layernorm(g.reshape(g.pool(x, "gap"), [1, dims[-1]]))
    return g.model([g.fc(pooled, 1000)], "convnext")


def regnet(resolution: int, width: float = 1.0, bn: bool = False, seed: int = 0) -> onnx.ModelProto:
    """RegNetY-400MF layout: widths 48-104-208-440, depths 1-3-6-6, group width 8, SE 0.25."""
    g = _Net(seed, bn)
    cin = 32
    x = g.cba(g.input([1, 3, resolution, resolution]), cin, 3, 2, act="relu")
    for w, n in zip((48, 104, 208, 440), (1, 3, 6, 6), strict=True):
        cout = _ch(w, width)
        for i in range(n):
            s = 2 if i == 0 else 1
            h = g.cba(x, cout, 1, act="relu")
            h = g.cba(h, cout, 3, s, cout // 8, act="relu")
            h = g.se(h, max(1, cin // 4), "relu", "sigmoid")
            h = g.cba(h, cout, 1)
            short = g.cba(x, cout, 1, s) if s != 1 or cin != cout else x
            x = g.act(g.add(h, short), "relu")
            cin = cout
    return g.model([g.classifier(x)], "regnet")


GHOST = [  # kernel, expanded, out, se, stride (GhostNet 1.0x)
    (3, 16, 16, 0, 1), (3, 48, 24, 0, 2), (3, 72, 24, 0, 1), (5, 72, 40, 1, 2),
    (5, 120, 40, 1, 1), (3, 240, 80, 0, 2), (3, 200, 80, 0, 1), (3, 184, 80, 0, 1),
    (3, 184, 80, 0, 1), (3, 480, 112, 1, 1), (3, 672, 112, 1, 1), (5, 672, 160, 1, 2),
    (5, 960, 160, 0, 1), (5, 960, 160, 1, 1), (5, 960, 160, 0, 1), (5, 960, 160, 1, 1),
]  # fmt: skip


def ghostnet(
    resolution: int, width: float = 1.0, bn: bool = False, seed: int = 0
) -> onnx.ModelProto:
    g = _Net(seed, bn)

    def ghost(x: str, out: int, relu: bool) -> str:
        init = (out + 1) // 2
        act = "relu" if relu else None
        a = g.cba(x, init, 1, act=act)
        b = g.cba(a, init, 3, 1, init, act=act)
        y = g.concat([a, b], 1)
        return g.slice(y, 1, 0, out) if 2 * init != out else y

    cin = _ch(16, width, 4)
    x = g.cba(g.input([1, 3, resolution, resolution]), cin, 3, 2, act="relu")
    for k, e, c, se, s in GHOST:
        mid, cout = _ch(e, width, 4), _ch(c, width, 4)
        h = ghost(x, mid, True)
        if s > 1:
            h = g.cba(h, mid, k, s, mid)
        if se:
            h = g.se(h, _ch(mid // 4, 1.0, 4), "relu", "hsigmoid")
        h = ghost(h, cout, False)
        same = s == 1 and cin == cout
        short = x if same else g.cba(g.cba(x, cin, k, s, cin), cout, 1)
        x = g.add(h, short)
        cin = cout
    x = g.cba(x, _ch(960, width, 4), 1, act="relu")
    f = g.act(g.fc(g.reshape(g.pool(x, "gap"), [1, g.shapes[x][1]]), 1280), "relu")
    return g.model([g.fc(f, 1000)], "ghostnet")


def vit(
    resolution: int,
    width: float = 1.0,
    bn: bool = False,
    seed: int = 0,
    dim: int = 192,
    depth: int = 12,
    heads: int = 3,
    patch: int = 16,
) -> onnx.ModelProto:
    """ViT/DeiT layout (DeiT-tiny: dim 192, 3 heads; DeiT-small: 384, 6): patch conv,
    class token, position embedding, pre-norm blocks, head on the class token."""
    del bn  # no BatchNorm in a ViT
    g = NetBuilder(seed)
    d = _ch(dim, width, 8 * heads)
    p = g.conv(g.input([1, 3, resolution, resolution]), d, patch, patch, pad=0)
    n = g.shapes[p][2] * g.shapes[p][3]
    t = g.transpose(g.reshape(p, [1, d, n]), [0, 2, 1])
    cls = g.const(g.rng.standard_normal((1, 1, d)) * 0.02)
    x = g.bias(g.concat([cls, t], 1))
    for _ in range(depth):
        x = g.add(x, g.mhsa(g.layernorm(x), heads))
        x = g.add(x, g.fc(g.act(g.fc(g.layernorm(x), 4 * d), "gelu"), d))
    c = g.reshape(g.slice(g.layernorm(x), 1, 0, 1), [1, d])
    return g.model([g.fc(c, 1000)], "vit")


Builder = Callable[..., onnx.ModelProto]
ARCHS: dict[str, tuple[str, Builder, dict[str, int]]] = {
    "mobilenet_v2": ("mobilenet", mobilenet_v2, {}),
    "mobilenet_v3": ("mobilenet", mobilenet_v3, {}),
    "resnet18": ("resnet", resnet, {"depth": 18}),
    "resnet50": ("resnet", resnet, {"depth": 50}),
    "efficientnet_b0": ("efficientnet", efficientnet_b0, {}),
    "convnext": ("convnext", convnext, {}),
    "regnet": ("regnet", regnet, {}),
    "ghostnet": ("ghostnet", ghostnet, {}),
    "deit_tiny": ("vit", vit, {"dim": 192, "heads": 3}),
    "deit_small": ("vit", vit, {"dim": 384, "heads": 6}),
}
"""name -> (family, builder, fixed keyword arguments)."""
