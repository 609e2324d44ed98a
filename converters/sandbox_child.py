"""The child side of ``converters.sandbox.run_sandboxed``: what

    python -P -m converters.sandbox_child --entry pkg.module:function \\
        --request-type pkg.module:Model --request REQ.json --out OUT.json

runs (a module of its own, which nothing imports, so ``-m`` runs it once)."""

from __future__ import annotations

import argparse
import faulthandler
import importlib
import sys
import traceback
from pathlib import Path
from typing import Any

from converters.sandbox import ChildError, Emit, Envelope, emitter, private_stdout, write_atomically


def _resolve(reference: str) -> Any:
    module, _, name = reference.partition(":")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def _run_entry(entry: str, request_type: str, request_path: Path, emit: Emit) -> Envelope:
    failure: ChildError | None = None
    try:
        model = _resolve(request_type)
        request = model.model_validate_json(request_path.read_bytes())
        result = _resolve(entry)(request, emit)
        return Envelope(result=result.model_dump(mode="json"))
    except MemoryError:
        pass  # left to below, once the frames holding the memory are gone
    except BaseException as exc:  # reported to the parent, whatever it is
        traceback.print_exc()
        failure = ChildError(type=type(exc).__name__, message=str(exc)[:4000])
    if failure is not None:
        return Envelope(error=failure)
    print("MemoryError: the sandbox's address-space limit was reached", file=sys.stderr)
    return Envelope(out_of_memory=True, error=ChildError(type="MemoryError", message=""))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m converters.sandbox_child")
    ap.add_argument("--entry", required=True, help="module:function(request, emit) -> result")
    ap.add_argument("--request-type", required=True, help="module:Model of the request")
    ap.add_argument("--request", required=True, type=Path, help="the request, as JSON")
    ap.add_argument("--out", required=True, type=Path, help="where the result JSON goes")
    args = ap.parse_args(argv)
    faulthandler.enable()  # a native crash prints the Python stack to stderr
    emit = emitter(private_stdout())
    envelope = _run_entry(args.entry, args.request_type, args.request, emit)
    write_atomically(args.out, envelope.model_dump_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
