"""Run conversions in isolated subprocesses.

    python -m converters.run --request REQ.json --out RESULT.json

REQ.json is one conversion, or a source with a list of them::

    {"source": "m.onnx", "target": "tflite", "precision": "fp16", "backend": "onnx2tf",
     "input_shapes": {"x": [1, 3, 224, 224]}, "options": {}, "validate": true, "seed": 0,
     "out_dir": "artifacts/", "timeout_s": 900, "memory_mb": 8192}
    {"source": "m.pt2", "conversions": [{"target": "onnx"}, {"target": "tflite", "precision": "int8"}]}

Each conversion runs in its own ``python -m converters.run --worker`` process, a
``converters.spawn.Sandbox``: in its own session (so a timeout or a cancel kills the whole
process group, onnx2tf's child included), gone with its group when the process that
started it dies (SIGKILL included), with its stdout/stderr captured to
``<workdir>/convert.log``. Memory is capped with
``resource.setrlimit(RLIMIT_AS, ...)`` in ``preexec_fn``: RLIMIT_AS bounds *virtual* address
space, which the kernel enforces without cgroups (allocations beyond it fail with
MemoryError/ENOMEM instead of the host OOM-killing a neighbour). Virtual size is larger than
resident memory (thread stacks, jax/TensorFlow reservations), so the default is generous
(8 GiB) and the limit is inherited by the onnx2tf grandchild.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from converters.spawn import Sandbox

DEFAULT_TIMEOUT_S = 900
DEFAULT_MEMORY_MB = 8192
REPO = Path(__file__).resolve().parent.parent


def _limit_memory(memory_mb: int) -> Callable[[], None]:
    def preexec() -> None:  # runs in the child between fork and exec
        limit = int(memory_mb) * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return preexec


def _failure(
    request: dict[str, Any], step: str, message: str, hint: str | None, log: Path, status: str
) -> dict[str, Any]:
    return {
        "status": status,
        "source": request.get("source"),
        "target": request.get("target"),
        "precision": request.get("precision", "fp32"),
        "artifact": None,
        "validation": None,
        "error": {"step": step, "op": None, "message": message, "hint": hint},
        "log": str(log),
    }


def _log_tail(log: Path, n: int = 2000) -> str:
    try:
        return log.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def convert_isolated(
    request: dict[str, Any],
    workdir: str | Path,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_mb: int = DEFAULT_MEMORY_MB,
    cancel: threading.Event | None = None,
) -> dict[str, Any]:
    """Run one conversion in a subprocess with a timeout and memory limit; return its result.

    ``cancel`` (set by the agent on a lost lease or SIGTERM) kills the conversion early."""
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    req_path, res_path, log = (
        workdir / "request.json",
        workdir / "result.json",
        workdir / "convert.log",
    )
    res_path.unlink(missing_ok=True)
    # The worker runs with cwd=workdir: every path it gets must not depend on our cwd.
    out_dir = Path(request.get("out_dir") or workdir / "artifacts").resolve()
    request = {
        **request,
        "source": str(Path(request["source"]).absolute()),
        "out_dir": str(out_dir),
    }
    req_path.write_text(json.dumps(request, indent=2))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    cmd = [
        sys.executable,
        "-m",
        "converters.run",
        "--worker",
        "--request",
        str(req_path),
        "--out",
        str(res_path),
    ]
    t0 = time.monotonic()
    with (
        open(log, "wb") as fh,
        Sandbox(
            cmd,
            stdout=fh,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=env,
            preexec=_limit_memory(memory_mb),
        ) as box,
    ):
        status = box.wait(timeout_s, cancel)
        box.close()  # whatever is left of its group (onnx2tf's process) goes too
    if status is None and cancel is not None and cancel.is_set():
        return _failure(request, "run", "conversion cancelled", None, log, "failed")
    if status is None:
        return _failure(
            request,
            "run",
            f"conversion timed out after {timeout_s:.0f} s",
            "raise timeout_s in the request, or convert a smaller model / input shape",
            log,
            "timeout",
        )
    rc = status
    if res_path.exists():
        result = json.loads(res_path.read_text())
        result["seconds"] = round(time.monotonic() - t0, 3)
        result["log"] = str(log)
        return result
    tail = _log_tail(log)
    oom_marks = (
        "MemoryError",
        "std::bad_alloc",
        "Cannot allocate memory",
        "failed to map segment",
        "mmap failed",
    )
    if rc < 0 or any(m in tail for m in oom_marks):
        msg = f"converter process died (exit {rc}) — most likely out of memory (limit {memory_mb} MiB)"
        return _failure(
            request,
            "run",
            msg + f"; log tail: {tail[-500:]}",
            "raise memory_mb in the request",
            log,
            "failed",
        )
    return _failure(
        request,
        "run",
        f"converter process exited with status {rc} without a result; log tail: {tail[-800:]}",
        None,
        log,
        "failed",
    )


def run_request(request: dict[str, Any], workdir: str | Path) -> dict[str, Any]:
    """One conversion -> its result; a request with ``conversions`` -> {"results": [...]}."""
    timeout_s = float(request.get("timeout_s", DEFAULT_TIMEOUT_S))
    memory_mb = int(request.get("memory_mb", DEFAULT_MEMORY_MB))
    if "conversions" not in request:
        return convert_isolated(request, workdir, timeout_s, memory_mb)
    base = {k: v for k, v in request.items() if k != "conversions"}
    results = []
    for i, conv in enumerate(request["conversions"]):
        sub = {**base, **conv}
        name = f"{i:02d}-{sub.get('target')}-{sub.get('precision', 'fp32')}"
        results.append(
            convert_isolated(
                sub,
                Path(workdir) / name,
                float(sub.get("timeout_s", timeout_s)),
                int(sub.get("memory_mb", memory_mb)),
            )
        )
    return {"source": request.get("source"), "results": results}


def worker(request: dict[str, Any]) -> dict[str, Any]:
    """In-process conversion + validation (what the isolated subprocess runs)."""
    from converters.errors import classify
    from converters.plan import build_step
    from converters.validate import validate

    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    source, target = request["source"], request["target"]
    precision = request.get("precision", "fp32")
    result: dict[str, Any] = {
        "status": "failed",
        "source": source,
        "target": target,
        "precision": precision,
        "artifact": None,
        "validation": None,
        "error": None,
    }
    step_name = "plan"
    try:
        options = dict(request.get("options") or {})
        if request.get("backend"):
            options["backend"] = request["backend"]
        step = build_step(
            source,
            target,
            precision=precision,
            out_dir=request.get("out_dir"),
            input_shapes=request.get("input_shapes"),
            **options,
        )
        step_name = step.name
        art = step.artifact()
        result["artifact"] = {
            "path": str(art.path),
            "format": art.format,
            "precision": art.precision,
            "sha256": art.sha256,
            "size": art.size,
            "metadata_path": str(art.meta_path),
            "convert_seconds": round(art.seconds, 3),
        }
        result["status"] = "ok"
        if request.get("validate", True):
            step_name = "validate"
            v = validate(
                art,
                source,
                seed=int(request.get("seed", 0)),
                input_shapes=request.get("input_shapes"),
            )
            result["validation"] = v
            if v["passed"] is False:
                result["status"] = "validation_failed"
    except BaseException as exc:
        traceback.print_exc()
        result["error"] = classify(step_name, exc, target).to_dict()
        if step_name == "validate":
            result["status"] = "validation_error"
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m converters.run", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--request", required=True, type=Path, help="request JSON")
    ap.add_argument("--out", required=True, type=Path, help="where to write the result JSON")
    ap.add_argument("--workdir", type=Path, help="work directory (default: next to --out)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    request = json.loads(args.request.read_text())
    if args.worker:
        result = worker(request)
    else:
        result = run_request(request, args.workdir or args.out.parent / (args.out.stem + ".work"))
    args.out.write_text(json.dumps(result, indent=2, default=str))
    items = result.get("results", [result])
    return 0 if all(r.get("status") == "ok" for r in items) else 1


if __name__ == "__main__":
    sys.exit(main())
