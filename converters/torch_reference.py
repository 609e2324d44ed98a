"""Search-space networks as PyTorch modules written like the reference code, and their ONNX
export the way researchers export them.

:func:`reference_module` builds ``space.blocks_for(arch, resolution)`` as an ``nn.Module``
the way Once-for-All writes its subnets (``ofa/utils/layers.py``, ``ofa/imagenet_
classification/networks/proxyless_nets.py`` and ``mobilenet_v3.py``):

* ``ConvLayer``: ``Conv2d(bias=False)`` -> ``BatchNorm2d`` -> activation (``weight_bn_act``);
* ``MBConvLayer``: ``inverted_bottleneck`` / ``depth_conv`` / ``point_linear`` sequentials of
  conv -> BN (-> activation), OFA's ``SEModule`` after the depthwise conv;
* ``ReLU6(inplace=True)``; OFA's ``Hswish`` / ``Hsigmoid`` (``x * relu6(x + 3) / 6``, not
  ``nn.Hardswish``); the global pooling is ``MyGlobalAvgPool2d``: ``x.mean(3).mean(2)``;
* ``ResidualBlock``: ``conv(x) + shortcut(x)`` with an identity shortcut;

in ``eval()`` mode with random BatchNorm statistics (so BN is a real affine op, not the
identity). :func:`export_onnx` exports it with ``torch.onnx.export(module, x, f)`` and
nothing else — no simplifier, no graph rewrite: what a researcher's export leaves to the
runtime (in ``eval()`` the exporter itself folds BatchNorm into the convs; see
docs/tables.md). Torch is imported here only (this module is loaded where such networks
are built, never by the SDK).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import onnx
import torch
import torch.nn.functional as F
from torch import nn

from latencylab.spaces.base import Arch, Block, SearchSpace

SUPPORTED = ("ofa-proxyless", "ofa-mbv3")
"""Spaces with a reference implementation here (FBNet's reference is not OFA's code)."""
OPSET = 17
"""The opset of the generated networks (``converters.blocks``), so only the graphs differ."""


class Hswish(nn.Module):
    """OFA's ``Hswish``: ``x * relu6(x + 3) / 6``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * F.relu6(x + 3.0, inplace=True) / 6.0


class Hsigmoid(nn.Module):
    """OFA's ``Hsigmoid``: ``relu6(x + 3) / 6``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x + 3.0, inplace=True) / 6.0


class GlobalAvgPool(nn.Module):
    """OFA's ``MyGlobalAvgPool2d``: ``x.mean(3, keepdim).mean(2, keepdim)``."""

    def __init__(self, keep_dim: bool = True) -> None:
        super().__init__()
        self.keep_dim = keep_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(3, keepdim=self.keep_dim).mean(2, keepdim=self.keep_dim)


def _act(name: str) -> nn.Module | None:
    acts: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "relu6": nn.ReLU6, "h_swish": Hswish}
    if name == "none":
        return None
    if name not in acts:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(acts)}, none")
    return acts[name](inplace=True) if name != "h_swish" else Hswish()


def _conv_bn_act(
    cin: int, cout: int, k: int, stride: int, groups: int, act: str, bn: bool, bias: bool
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=bias and not bn)
    ]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    if (a := _act(act)) is not None:
        layers.append(a)
    return nn.Sequential(*layers)


class SEModule(nn.Module):
    """OFA's ``SEModule``: pool, reduce (bias), ReLU, expand (bias), Hsigmoid, scale."""

    def __init__(self, channels: int, mid: int) -> None:
        super().__init__()
        self.fc = nn.Sequential(
            nn.Conv2d(channels, mid, 1, bias=True),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, channels, 1, bias=True),
            Hsigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.mean(3, keepdim=True).mean(2, keepdim=True)
        return x * self.fc(y)


class MBConvLayer(nn.Module):
    """OFA's ``MBConvLayer`` (inverted bottleneck, depthwise conv, SE, linear projection)."""

    def __init__(self, b: Block) -> None:
        super().__init__()
        cin, cout, mid = b.in_shape[2], b.out_shape[2], b.mid
        self.inverted_bottleneck = (
            _conv_bn_act(cin, mid, 1, 1, 1, b.act, True, False) if b.expand_conv else None
        )
        dw = _conv_bn_act(mid, mid, b.kernel, b.stride, mid, b.act, True, False)
        if b.se:
            dw.add_module("se", SEModule(mid, b.se_mid))
        self.depth_conv = dw
        self.point_linear = _conv_bn_act(mid, cout, 1, 1, 1, "none", True, False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inverted_bottleneck is not None:
            x = self.inverted_bottleneck(x)
        return self.point_linear(self.depth_conv(x))


class ResidualBlock(nn.Module):
    """OFA's ``ResidualBlock``: ``conv(x) + x`` when the block has an identity skip."""

    def __init__(self, conv: nn.Module, skip: bool) -> None:
        super().__init__()
        self.conv, self.skip = conv, skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y + x if self.skip else y


class Classifier(nn.Module):
    """OFA's ``LinearLayer`` after the pooling (dropout is training-only)."""

    def __init__(self, b: Block, pool: bool) -> None:
        super().__init__()
        self.pool = GlobalAvgPool(keep_dim=False) if pool else None
        self.linear = nn.Linear(b.in_shape[2], b.out_shape[2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(x) if self.pool is not None else torch.flatten(x, 1)
        return self.linear(x)


def _layer(b: Block) -> nn.Module:
    cin, cout = b.in_shape[2], b.out_shape[2]
    if b.kind in ("mbconv", "first_mbconv"):
        return ResidualBlock(MBConvLayer(b), b.skip)
    if b.kind in ("stem", "final_expand", "feature_mix"):
        return _conv_bn_act(cin, cout, b.kernel, b.stride, b.groups, b.act, b.bn, b.bias)
    if b.kind == "pool":
        return GlobalAvgPool(keep_dim=True)
    if b.kind == "head":
        return Classifier(b, pool=b.in_shape[:2] != (1, 1))
    raise ValueError(f"no reference layer for block kind {b.kind!r}")


def _randomize_bn(module: nn.Module, gen: torch.Generator) -> None:
    """Trained-looking BatchNorm statistics (the identity BN of a fresh module would let an
    optimizer drop it; a trained one never is the identity)."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            assert m.running_mean is not None and m.running_var is not None
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.05)
            m.running_var.copy_(torch.rand(n, generator=gen) * 0.4 + 0.8)
            m.weight.data.copy_(torch.rand(n, generator=gen) * 0.4 + 0.8)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.05)


def reference_module(
    space: SearchSpace, arch: Arch, resolution: int | None = None, seed: int = 0
) -> nn.Module:
    """``arch`` of ``space`` as an ``nn.Module`` written like OFA's subnets, in eval mode."""
    if space.name not in SUPPORTED:
        raise ValueError(
            f"{space.name}: no reference PyTorch implementation here; supported: "
            f"{', '.join(SUPPORTED)}"
        )
    torch.manual_seed(seed)
    blocks = space.blocks_for(arch, resolution)
    net = nn.Sequential(*(_layer(b) for b in blocks if not b.is_noop))
    with torch.no_grad():
        _randomize_bn(net, torch.Generator().manual_seed(seed))
    return net.eval()


def export_onnx(
    module: nn.Module, resolution: int, batch_size: int = 1, meta: dict[str, str] | None = None
) -> onnx.ModelProto:
    """``torch.onnx.export(module, x, f)`` as the reference code's era calls it: the
    TorchScript exporter (``dynamo=False``) with its defaults, opset 17. (The dynamo exporter,
    torch's default since 2.9, writes the same ops — ``ReduceMean`` pooling, written-out
    h-swish, BN folded in eval mode — but took 3-7x longer per network here, and this runs
    while a table's validation job is queued.)"""
    x = torch.randn(batch_size, 3, resolution, resolution)
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        path = Path(tmp) / "net.onnx"
        torch.onnx.export(
            module,
            (x,),
            path,
            input_names=["input"],
            output_names=["output"],
            opset_version=OPSET,
            dynamo=False,
        )
        model = onnx.load(path)
    if meta:
        onnx.helper.set_model_props(model, meta)
    return model


def exported_network(
    space: SearchSpace, arch: Arch, resolution: int, batch_size: int = 1, seed: int = 0
) -> onnx.ModelProto:
    """The reference module of ``arch`` exported to ONNX, with LatencyLab's metadata."""
    meta = {
        "latencylab.space": space.name,
        "latencylab.resolution": str(resolution),
        "latencylab.arch": json.dumps(space.normalize(arch)),
        "latencylab.validation": "exported",
    }
    return export_onnx(
        reference_module(space, arch, resolution, seed), resolution, batch_size, meta
    )


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    """``{op_type: count}`` of a graph (to compare generated and exported networks)."""
    out: dict[str, Any] = {}
    for node in model.graph.node:
        out[node.op_type] = out.get(node.op_type, 0) + 1
    return dict(sorted(out.items()))
