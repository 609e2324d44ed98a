"""Coverage matrix: every zoo architecture x source format x target x precision, converted
and validated as the converter worker does it (``converters.run.worker``).

    python -m bench.conversion --matrix [--models vit swin] [--write-docs]

Sources: ``onnx-torchscript`` (``torch.onnx.export(dynamo=False)``, opset 17),
``onnx-dynamo`` (the dynamo exporter, opset 17) and ``pt2`` (``torch.export.save``). Each
(architecture, source) runs in its own subprocess (``python -m bench.coverage --group``) with
a timeout, its conversions one after another in that process (one import of the toolchains
instead of one per conversion); a crash or a timeout fails the cells it had not finished.
Writes ``bench/results/coverage.json``; ``--write-docs`` rewrites the section of
``docs/conversions.md`` between ``<!-- coverage:start -->`` and ``<!-- coverage:end -->``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
DOC = REPO / "docs" / "conversions.md"
START, END = "<!-- coverage:start -->", "<!-- coverage:end -->"
SOURCES = ("onnx-torchscript", "onnx-dynamo", "pt2")
PRECISIONS = ("fp32", "fp16", "int8")
TENSORRT_SKIP = (
    "TensorRT engines are built and validated on the GPU agent that runs them, and this host "
    "has no NVIDIA GPU"
)
GROUP_TIMEOUT_S = 3600
COLUMN_ORDER = ("onnx", "tflite", "openvino", "coreml", "executorch", "tensorrt")
PACKAGES: tuple[str, ...] = (
    "torch",
    "onnx",
    "onnxruntime",
    "onnxsim",
    "onnx2torch",
    "litert-torch",
)
PACKAGES += ("ai-edge-litert", "openvino", "coremltools", "executorch")


def write_source(model: str, source: str, path: Path) -> Path:
    from converters import zoo

    if source == "pt2":
        return zoo.write_pt2(model, path.with_suffix(".pt2"))
    exporter = "torchscript" if source == "onnx-torchscript" else "dynamo"
    return zoo.write_onnx(model, path.with_suffix(".onnx"), exporter=exporter)


def cells(source_path: Path) -> list[tuple[str, str]]:
    """(target, precision) pairs a step exists for, from this source's format."""
    from converters.errors import ConversionInputError
    from converters.plan import TARGETS, build_step

    out = []
    for target in TARGETS:
        for precision in PRECISIONS:
            try:
                build_step(source_path, target, precision=precision)  # lazy: checks only
            except ConversionInputError:
                continue
            out.append((target, precision))
    return out


def _row(model: str, source: str, target: str, precision: str, **fields: Any) -> dict[str, Any]:
    return {"model": model, "source": source, "target": target, "precision": precision, **fields}


def run_group(
    model: str, source: str, workdir: Path, emit: Callable[[dict[str, Any]], None]
) -> None:
    """Export ``model`` as ``source`` and convert it to every cell, emitting a row each."""
    from converters.run import ConversionRequest, worker

    t0 = time.perf_counter()
    try:
        src = write_source(model, source, workdir / model)
    except Exception as exc:
        emit(_row(model, source, "*", "*", status="failed", reason=f"export: {exc}"[:600]))
        return
    emit(
        _row(model, source, "source", "-", status="ok", seconds=round(time.perf_counter() - t0, 2))
    )
    for target, precision in cells(src):
        if target == "tensorrt":  # one cell for all its precisions
            if precision == PRECISIONS[0]:
                emit(_row(model, source, target, "any", status="skipped", reason=TENSORRT_SKIP))
            continue
        t0 = time.perf_counter()
        out_dir = workdir / f"{target}-{precision}"
        req = ConversionRequest(
            source=str(src), target=target, precision=precision, out_dir=str(out_dir)
        )
        res = worker(req)
        row = _row(model, source, target, precision, seconds=round(time.perf_counter() - t0, 2))
        v = res.validation or {}
        meta: dict[str, Any] = {}
        if res.artifact is not None:
            meta = json.loads(Path(res.artifact.metadata_path).read_text())
        row.update(
            backend=meta.get("backend"),
            fallback_from=(meta.get("fallback_from") or {}).get("error"),
            simplify=meta.get("simplify"),
            **{k: v.get(k) for k in ("max_abs_err", "max_rel_err", "sqnr_db", "psnr_db")},
            top1_agreement=v.get("top1_agreement"),
            note=v.get("note"),
        )
        if res.status == "ok" and v.get("passed") is True:
            row["status"] = "ok"
        elif res.status == "ok":
            row.update(status="not_validated", reason=v.get("note"))
        elif res.status == "validation_failed":
            row.update(status="failed", reason=_validation_reason(v, precision))
        else:
            err = res.error
            reason = f"{err.step}: {err.message}" if err else res.status
            row.update(status="failed", reason=reason[:600])
        emit(row)


def _validation_reason(v: dict[str, Any], precision: str) -> str:
    if precision == "int8" and v.get("sqnr_db") is not None:
        return f"validation: SQNR {v['sqnr_db']:.1f} dB < {_min_sqnr():g} dB"
    if v.get("max_rel_err") is not None:
        return f"validation: max rel err {v['max_rel_err']:.2g} (tolerance {v.get('tolerance')})"
    return f"validation: {v.get('note')}"


def _min_sqnr() -> float:
    from converters.validate import INT8_MIN_SQNR_DB

    return INT8_MIN_SQNR_DB


def run_matrix(models: list[str], timeout_s: float) -> dict[str, Any]:
    from agents.measure.environment import cpu_model

    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="coverage-") as tmp:
        for model in models:
            for source in SOURCES:
                out = Path(tmp) / f"{model}-{source}.jsonl"
                cmd = [sys.executable, "-m", "bench.coverage", "--group", model, source]
                cmd += ["--workdir", str(Path(tmp) / f"{model}-{source}"), "--rows", str(out)]
                t0 = time.perf_counter()
                try:
                    proc = subprocess.run(
                        cmd, cwd=REPO, timeout=timeout_s, capture_output=True, check=False
                    )
                    ended = (
                        None if proc.returncode == 0 else f"exited with status {proc.returncode}"
                    )
                    tail = proc.stderr.decode(errors="replace")[-300:]
                except subprocess.TimeoutExpired:
                    ended, tail = f"timed out after {timeout_s:.0f} s", ""
                got = (
                    [json.loads(line) for line in out.read_text().splitlines()]
                    if out.exists()
                    else []
                )
                rows += got
                if ended:
                    done = {(r["target"], r["precision"]) for r in got}
                    rows.append(
                        _row(
                            model,
                            source,
                            "*",
                            "*",
                            status="failed",
                            reason=f"group process {ended}: {tail}",
                            done=sorted(done),
                        )
                    )
                ok = sum(r.get("status") == "ok" for r in got)
                print(
                    f"{model:13s} {source:16s} {ok:2d}/{len(got) - 1:2d} ok  {time.perf_counter() - t0:6.1f} s",
                    flush=True,
                )
    return {
        "command": "python -m bench.conversion --matrix --write-docs",
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "cores": os.cpu_count(),
        "versions": {p: _version(p) for p in PACKAGES},
        "wall_s": round(time.perf_counter() - started, 1),
        "date": time.strftime("%Y-%m-%d"),
        "rows": rows,
    }


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _short(reason: str | None) -> str:
    text = " ".join((reason or "").split())
    return text if len(text) <= 220 else text[:217] + "..."


def render(report: dict[str, Any]) -> str:
    """The markdown section of docs/conversions.md for a matrix report."""
    from converters.zoo import FAMILIES

    rows = [r for r in report["rows"] if r["target"] not in ("source", "*")]
    order = {t: i for i, t in enumerate(COLUMN_ORDER)}
    columns = sorted(
        dict.fromkeys((r["target"], r["precision"]) for r in rows),
        key=lambda c: (
            order.get(c[0], len(order)),
            c[0],
            PRECISIONS.index(c[1]) if c[1] in PRECISIONS else 9,
        ),
    )
    cell = {(r["model"], r["source"], r["target"], r["precision"]): r for r in rows}
    broken = {(r["model"], r["source"]): r for r in report["rows"] if r["target"] == "*"}
    reasons: dict[str, int] = {}
    fallbacks: list[str] = []

    def mark(model: str, source: str, target: str, precision: str) -> str:
        r = cell.get((model, source, target, precision))
        if r is None:
            why = broken.get((model, source), {}).get("reason", "not run")
            return f"✗{reasons.setdefault(_short(why), len(reasons) + 1)}"
        if r["status"] == "skipped":
            return "skip"
        if r["status"] == "not_validated":
            return "○"
        if r["status"] == "failed":
            return f"✗{reasons.setdefault(_short(r.get('reason')), len(reasons) + 1)}"
        text = f"✓ {r['sqnr_db']:.0f} dB" if precision == "int8" and r.get("sqnr_db") else "✓"
        if r.get("fallback_from"):
            fallbacks.append(f"{FAMILIES.get(model, model)} {source} → {target} {precision}")
            text += "†"
        return text

    models = [m for m in FAMILIES if any(r["model"] == m for r in report["rows"])]
    head = ["architecture", "source", *(t if p == "any" else f"{t} {p}" for t, p in columns)]
    table = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for model in models:
        for source in SOURCES:
            marks = [mark(model, source, t, p) for t, p in columns]
            table.append(f"| {FAMILIES[model]} | {source} | " + " | ".join(marks) + " |")
    counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "not_validated", "failed")}
    versions = ", ".join(f"{k} {v}" for k, v in report["versions"].items() if v)
    out = [
        f"Generated by `{report['command']}` on {report['cpu']} ({report['cores']} cores, "
        f"{report['wall_s'] / 60:.0f} min, {report['date']}); Python {report['python']}, "
        f"{versions}. Raw rows: `bench/results/coverage.json`.",
        "",
        f"{counts['ok']} cells converted and validated, {counts['not_validated']} converted but "
        f"not validated here, {counts['failed']} failed. ✓ converted and validated (int8: its "
        "SQNR); ○ converted, not validated here (CoreML predicts only on macOS); ✗N failed, "
        f"reason N below; skip: {TENSORRT_SKIP}.",
        "",
        *table,
        "",
    ]
    if fallbacks:
        out += [
            "† through the onnx2tf fallback, the onnx2torch bridge having failed: "
            + "; ".join(fallbacks)
            + ".",
            "",
        ]
    if reasons:
        out += ["Failures:", ""] + [f"{n}. {text}" for text, n in reasons.items()] + [""]
    return "\n".join(out)


def write_docs(report: dict[str, Any], doc: Path = DOC) -> None:
    text = doc.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{doc} has no {START} ... {END} section to rewrite")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(f"{head}{START}\n{render(report)}{END}{tail}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m bench.coverage", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--group", nargs=2, metavar=("MODEL", "SOURCE"), required=True)
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument(
        "--rows", type=Path, required=True, help="JSON lines, one per cell, as they finish"
    )
    args = ap.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    with args.rows.open("a") as fh:

        def emit(row: dict[str, Any]) -> None:
            fh.write(json.dumps(row, default=str) + "\n")
            fh.flush()

        model, source = args.group
        run_group(model, source, args.workdir, emit)


if __name__ == "__main__":
    main()
