"""The predictor on exported networks: the validation set's NAS archs exported from PyTorch.

`bench.predictor` ``--exported N`` (default 2): the first ``N`` random networks per NAS
space of the validation set (`predictor.validation_set.validation_networks`) whose space
has a reference PyTorch implementation (`converters.torch_reference.SUPPORTED`:
ofa-proxyless, ofa-mbv3; FBNet has none) are rebuilt from the arch the generated network
carries in its metadata, as the module written like Once-for-All's code, exported with
``torch.onnx.export`` (`converters.torch_reference.exported_network`, what
`bench.table_exported` times) and that export normalised (`converters.onnx_normalize`).
Each is measured end to end like the other validation networks (the caller's ``measure``)
and scored by the predictor beside the generated network of the same arch: per network
predicted / measured, per group (``<space>/<kind>``, kind ``generated``, ``exported``,
``normalized``) acc10 / RMSPE (`predictor.accuracy.score`), and the detected kernel types
the exported graphs have that the generated one does not (or lacks): where a systematic
error comes from.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from collections.abc import Callable
from typing import Any

import onnx

from converters.onnx_normalize import normalize
from converters.torch_reference import SUPPORTED, exported_network
from latencylab.spaces import get_space
from predictor.accuracy import score
from predictor.bundle import PredictorBundle
from predictor.detect import detect_kernels
from predictor.fusion import FusionRules
from predictor.validation_set import ValidationNetwork, validation_networks

KINDS = ("generated", "exported", "normalized")
Measure = Callable[[ValidationNetwork, str], float | None]
"""(network, cache key) -> measured ms, one fresh process, the standard protocol."""


def exported_variants(
    seed: int, resolution: int, n_random: int, n: int
) -> list[tuple[str, dict[str, ValidationNetwork], dict[str, int]]]:
    """``(name, {kind: network}, normalize's rewrites)`` for the first ``n`` (at most
    ``n_random``) NAS networks per supported space of ``validation_networks(seed,
    resolution, n_random)``: the generated network itself, its arch exported, normalised."""
    out = []
    per_space: Counter[str] = Counter()
    for net in validation_networks(seed, resolution, n_random):
        if net.family not in SUPPORTED or per_space[net.family] >= n:
            continue
        per_space[net.family] += 1
        meta = {p.key: p.value for p in net.model.metadata_props}
        space = get_space(meta["latencylab.space"])
        res, arch = int(meta["latencylab.resolution"]), json.loads(meta["latencylab.arch"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            exp = exported_network(space, arch, res)
        norm, rewrites = normalize(exp)
        kinds: dict[str, onnx.ModelProto] = {"generated": net.model, "exported": exp}
        kinds["normalized"] = norm
        nets = {
            k: ValidationNetwork(name=f"{k}:{net.name}", family=f"{net.family}/{k}", model=m)
            for k, m in kinds.items()
        }
        out.append((net.name, nets, rewrites))
    return out


def kernel_types(model: onnx.ModelProto, rules: FusionRules) -> Counter[str]:
    """How many kernels of each detected type ``model`` has under ``rules``."""
    return Counter(k.type for k in detect_kernels(model, rules).kernels)


def validate_exported(
    bundle: PredictorBundle,
    measure: Measure,
    seed: int,
    resolution: int,
    n_random: int,
    n: int,
) -> dict[str, Any]:
    """Predicted and measured latency of each arch's three kinds, scored per group."""
    rows: list[tuple[str, float, float]] = []
    per_net: list[dict[str, Any]] = []
    for name, nets, rewrites in exported_variants(seed, resolution, n_random, n):
        entry: dict[str, Any] = {"name": name, "rewrites": rewrites}
        types = {k: kernel_types(v.model, bundle.rules) for k, v in nets.items()}
        for kind, net in nets.items():
            # the generated network is the validation set's own: same cache key as validate()
            measured = measure(net, name if kind == "generated" else net.name)
            pred = bundle.predict_onnx(net.model).latency_ms
            entry[kind] = {"predicted_ms": pred, "measured_ms": measured}
            if kind != "generated":
                entry[kind]["kernels_not_in_generated"] = dict(types[kind] - types["generated"])
                entry[kind]["generated_kernels_missing"] = dict(types["generated"] - types[kind])
            if measured is None:
                print(f"  {net.name}: measurement failed")
                continue
            rows.append((net.family, pred, measured))
            print(
                f"  {net.name:40s} predicted {pred:7.2f} ms  measured {measured:7.2f} ms  "
                f"{100 * (pred / measured - 1):+6.1f}%",
                flush=True,
            )
        per_net.append(entry)
    acc = score(rows).model_dump() if rows else None
    if acc:
        print(f"\n[exported] {'group':28s} {'n':>3s} {'acc10':>6s} {'RMSPE':>6s} {'mean':>7s}")
        for group, a in acc["families"].items():
            print(
                f"           {group:28s} {a['n']:3d} {a['acc10']:6.0%} {a['rmspe']:6.1%} "
                f"{a['mean_error']:+7.1%}"
            )
    return {"networks": per_net, "accuracy": acc}
