"""Small models with random weights for tests and benchmarks (no downloads).

``MODELS[name]`` gives a ``ZooModel`` with ``build()`` (an ``nn.Module`` in eval mode,
seeded), ``example_inputs()`` and optional ``dynamic_shapes``. ``write_onnx`` / ``write_pt2``
put them on disk (ONNX opset 17 through the dynamo exporter, ``torch.export.save``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from converters.zoo_attention import DeiTTiny, EncoderLayer, MobileViTTiny, SwinTiny
from converters.zoo_convnets import (
    ConvNeXtTiny,
    GhostNetTiny,
    MobileNetV2Like,
    MobileOneTiny,
    RegNetTiny,
    YoloTiny,
)
from converters.zoo_convnets import bn as _bn


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 project (+ residual)."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int = 4) -> None:
        super().__init__()
        mid = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.body = nn.Sequential(
            nn.Conv2d(cin, mid, 1, bias=False),
            _bn(mid),
            nn.ReLU6(),
            nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False),
            _bn(mid),
            nn.ReLU6(),
            nn.Conv2d(mid, cout, 1, bias=False),
            _bn(cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.use_res else y


class MobileNetV2Tiny(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), _bn(16), nn.ReLU6())
        self.blocks = nn.Sequential(
            InvertedResidual(16, 16, 1),
            InvertedResidual(16, 24, 2),
            InvertedResidual(24, 24, 1),
            InvertedResidual(24, 32, 2),
        )
        self.head = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)).mean(dim=(2, 3)))


class SqueezeExcite(nn.Module):
    def __init__(self, c: int, r: int = 4) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, c // r, 1), nn.Conv2d(c // r, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(nn.functional.silu(self.fc1(s))))


class MBConvSE(nn.Module):
    """EfficientNet block: expand, depthwise, squeeze-excite, project, SiLU activations."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int = 4) -> None:
        super().__init__()
        mid = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.expand = nn.Sequential(nn.Conv2d(cin, mid, 1, bias=False), _bn(mid), nn.SiLU())
        self.dw = nn.Sequential(
            nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), _bn(mid), nn.SiLU()
        )
        self.se = SqueezeExcite(mid)
        self.project = nn.Sequential(nn.Conv2d(mid, cout, 1, bias=False), _bn(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.dw(self.expand(x))))
        return x + y if self.use_res else y


class EfficientNetTiny(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), _bn(16), nn.SiLU())
        self.blocks = nn.Sequential(MBConvSE(16, 16, 1), MBConvSE(16, 24, 2), MBConvSE(24, 32, 2))
        self.head = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)).mean(dim=(2, 3)))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), _bn(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), _bn(cout)
        self.down = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _bn(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.down(x))


class ResNetTiny(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, 3, 1, 1, bias=False), _bn(16), nn.ReLU(), nn.MaxPool2d(2)
        )
        self.layers = nn.Sequential(
            BasicBlock(16, 16, 1), BasicBlock(16, 32, 2), BasicBlock(32, 48, 2)
        )
        self.fc = nn.Linear(48, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(
            torch.flatten(nn.functional.adaptive_avg_pool2d(self.layers(self.stem(x)), 1), 1)
        )


class ViTTiny(nn.Module):
    def __init__(
        self, image: int = 32, patch: int = 8, dim: int = 32, depth: int = 2, num_classes: int = 10
    ) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, patch, patch)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, (image // patch) ** 2 + 1, dim) * 0.02)
        self.layers = nn.Sequential(*[EncoderLayer(dim, 4) for _ in range(depth)])
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(t.shape[0], -1, -1), t], dim=1) + self.pos
        return self.head(self.norm(self.layers(t))[:, 0])


class TwoInput(nn.Module):
    """Image + feature vector -> (logits, embedding): two inputs, two outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU()
        )
        self.vec = nn.Linear(12, 16)
        self.head = nn.Linear(32, 5)

    def forward(
        self, image: torch.Tensor, features: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        emb = torch.cat([self.conv(image).mean(dim=(2, 3)), torch.tanh(self.vec(features))], dim=1)
        return self.head(emb), emb


class DynamicBatch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 8, 3, 1, 1), _bn(8), nn.ReLU(), nn.Conv2d(8, 8, 3, 2, 1)
        )
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.net(x).mean(dim=(2, 3)))


@dataclass(frozen=True)
class ZooModel:
    name: str
    factory: Callable[[], nn.Module]
    input_shapes: dict[str, tuple[int, ...]]
    dynamic_batch: bool = False

    def build(self, seed: int = 0) -> nn.Module:
        torch.manual_seed(seed)
        return self.factory().eval()

    def example_inputs(self, seed: int = 0) -> tuple[torch.Tensor, ...]:
        g = torch.Generator().manual_seed(seed)
        return tuple(torch.randn(*s, generator=g) for s in self.input_shapes.values())

    def dynamic_shapes(self) -> tuple[dict[int, Any], ...] | None:
        if not self.dynamic_batch:
            return None
        batch = torch.export.Dim("batch", min=1, max=64)
        return tuple({0: batch} for _ in self.input_shapes)

    def export(self, seed: int = 0) -> Any:
        return torch.export.export(
            self.build(seed), self.example_inputs(seed), dynamic_shapes=self.dynamic_shapes()
        )


MODELS: dict[str, ZooModel] = {
    m.name: m
    for m in [
        ZooModel("mobilenet_v2", MobileNetV2Tiny, {"x": (1, 3, 64, 64)}),
        ZooModel("efficientnet", EfficientNetTiny, {"x": (1, 3, 64, 64)}),
        ZooModel("resnet", ResNetTiny, {"x": (1, 3, 64, 64)}),
        ZooModel("vit", ViTTiny, {"x": (1, 3, 32, 32)}),
        ZooModel("two_input", TwoInput, {"image": (1, 3, 32, 32), "features": (1, 12)}),
        ZooModel("dynamic_batch", DynamicBatch, {"x": (2, 3, 32, 32)}, dynamic_batch=True),
        ZooModel("deit", DeiTTiny, {"x": (1, 3, 32, 32)}),
        ZooModel("swin", SwinTiny, {"x": (1, 3, 64, 64)}),
        ZooModel("mobilevit", MobileViTTiny, {"x": (1, 3, 64, 64)}),
        ZooModel("convnext", ConvNeXtTiny, {"x": (1, 3, 64, 64)}),
        ZooModel("regnet", RegNetTiny, {"x": (1, 3, 64, 64)}),
        ZooModel("ghostnet", GhostNetTiny, {"x": (1, 3, 64, 64)}),
        ZooModel("mobileone", MobileOneTiny, {"x": (1, 3, 64, 64)}),
        ZooModel("yolo", YoloTiny, {"x": (1, 3, 64, 64)}),
        ZooModel("mobilenet_v2_like", MobileNetV2Like, {"x": (1, 3, 96, 96)}),
    ]
}
# One model per architecture family, for the coverage matrix (docs/conversions.md).
FAMILIES: dict[str, str] = {
    "mobilenet_v2": "MobileNetV2",
    "resnet": "ResNet",
    "efficientnet": "EfficientNet",
    "vit": "ViT",
    "deit": "DeiT",
    "swin": "Swin",
    "mobilevit": "MobileViT",
    "convnext": "ConvNeXt",
    "regnet": "RegNetY",
    "ghostnet": "GhostNet",
    "mobileone": "MobileOne (re-parameterised)",
    "yolo": "YOLO-style detector",
    "mobilenet_v2_like": "MobileNetV2 (full layout, BN folded, 96 px)",
}


def write_pt2(name: str, path: str | Path, seed: int = 0) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(MODELS[name].export(seed), str(path))
    return path


def write_onnx(
    name: str, path: str | Path, opset: int = 17, seed: int = 0, exporter: str = "dynamo"
) -> Path:
    """ONNX file of a zoo model. ``exporter="torchscript"`` (the legacy exporter) writes
    opsets that the dynamo exporter cannot down-convert to (e.g. 13), for fixtures of older
    user uploads."""
    from converters.onnx_steps import export_onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    z = MODELS[name]
    if exporter == "torchscript":
        names = list(z.input_shapes)
        axes = {n: {0: "batch"} for n in names} if z.dynamic_batch else None
        torch.onnx.export(
            z.build(seed),
            z.example_inputs(seed),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=names,
            dynamic_axes=axes,
        )
    else:
        export_onnx(z.export(seed), z.example_inputs(seed), path, opset)
    return path
