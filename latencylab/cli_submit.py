"""``latencylab submit``: check the targets, upload (or reuse) the model, benchmark, show.

The order matters to a user at a terminal: the targets are checked by the coordinator's dry
run (``POST /benchmarks/check``, the rules of ``POST /benchmarks``) before a byte is uploaded,
so a typo costs nothing; a file already uploaded (same SHA-256, and the same ``--name`` /
``--metadata`` if given) is reused instead of stored again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, get_args

import typer

from latencylab.cli_common import (
    ENV_HELP,
    EXIT_FAILED,
    JsonOpt,
    ServerOpt,
    TokenOpt,
    WideOpt,
    connect,
    console,
    err,
    fail,
    parse_pairs,
    stop,
)
from latencylab.cli_results import print_problems, print_results
from latencylab.client import Client, LatencyLabError
from latencylab.progress import watch
from latencylab.runtime_options import RuntimeOptions
from latencylab.runtimes import OPTIONS
from latencylab.schemas import ModelPublic, Precision, Runtime

RUNTIME_NAMES = get_args(Runtime)
PRECISIONS = get_args(Precision)
SUFFIX_FORMATS = {".onnx": "onnx", ".pt2": "pt2", ".tflite": "tflite", ".pte": "executorch"}
"""What the coordinator will detect for these suffixes (others: it tells after the upload)."""

FLAGS = {"options": "--option", "batch_size": "--batch-size"}


def _options_help() -> str:
    common = set(RuntimeOptions.model_fields)
    per = "; ".join(
        f"{rt}: {', '.join(sorted(set(model.model_fields) - common))}"
        for rt, model in OPTIONS.items()
    )
    return f"every runtime: {', '.join(sorted(common))}; {per}"


SUBMIT_HELP = "\n\n".join(
    [
        "Upload a model, benchmark it on every runtime x device given, show the results.",
        "The targets are checked by the coordinator before anything is uploaded; a file "
        "uploaded before (same SHA-256, and the same --name/--metadata if given) is reused.",
        f"Runtimes (--runtime, repeat for several): {', '.join(RUNTIME_NAMES)}. A runtime that "
        "does not run the uploaded format converts first (an ONNX or .pt2 model to tflite, "
        "openvino, coreml or tensorrt).",
        f"Precisions (--precision): {', '.join(PRECISIONS)}.",
        "Device selectors (--device, repeat for several): 'local' (a device on the "
        "coordinator's host), a device name (see `latencylab devices`), or "
        "key:value[,key:value] pairs that must all match, e.g. class:gpu, "
        "class:phone,soc:sm8550, runtime:tflite.",
        "Runtime options (--option key=value, repeat): a value is JSON when it starts with "
        "a bracket or a brace (providers='[\"CUDAExecutionProvider\"]'), else text that the "
        f"option's type parses (30, true, gpu). Allowed keys: {_options_help()}. See "
        "docs/agents.md, 'Runtime options, delegates and tools'.",
        ENV_HELP,
    ]
)


def option_value(raw: str) -> Any:
    if raw.lstrip().startswith(("[", "{")):
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            stop(f"--option value {raw!r} is not valid JSON: {exc}")
    return raw


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def find_uploaded(
    c: Client, path: Path, name: str | None, metadata: dict[str, Any] | None
) -> ModelPublic | None:
    """The newest stored model of this very file (and name / metadata, where given)."""
    for m in c.models(sha256=sha256_of(path)):
        if (name is None or m.name == name) and (metadata is None or m.metadata == metadata):
            return m
    return None


def target_label(targets: list[dict[str, Any]]) -> Any:
    """Error locations as the flags the user typed: ``--runtime 'onnxrt'``."""

    def label(loc: list[Any]) -> str:
        loc = loc[1:] if loc[:1] == ["body"] else loc
        if len(loc) >= 2 and loc[0] == "targets" and isinstance(loc[1], int):
            t = targets[loc[1]] if loc[1] < len(targets) else {}
            if len(loc) == 2:
                return f"--runtime {t.get('runtime')!r} --device {t.get('device')!r}"
            field = str(loc[2])
            flag = FLAGS.get(field, f"--{field.replace('_', '-')}")
            if field == "options":
                return " ".join([flag, *(str(p) for p in loc[3:])])
            return f"{flag} {t.get(field)!r}"
        if len(loc) >= 2 and loc[0] == "settings":
            return f"--{str(loc[1]).replace('_', '-')}"
        return ".".join(str(p) for p in loc) or "request"

    return label


def submit(
    model: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, help="Model: .onnx, .pt2, .tflite, .zip"),
    ],
    runtime: Annotated[
        list[str] | None,
        typer.Option(
            help=f"Runtime, repeat for several: {', '.join(RUNTIME_NAMES)} (default onnxruntime)",
            show_default=False,
        ),
    ] = None,
    device: Annotated[
        list[str] | None,
        typer.Option(
            help="Device selector, repeat for several: local, a device name or key:value[,...] "
            "(class:gpu); default local",
            show_default=False,
        ),
    ] = None,
    precision: Annotated[str, typer.Option(help=" | ".join(PRECISIONS))] = "fp32",
    batch_size: int = 1,
    threads: Annotated[int, typer.Option(help="Intra-op threads; 0 = the runtime's default")] = 1,
    name: Annotated[str | None, typer.Option(help="Model name (default: the file name)")] = None,
    metadata: Annotated[
        str | None, typer.Option(help='Metadata JSON, e.g. {"accuracy": {"top1": 71.8}}')
    ] = None,
    option: Annotated[
        list[str] | None,
        typer.Option(help="Runtime option key=value, e.g. delegate=gpu (repeat; keys above)"),
    ] = None,
    warmup_runs: int = 10,
    min_runs: int = 50,
    min_duration_s: float = 1.0,
    max_duration_s: float = 30.0,
    target_rel_ci: float = 0.01,
    reuse: Annotated[
        bool, typer.Option(help="Reuse an uploaded model of the same file instead of uploading")
    ] = True,
    wait: Annotated[bool, typer.Option(help="Wait for the results")] = True,
    wide: WideOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    options = {k: option_value(v) for k, v in parse_pairs(option, "--option").items()}
    meta: dict[str, Any] | None = None
    if metadata:
        try:
            meta = json.loads(metadata)
        except json.JSONDecodeError as exc:
            stop(f"--metadata is not valid JSON: {exc}")
        if not isinstance(meta, dict):
            stop('--metadata must be a JSON object, e.g. {"accuracy": {"top1": 71.8}}')
    targets: list[dict[str, Any]] = [
        {
            "runtime": r,
            "device": d,
            "precision": precision,
            "batch_size": batch_size,
            "threads": threads,
            "options": options,
        }
        for r in runtime or ["onnxruntime"]
        for d in device or ["local"]
    ]
    settings = {
        "warmup_runs": warmup_runs,
        "min_runs": min_runs,
        "min_duration_s": min_duration_s,
        "max_duration_s": max_duration_s,
        "target_rel_ci": target_rel_ci,
    }
    label = target_label(targets)
    with connect(server, token, label) as c:
        m = find_uploaded(c, model, name, meta) if reuse else None
        fmt = None if m else SUFFIX_FORMATS.get(model.suffix.lower())
        try:
            c.check_benchmark(targets, m.id if m else None, fmt, settings)
        except LatencyLabError as exc:
            fail(exc, c.server, label, note="nothing was uploaded or queued")
        if m is None:
            m = c.upload_model(model, name=name, metadata=meta)
            note = f"uploaded model {m.id} ({m.name}, {m.size} bytes, sha256 {m.sha256[:12]})"
        else:
            note = f"reusing model {m.id} ({m.name}): the same file was uploaded before"
        if not as_json:
            err.print(note, soft_wrap=True, markup=False)
        bench = c.benchmark(m.id, targets, settings)
        if wait:
            try:
                bench = watch(c, bench.id, quiet=as_json)
            except KeyboardInterrupt:
                stop(
                    f"stopped watching; benchmark {bench.id} runs on "
                    f"(latencylab results {bench.id})",
                    code=130,
                )
    if as_json:
        payload = {"model": m.model_dump(mode="json"), "benchmark": bench.model_dump(mode="json")}
        print(json.dumps(payload))
        return
    print_results(console, bench, wide)
    print_problems(err, bench)
    if bench.status == "failed":
        raise typer.Exit(EXIT_FAILED)
