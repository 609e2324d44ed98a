"""Run conversions in isolated subprocesses.

    python -m converters.run --request REQ.json --out RESULT.json

REQ.json is one conversion (a ``ConversionRequest``), or a source with a list of them::

    {"source": "m.onnx", "target": "tflite", "precision": "fp16", "backend": "onnx2tf",
     "input_shapes": {"x": [1, 3, 224, 224]}, "options": {}, "validate": true, "seed": 0,
     "out_dir": "artifacts/", "timeout_s": 900, "memory_mb": 8192}
    {"source": "m.pt2", "conversions": [{"target": "onnx"}, {"target": "tflite", "precision": "int8"}]}

Each conversion runs ``converters.run:worker`` in the shared sandbox
(``converters.sandbox.run_sandboxed``): a fresh process in its own session (so a timeout or a
cancel kills the whole process group, onnx2tf's child included), gone with its group when the
process that started it dies (SIGKILL included), its stdout and stderr captured to
``<workdir>/convert.log``, its address space capped at ``memory_mb`` (``RLIMIT_AS``, inherited
by the onnx2tf grandchild; virtual size is larger than resident memory -- thread stacks,
jax/TensorFlow reservations -- so the default is a generous 8 GiB). The result is a
``ConversionResult``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import traceback
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from converters.errors import classify
from converters.plan import build_step
from converters.sandbox import Emit, SandboxEnd, SandboxOutcome, run_sandboxed
from converters.validate import validate
from latencylab.conversions import ConversionError as ErrorDetail

DEFAULT_TIMEOUT_S = 900
DEFAULT_MEMORY_MB = 8192
ENTRY = "converters.run:worker"
ConversionStatus = Literal["ok", "failed", "timeout", "validation_failed", "validation_error"]


class ConversionRequest(BaseModel):
    """One conversion of ``source`` to ``target``, with the limits of its process."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    source: str
    target: str
    precision: str = "fp32"
    backend: str | None = None
    input_shapes: dict[str, list[int]] | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    check: bool = Field(True, alias="validate", description="validate the artifact numerically")
    seed: int = 0
    out_dir: str | None = None
    timeout_s: float = Field(DEFAULT_TIMEOUT_S, gt=0)
    memory_mb: int = Field(DEFAULT_MEMORY_MB, gt=0)


class ConvertedArtifact(BaseModel):
    path: str
    format: str
    precision: str
    sha256: str
    size: int
    metadata_path: str
    convert_seconds: float


class ConversionResult(BaseModel):
    status: ConversionStatus
    source: str
    target: str
    precision: str = "fp32"
    artifact: ConvertedArtifact | None = None
    validation: dict[str, Any] | None = Field(
        None, description="converters.validate.validate's record (errors, tolerance, outputs)"
    )
    error: ErrorDetail | None = None
    seconds: float | None = None
    log: str | None = None


def _failure(
    request: ConversionRequest,
    message: str,
    hint: str | None,
    log: Path,
    status: ConversionStatus = "failed",
) -> ConversionResult:
    return ConversionResult(
        status=status,
        source=request.source,
        target=request.target,
        precision=request.precision,
        error=ErrorDetail(step="run", message=message, hint=hint),
        log=str(log),
    )


def convert_isolated(
    request: ConversionRequest, workdir: str | Path, cancel: threading.Event | None = None
) -> ConversionResult:
    """Run one conversion in a sandboxed subprocess with its request's timeout and memory
    limit; return its result. ``cancel`` (set by the agent on a lost lease or SIGTERM) kills
    the conversion early."""
    workdir = Path(workdir).resolve()
    log = workdir / "convert.log"
    # The worker runs with cwd=workdir: every path it gets must not depend on our cwd.
    out_dir = Path(request.out_dir or workdir / "artifacts").resolve()
    request = request.model_copy(
        update={"source": str(Path(request.source).absolute()), "out_dir": str(out_dir)}
    )
    env = {"CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    outcome = run_sandboxed(
        request, ENTRY, ConversionResult, rundir=workdir, timeout_s=request.timeout_s,
        memory_mb=request.memory_mb, env=env, stderr_path=log, cancel=cancel,
    )  # fmt: skip
    return _conversion_result(outcome, request, log)


def _conversion_result(
    out: SandboxOutcome[ConversionResult], request: ConversionRequest, log: Path
) -> ConversionResult:
    if out.result is not None:
        return out.result.model_copy(update={"seconds": round(out.wall_s, 3), "log": str(log)})
    if out.end is SandboxEnd.cancelled:
        return _failure(request, "conversion cancelled", None, log)
    if out.end is SandboxEnd.timed_out:
        return _failure(
            request,
            f"conversion timed out after {request.timeout_s:.0f} s",
            "raise timeout_s in the request, or convert a smaller model / input shape",
            log,
            "timeout",
        )
    limit = f"limit {request.memory_mb} MiB"
    hint = "raise memory_mb in the request"
    if out.end is SandboxEnd.out_of_memory:
        return _failure(request, f"converter process ran out of memory ({limit})", hint, log)
    if out.end is SandboxEnd.crashed:
        what = f"converter process {out.how} without a result"
    else:  # raised (outside the worker's own handling), invalid_result, not_started
        what = f"converter process failed ({out.error})"
    # Under an address-space limit anything may fail first (an import, an mmap, a thread).
    msg = f"{what}; it may have run out of memory ({limit}); log tail: {out.stderr_tail[-800:]}"
    return _failure(request, msg, hint, log)


def run_request(request: dict[str, Any], workdir: str | Path) -> dict[str, Any]:
    """One conversion -> its result; a request with ``conversions`` -> {"results": [...]},
    each conversion being the request's other fields updated with its own."""
    if "conversions" not in request:
        one = ConversionRequest.model_validate(request)
        return convert_isolated(one, workdir).model_dump(mode="json")
    base = {k: v for k, v in request.items() if k != "conversions"}
    results = []
    for i, conv in enumerate(request["conversions"]):
        sub = ConversionRequest.model_validate({**base, **conv})
        name = f"{i:02d}-{sub.target}-{sub.precision}"
        results.append(convert_isolated(sub, Path(workdir) / name).model_dump(mode="json"))
    return {"source": request.get("source"), "results": results}


def worker(request: ConversionRequest, emit: Emit | None = None) -> ConversionResult:
    """In-process conversion + validation (what the sandboxed subprocess runs)."""
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    result = ConversionResult(
        status="failed", source=request.source, target=request.target, precision=request.precision
    )
    step_name = "plan"
    try:
        options = dict(request.options)
        if request.backend:
            options["backend"] = request.backend
        step = build_step(
            request.source,
            request.target,
            precision=request.precision,
            out_dir=request.out_dir,
            input_shapes=request.input_shapes,
            **options,
        )
        step_name = step.name
        art = step.artifact()
        result.artifact = ConvertedArtifact(
            path=str(art.path),
            format=art.format,
            precision=art.precision,
            sha256=art.sha256,
            size=art.size,
            metadata_path=str(art.meta_path),
            convert_seconds=round(art.seconds, 3),
        )
        result.status = "ok"
        if request.check:
            step_name = "validate"
            v = validate(art, request.source, seed=request.seed, input_shapes=request.input_shapes)
            result.validation = v
            if v["passed"] is False:
                result.status = "validation_failed"
    except BaseException as exc:
        traceback.print_exc()
        result.error = ErrorDetail(**classify(step_name, exc, request.target).to_dict())
        if step_name == "validate":
            result.status = "validation_error"
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m converters.run", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--request", required=True, type=Path, help="request JSON")
    ap.add_argument("--out", required=True, type=Path, help="where to write the result JSON")
    ap.add_argument("--workdir", type=Path, help="work directory (default: next to --out)")
    args = ap.parse_args(argv)
    request = json.loads(args.request.read_text())
    result = run_request(request, args.workdir or args.out.parent / (args.out.stem + ".work"))
    args.out.write_text(json.dumps(result, indent=2, default=str))
    items = result.get("results", [result])
    return 0 if all(r.get("status") == "ok" for r in items) else 1


if __name__ == "__main__":
    sys.exit(main())
