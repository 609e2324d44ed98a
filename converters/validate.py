"""Numerical validation of a converted artifact against a reference on seeded inputs.

The reference is ONNX Runtime on the source ONNX model, or the torch program itself for a
``.pt2`` source. Inputs are drawn from ``numpy.random.default_rng(seed)`` with the source's
(concrete) shapes and transposed per the artifact metadata's ``perm`` (e.g. NCHW -> NHWC
for onnx2tf); artifact outputs are transposed back before comparing. How an artifact runs, or
why it is not validated here, is declared with its runtime (``latencylab.runtimes``:
``artifact_runner`` in ``converters.inference``, ``not_validated``).

Errors, per output: ``abs = max|y - ref|`` and ``rel = abs / max|ref|`` (relative to the
output's range, which stays meaningful where individual reference values are near zero).
An output passes when ``rel <= rtol`` or ``abs <= atol``. Tolerances per precision:

* fp32 (1e-4): kernels differ only in summation order/algorithm (XNNPACK, oneDNN, Winograd);
  float32 round-off accumulated over a few dozen layers stays ~1e-6..1e-5 of the range.
* fp16 (1e-2): fp16 has a 2^-11 (~4.9e-4) unit round-off; weights (and on some backends
  activations) rounded to fp16 through tens of layers accumulate to ~1e-3..5e-3.
* int8 is judged by SQNR instead (``converters.metrics``), over ``SAMPLES["int8"]`` (8)
  seeded inputs (``seed``, then ``seed + 101`` ...): every output needs
  ``SQNR >= INT8_MIN_SQNR_DB`` (15 dB: error RMS below 18% of the output's RMS).
  Quantization error scales with the output's range, so a fixed absolute tolerance failed
  sound artifacts with large outputs (the bench MobileNetV2 layout at 96 px, width 0.35:
  max abs 0.7-0.8, max rel 0.11-0.14 from ONNX and from .pt2, at SQNR 19.7 / 20.3 dB) and
  passed anything on a net whose outputs are tiny (1e-9 logits). Measured
  (docs/conversions.md): sound artifacts score 16-75 dB (TFLite dynamic-range int8 >= 35 dB
  on the zoo; ExecuTorch static int8 16-20 dB on ViT/DeiT); broken ones -5..10 dB (another
  seed's weights) and -1.5..6 dB (H/W swapped or BGR input) wherever the output depends on
  the input. Top-1 agreement is reported, not decisive: with random weights the top logits
  are near ties (a 42 dB artifact agreed on 6 of 8 inputs) or input-independent (anything
  keeping the bias agrees on all).

Beside the errors every output gets PSNR (as Qualcomm AI Hub's inference jobs report it),
SQNR and, for 2-D class scores, top-1 agreement; the record keeps the lowest of each.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from converters.base import Artifact
from converters.bridge import seeded_inputs
from converters.inspect import inspect_model, load_pt2, model_format
from converters.metrics import psnr_db, sqnr_db, top1_agreement
from latencylab.runtimes import RUNTIMES

TOLERANCES: dict[str, dict[str, float]] = {
    "fp32": {"rtol": 1e-4, "atol": 1e-4},
    "fp16": {"rtol": 1e-2, "atol": 1e-2},
    "int8": {"rtol": 1e-1, "atol": 1e-1},
}
# int8 is judged by SQNR, not by abs/rel error (see the module docstring).
INT8_MIN_SQNR_DB = 15.0
SAMPLES: dict[str, int] = {"int8": 8}  # seeded inputs per validation (others: 1)
# Sample k >= 1 uses seed + SAMPLE_SEED_OFFSET + k: clear of the seeds 1-8 ExecuTorch's int8
# calibration draws, so no artifact is judged on the data it was calibrated on.
SAMPLE_SEED_OFFSET = 100
PASS_RULES: dict[str, str] = {
    "fp32": f"max rel err <= {TOLERANCES['fp32']['rtol']:g} or max abs err <= {TOLERANCES['fp32']['atol']:g}",
    "fp16": f"max rel err <= {TOLERANCES['fp16']['rtol']:g} or max abs err <= {TOLERANCES['fp16']['atol']:g}",
    "int8": f"SQNR >= {INT8_MIN_SQNR_DB:g} dB on every output, over {SAMPLES['int8']} seeded inputs",
}


def load_artifact(path: str | Path) -> Artifact:
    """Rebuild an ``Artifact`` from its path and ``.meta.json`` sidecar."""
    path = Path(path)
    meta = json.loads(path.with_name(path.name + ".meta.json").read_text())
    return Artifact(path, meta.pop("format"), meta.pop("precision"), meta)


def reference_outputs(source: str | Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    if model_format(source) == "onnx":
        import onnxruntime as ort

        sess = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
        return [np.asarray(o) for o in sess.run(None, feeds)]
    import torch

    ep = load_pt2(source)
    names = [n for n in ep.graph_signature.user_inputs]
    with torch.no_grad():
        out = ep.module()(*[torch.from_numpy(feeds[n]) for n in names])
    outs = out if isinstance(out, (list, tuple)) else [out]
    return [o.detach().numpy() for o in outs]


def run_artifact(art: Artifact, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run the artifact on feeds keyed by artifact input names; outputs in metadata order,
    with the function its format's runtime declaration names (``converters.inference``)."""
    decl = RUNTIMES.by_format(art.format)
    if decl is None or decl.artifact_runner is None:
        raise NotImplementedError(f"no artifact runner is declared for format {art.format!r}")
    module, _, func = decl.artifact_runner.partition(":")
    run: Callable[[Artifact, dict[str, np.ndarray]], list[np.ndarray]] = getattr(
        importlib.import_module(module), func
    )
    return run(art, feeds)


def compare(ref: np.ndarray, got: np.ndarray, precision: str) -> dict[str, Any]:
    """Errors and scale-aware measures of one output (samples concatenated on axis 0), and
    whether it passes: by SQNR for int8 (``INT8_MIN_SQNR_DB``), by abs/rel error otherwise."""
    tol = TOLERANCES[precision]
    none = {"sqnr_db": None, "psnr_db": None, "top1_agreement": None}
    if ref.shape != got.shape:
        return {
            "max_abs_err": None,
            "max_rel_err": None,
            **none,
            "passed": False,
            "note": f"shape mismatch: reference {list(ref.shape)} vs artifact {list(got.shape)}",
        }
    r, g = ref.astype(np.float64), got.astype(np.float64)
    if r.size == 0:
        return {
            "max_abs_err": 0.0,
            "max_rel_err": 0.0,
            **none,
            "passed": True,
            "note": "empty output",
        }
    if not np.all(np.isfinite(g)):
        return {
            "max_abs_err": float("inf"),
            "max_rel_err": float("inf"),
            **none,
            "passed": False,
            "note": "non-finite values",
        }
    abs_err = float(np.max(np.abs(r - g)))
    rel_err = abs_err / max(float(np.max(np.abs(r))), 1e-12)
    sqnr = sqnr_db(r, g)
    passed = (
        sqnr >= INT8_MIN_SQNR_DB
        if precision == "int8"
        else rel_err <= tol["rtol"] or abs_err <= tol["atol"]
    )
    return {
        "max_abs_err": abs_err,
        "max_rel_err": rel_err,
        "sqnr_db": sqnr,
        "psnr_db": psnr_db(r, g),
        "top1_agreement": top1_agreement(r, g),
        "passed": bool(passed),
        "note": "",
    }


def _joined(arrays: list[np.ndarray]) -> np.ndarray:
    """One output over the seeded samples, concatenated on the batch axis."""
    return np.concatenate([np.atleast_1d(a) for a in arrays], axis=0)


def _run_on(art: Artifact, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The artifact on the source's feeds: inputs transposed and cast per its metadata,
    outputs transposed back to the source's layout."""
    art_feeds = {}
    for entry in art.metadata["inputs"]:
        x = feeds[entry["source_name"]]
        if entry.get("perm"):
            x = np.ascontiguousarray(x.transpose(entry["perm"]))
        art_feeds[entry["name"]] = (
            x.astype(np.dtype(entry["dtype"]))
            if entry.get("dtype") in ("float32", "float16", "int64", "int32", "bool")
            else x
        )
    got = run_artifact(art, art_feeds)
    for i, entry in enumerate(art.metadata["outputs"][: len(got)]):
        if entry.get("perm"):
            got[i] = got[i].transpose(np.argsort(entry["perm"]))
    return got


def validate(
    artifact: Artifact | str | Path,
    source: str | Path,
    *,
    seed: int = 0,
    input_shapes: dict[str, list[int]] | None = None,
) -> dict[str, Any]:
    """Compare ``artifact`` with the reference of ``source``; returns the validation record."""
    art = artifact if isinstance(artifact, Artifact) else load_artifact(artifact)
    n_samples = SAMPLES.get(art.precision, 1)
    base = {
        "max_abs_err": None,
        "max_rel_err": None,
        "sqnr_db": None,
        "psnr_db": None,
        "top1_agreement": None,
        "passed": None,
        "precision": art.precision,
        "tolerance": TOLERANCES.get(art.precision),
        "criterion": PASS_RULES.get(art.precision),
        "seed": seed,
        "samples": n_samples,
    }
    decl = RUNTIMES.by_format(art.format)
    if decl is not None and decl.not_validated:
        return {**base, "note": decl.not_validated}
    info = inspect_model(source)
    shapes = dict(input_shapes or {})
    for entry in art.metadata["inputs"]:  # artifact input shapes are concrete for static targets
        src_name = entry["source_name"]
        if (
            src_name not in shapes
            and entry.get("perm") is None
            and all(isinstance(d, int) and d > 0 for d in entry["shape"])
        ):
            shapes[src_name] = entry["shape"]
    notes = []
    specs = []
    for t in info.inputs:
        shape = shapes.get(t.name) or [d if isinstance(d, int) else 1 for d in t.shape]
        if t.name not in shapes and t.symbolic_dims:
            notes.append(f"dynamic dims of {t.name!r} set to 1")
        specs.append((t.name, list(shape), t.dtype))
    refs, gots = [], []
    for k in range(n_samples):  # seeds seed, seed + 101, seed + 102, ...
        feeds = seeded_inputs(specs, seed + (SAMPLE_SEED_OFFSET + k if k else 0))
        refs.append(reference_outputs(source, feeds))
        gots.append(_run_on(art, feeds))
    ref, got = refs[0], gots[0]
    per_output = []
    for i, entry in enumerate(art.metadata["outputs"][: min(len(ref), len(got))]):
        r_all, g_all = [x[i] for x in refs], [x[i] for x in gots]
        same = all(r.shape == g.shape for r, g in zip(r_all, g_all, strict=True))
        rec = (
            compare(_joined(r_all), _joined(g_all), art.precision)
            if same
            else compare(r_all[0], g_all[0], art.precision)
        )
        if same and n_samples > 1 and rec["sqnr_db"] is not None:
            # What an artifact that ignored its input would score: the reference against
            # itself on the next seeded input. Random-weight nets often sit at 50+ dB here.
            rec["sqnr_across_inputs_db"] = sqnr_db(_joined(r_all[:-1]), _joined(r_all[1:]))
            if rec["sqnr_db"] <= rec["sqnr_across_inputs_db"]:
                notes.append(
                    f"{entry['source_name']}: the reference's outputs for different inputs are "
                    f"{rec['sqnr_across_inputs_db']:.0f} dB apart, the artifact's "
                    f"{rec['sqnr_db']:.0f} dB from them: on this model the check cannot tell an "
                    "artifact that ignores its input (random weights?)"
                )
        per_output.append({"name": entry["source_name"], **rec})
    if len(got) != len(ref):
        notes.append(f"artifact has {len(got)} outputs, reference {len(ref)}")
    errs = [p for p in per_output if p["max_abs_err"] is not None]

    def lowest(key: str) -> float | None:
        return min((p[key] for p in per_output if p[key] is not None), default=None)

    result = {
        **base,
        "max_abs_err": max((p["max_abs_err"] for p in errs), default=None),
        "max_rel_err": max((p["max_rel_err"] for p in errs), default=None),
        "sqnr_db": lowest("sqnr_db"),
        "psnr_db": lowest("psnr_db"),
        "top1_agreement": lowest("top1_agreement"),
        "passed": bool(per_output)
        and len(got) == len(ref)
        and all(p["passed"] for p in per_output),
        "per_output": per_output,
    }
    notes += [f"{p['name']}: {p['note']}" for p in per_output if p["note"]]
    if any(e.get("perm") for e in art.metadata["inputs"] + art.metadata["outputs"]):
        notes.append("channel-last layout: tensors transposed per metadata perm")
    result["note"] = "; ".join(notes)
    return result
