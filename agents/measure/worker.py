"""Subprocess entry point of one measurement: ``measure(spec, emit)``, which
``isolation.run_isolated`` runs in the shared sandbox (``converters.sandbox``), or by hand:

    python -m agents.measure.worker --spec SPEC.json --out RESULT.json

Loads the ``MeasureSpec``, picks the runner, runs the protocol and writes a
``MeasureResult`` JSON to ``--out`` (atomically). Progress events go to stdout as JSON
lines, one object per line and nothing else: the real stdout is kept for them and file
descriptor 1 is pointed at stderr, so runtimes printing to stdout cannot corrupt the
stream. Any error becomes a failed result (exit code 0); only crashes (signals,
``os._exit``) end without a result, which ``isolation.run_isolated`` reports.
"""

from __future__ import annotations

import argparse
import faulthandler
import sys
import traceback
from pathlib import Path
from typing import Any

from converters.sandbox import emitter, private_stdout, write_atomically
from latencylab.schemas import MeasureResult, MeasureSpec


def write_result(result: MeasureResult, out: Path) -> None:
    """Write ``result`` to ``out`` atomically (temp file + rename)."""
    write_atomically(out, result.model_dump_json())


def measure(spec: MeasureSpec, on_progress: Any = None) -> MeasureResult:
    """Pick the runner for ``spec.runtime`` and run the protocol (in this process)."""
    from agents.runners import get_runner

    from .protocol import run_protocol

    try:
        runner_cls = get_runner(spec.runtime)
        runner = runner_cls(spec)
    except Exception as exc:
        return MeasureResult(status="failed", error=f"{type(exc).__name__}: {exc}")
    return run_protocol(runner, spec.settings, on_progress=on_progress)


def main(argv: list[str] | None = None) -> int:
    """CLI entry; returns the exit code (0 whenever a result file was written).

    Called with an explicit ``argv`` (in-process, e.g. from tests) it leaves the process's
    file descriptors alone and emits no progress.
    """
    parser = argparse.ArgumentParser(prog="python -m agents.measure.worker")
    parser.add_argument("--spec", required=True, type=Path, help="MeasureSpec JSON file")
    parser.add_argument("--out", required=True, type=Path, help="where to write MeasureResult")
    args = parser.parse_args(argv)
    faulthandler.enable()  # a native crash prints the Python stack to stderr
    emit = emitter(private_stdout()) if argv is None else None
    try:
        spec = MeasureSpec.model_validate_json(args.spec.read_text())
    except Exception as exc:
        write_result(
            MeasureResult(status="failed", error=f"invalid spec: {type(exc).__name__}: {exc}"),
            args.out,
        )
        return 0
    try:
        result = measure(spec, on_progress=emit)
    except Exception as exc:  # belt and braces: the protocol itself should not raise
        traceback.print_exc()
        result = MeasureResult(status="failed", error=f"{type(exc).__name__}: {exc}")
    if result.status == "failed" and result.error:
        print(f"measurement failed: {result.error}", file=sys.stderr)
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
