"""Conversion benchmark: time every conversion path on models built in code, with the
numerical validation error of each, every conversion in its own isolated subprocess
(``converters.run.convert_isolated``, as the converter worker runs it).

    python -m bench.conversion [--models mobilenet_v2 resnet efficientnet vit] [--quick]

Writes ``bench/results/conversion.json`` and prints a table.

    python -m bench.conversion --matrix [--models ...] [--write-docs]

The coverage matrix instead (``bench.coverage``): every zoo architecture x source format
(ONNX from TorchScript, ONNX from dynamo, ``.pt2``) x target x precision, converted and
validated; writes ``bench/results/coverage.json`` and, with ``--write-docs``, the matrix in
docs/conversions.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path
from typing import Any

from agents.measure.environment import cpu_model
from bench import coverage

RESULTS = Path(__file__).resolve().parent / "results"
PATHS: list[tuple[str, str, str]] = [  # (source format, target, precision)
    ("pt2", "onnx", "fp32"),
    ("onnx", "tflite", "fp32"),
    ("onnx", "tflite", "fp16"),
    ("onnx", "tflite", "int8"),
    ("pt2", "tflite", "fp32"),
    ("onnx", "openvino", "fp32"),
    ("onnx", "openvino", "fp16"),
    ("onnx", "coreml", "fp16"),
    ("pt2", "coreml", "fp32"),
]


def main() -> None:
    from converters import zoo
    from converters.run import ConversionRequest, convert_isolated

    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--models", nargs="+", help="zoo models (default: four, or all with --matrix)")
    ap.add_argument("--quick", action="store_true", help="fp32 paths only")
    ap.add_argument("--out", type=Path, help="report path (default: bench/results/...)")
    ap.add_argument("--matrix", action="store_true", help="the coverage matrix (bench.coverage)")
    ap.add_argument("--write-docs", action="store_true", help="with --matrix: update the doc")
    ap.add_argument("--timeout-s", type=float, default=coverage.GROUP_TIMEOUT_S)
    args = ap.parse_args()
    if args.matrix:
        report = coverage.run_matrix(args.models or list(zoo.FAMILIES), args.timeout_s)
        out = args.out or RESULTS / "coverage.json"
        out.write_text(json.dumps(report, indent=1) + "\n")
        if args.write_docs:
            coverage.write_docs(report)
        print(f"report: {out} ({report['wall_s']:.0f} s)")
        return
    args.models = args.models or ["mobilenet_v2", "resnet", "efficientnet", "vit"]
    args.out = args.out or RESULTS / "conversion.json"
    paths = [p for p in PATHS if not args.quick or p[2] == "fp32"]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in args.models:
            sources = {
                "pt2": zoo.write_pt2(name, root / f"{name}.pt2"),
                "onnx": zoo.write_onnx(name, root / f"{name}.onnx"),
            }
            for fmt, target, precision in paths:
                req = ConversionRequest(
                    source=str(sources[fmt]), target=target, precision=precision
                )
                res = convert_isolated(req, root / f"{name}-{fmt}-{target}-{precision}")
                v = res.validation or {}
                row = {
                    "model": name,
                    "from": fmt,
                    "to": target,
                    "precision": precision,
                    "status": res.status,
                    "convert_s": res.artifact.convert_seconds if res.artifact else None,
                    "total_s": res.seconds,
                    "size_kb": round((res.artifact.size if res.artifact else 0) / 1024, 1),
                    "max_abs_err": v.get("max_abs_err"),
                    "max_rel_err": v.get("max_rel_err"),
                    "passed": v.get("passed"),
                    "note": v.get("note"),
                    "error": res.error.message if res.error else None,
                }
                rows.append(row)
                err = row["max_rel_err"]
                print(
                    f"{name:13s} {fmt:4s} -> {target:8s} {precision:4s} {row['status']:18s} "
                    f"convert {row['convert_s'] or 0:6.2f} s  total {row['total_s'] or 0:6.2f} s  "
                    f"rel err {err if err is not None else '-'}",
                    flush=True,
                )
    report = {"cpu": cpu_model(), "python": platform.python_version(), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"report: {args.out}")


if __name__ == "__main__":
    main()
