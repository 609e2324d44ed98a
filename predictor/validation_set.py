"""Held-out whole networks a predictor is validated on (never trained on).

Real architectures from `predictor.archs` (MobileNetV2/V3, ResNet-18/50, EfficientNet-B0,
ConvNeXt, RegNetY, GhostNet, DeiT-tiny/small; random weights) at ``resolution`` with a
width multiplier drawn per network from ``seed`` (0.75-1.25, so they differ from the
1.0-wide models whose kernels seed the sampling) and BatchNorm folded or left in at
random; and ``n_random`` random networks from each NAS space (``ofa-proxyless``,
``ofa-mbv3``, ``fbnet``; `converters.blocks.network_model`), at the space's allowed
resolution nearest ``resolution`` (fbnet allows 224 only).
"""

from __future__ import annotations

import random

import onnx
from pydantic import BaseModel, ConfigDict

from converters.blocks import network_model
from latencylab.spaces import get_space
from predictor.archs import ARCHS

SPACES = ("ofa-proxyless", "ofa-mbv3", "fbnet")


class ValidationNetwork(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    name: str
    family: str
    model: onnx.ModelProto


def validation_networks(
    seed: int, resolution: int = 160, n_random: int = 2, archs: list[str] | None = None
) -> list[ValidationNetwork]:
    """The validation set (see the module docstring); same arguments, same networks."""
    rng = random.Random(f"validation:{seed}")
    out: list[ValidationNetwork] = []
    for name in archs or list(ARCHS):
        fam, build, kw = ARCHS[name]
        width = round(rng.uniform(0.75, 1.25), 2)
        bn = rng.random() < 0.5
        model = build(resolution, width, bn=bn, seed=rng.randrange(2**31), **kw)
        tag = f"{name}-w{width}-r{resolution}" + ("-bn" if bn else "")
        out.append(ValidationNetwork(name=tag, family=fam, model=model))
    for space_name in SPACES:
        space = get_space(space_name)
        res = min(space.resolutions, key=lambda r: abs(r - resolution))
        for i in range(n_random):
            model = network_model(space, space.sample(rng), res, seed=rng.randrange(2**31))
            out.append(
                ValidationNetwork(name=f"{space_name}-{i}-r{res}", family=space_name, model=model)
            )
    return out


def calibration_networks(
    seed: int = 0, n_random: int = 2, resolutions: tuple[int, ...] = (224,)
) -> list[ValidationNetwork]:
    """Networks to fit a `predictor.calibration.Calibration` on, disjoint from
    `validation_networks`: the reference architectures at width 1.0 and each of
    ``resolutions`` (BatchNorm in every other one; at 224 px: the models whose kernels seed
    the sampling, `predictor.sampling.real_configs`) and ``n_random`` NAS-space networks
    of their own seed at 224 px."""
    out = [
        ValidationNetwork(
            name=f"{name}-w1.0-r{res}" + ("-bn" if i % 2 else ""), family=fam,
            model=build(res, 1.0, bn=bool(i % 2), seed=1, **kw),
        )
        for res in resolutions
        for i, (name, (fam, build, kw)) in enumerate(ARCHS.items())
    ]  # fmt: skip
    rng = random.Random(f"calibration:{seed}")
    for space_name in SPACES:
        space = get_space(space_name)
        res = 224 if 224 in space.resolutions else max(space.resolutions)
        for i in range(n_random):
            model = network_model(space, space.sample(rng), res, seed=rng.randrange(2**31))
            out.append(
                ValidationNetwork(
                    name=f"{space_name}-cal{i}-r{res}", family=space_name, model=model
                )
            )
    return out
