"""Recognise an uploaded model file and read its signature.

Every problem raises ``ModelRejected`` with a message meant for the user; messages name the
uploaded file (and the entries inside an archive), never the server's temporary paths.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from converters.archives import ArchiveRejected, extract
from server.model_checks import ModelCheckFailed, check_external_data, check_input_size

SUPPORTED = (
    "ONNX (.onnx, or a .zip holding one .onnx with its external data), a torch.export "
    "program (.pt2), TFLite (.tflite), CoreML (a zipped .mlpackage)"
)
INSPECT_TIMEOUT_S = 180
INSPECT_MEMORY_MB = 8192


class ModelRejected(Exception):
    def __init__(self, message: str, status_code: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


@dataclass
class ModelInfo:
    format: str
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    opset: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    artifact_meta: dict[str, Any] = field(default_factory=dict)


def _zip_kind(path: Path) -> str:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    if any(
        n.endswith("archive_format")
        or n.endswith("serialized_exported_program.json")
        or "/models/" in n
        for n in names
    ):
        return "pt2"
    if any(".mlpackage/" in n and n.endswith("Manifest.json") for n in names):
        return "mlpackage"
    if sum(n.endswith(".onnx") for n in names) == 1:
        return "onnx-zip"
    return "unknown-zip"


def detect_format(path: Path, filename: str) -> str:
    """Decide the format from the extension and the first bytes."""
    if path.stat().st_size == 0:
        raise ModelRejected("the uploaded file is empty")
    ext = Path(filename).suffix.lower()
    with path.open("rb") as fh:
        head = fh.read(8)
    if ext == ".tflite" or head[4:8] == b"TFL3":
        return "tflite"
    if ext == ".onnx":
        return "onnx"
    if ext == ".pt2":
        return "pt2"  # checked as an archive (and a torch program) by inspect_upload
    if zipfile.is_zipfile(path):
        kind = _zip_kind(path)
        if kind == "unknown-zip":
            raise ModelRejected(
                f"'{filename}' is a zip archive but neither a .pt2 program, a zipped .mlpackage "
                f"nor an ONNX model with external data. Supported: {SUPPORTED}",
                415,
            )
        return kind
    if ext in {".mlmodel", ".mlpackage", ".engine", ".plan", ".xml", ".bin", ".pb", ".h5"}:
        raise ModelRejected(
            f"'{filename}': {ext} uploads are not supported. Supported: {SUPPORTED}", 415
        )
    return "onnx"  # no known extension: accepted if it parses as ONNX


def _run_inspector(fmt: str, path: Path) -> dict[str, Any]:
    """Inspect in a fresh subprocess with a timeout and a memory limit."""

    def limit() -> None:  # in the child, before exec
        cap = INSPECT_MEMORY_MB * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    try:
        out = subprocess.run(
            [sys.executable, "-m", "server.inspect_worker", "--format", fmt, str(path)],
            capture_output=True,
            text=True,
            timeout=INSPECT_TIMEOUT_S,
            preexec_fn=limit,
            cwd=Path(__file__).resolve().parent.parent,
        )
    except subprocess.TimeoutExpired as exc:
        raise ModelRejected(f"reading the {fmt} model took over {INSPECT_TIMEOUT_S} s") from exc
    try:
        result: dict[str, Any] = json.loads(out.stdout)
    except ValueError as exc:
        tail = (out.stderr or "").strip().splitlines()[-1:] or ["no output"]
        raise ModelRejected(
            f"could not read the {fmt} model (exit {out.returncode}): {tail[0]}"
        ) from exc
    if "error" in result:
        raise ModelRejected(str(result["error"]), int(result.get("status_code", 422)))
    return result


def _scrub(message: str, path: Path, workdir: Path, filename: str) -> str:
    """The message with the temporary copy's path and the unpack directory taken out."""
    for long, short in (
        (f"{workdir}/", ""),
        (str(workdir), "the archive"),
        (str(path), filename),
        (path.name, filename),
        (f"{path.parent}/", ""),
    ):
        message = message.replace(long, short)
    return message


def inspect_upload(
    path: Path, fmt: str, workdir: Path, max_total: int, filename: str | None = None
) -> ModelInfo:
    """Validate the upload of format ``fmt`` and read its inputs, outputs (and opset).

    ``filename`` is the uploaded file's name: errors say it instead of ``path``.
    """
    shown = filename or path.name
    try:
        return _inspect(path, fmt, workdir, max_total, shown)
    except ModelRejected as exc:
        raise ModelRejected(_scrub(exc.message, path, workdir, shown), exc.status_code) from exc


def _unpack(path: Path, workdir: Path, max_total: int, filename: str) -> list[str]:
    try:
        return extract(path, workdir, max_total, display_name=filename)
    except ArchiveRejected as exc:
        raise ModelRejected(str(exc)) from exc


def _inspect(path: Path, fmt: str, workdir: Path, max_total: int, filename: str) -> ModelInfo:
    if fmt == "onnx":
        return inspect_onnx(path)
    if fmt == "onnx-zip":
        names = _unpack(path, workdir, max_total, filename)
        entry = next(n for n in names if n.endswith(".onnx"))
        info = inspect_onnx(workdir / entry, archive_root=workdir)  # data files beside it
        info.artifact_meta = {"archive": "zip", "entry": entry}
        return info
    if fmt == "pt2":
        from converters.errors import ConversionInputError
        from converters.inspect import check_pt2_archive

        try:  # cheap, in-process: refuse zip bombs and non-programs before loading anything
            check_pt2_archive(path)
        except ConversionInputError as exc:
            raise ModelRejected(str(exc)) from exc
        r = _run_inspector("pt2", path)
        return ModelInfo("pt2", r["inputs"], r["outputs"], None, r.get("extra", {}))
    if fmt == "tflite":
        r = _run_inspector("tflite", path)
        return ModelInfo("tflite", r["inputs"], r["outputs"], None, r.get("extra", {}))
    if fmt == "mlpackage":
        names = _unpack(path, workdir, max_total, filename)
        pkg = next(n.split(".mlpackage/")[0] + ".mlpackage" for n in names if ".mlpackage/" in n)
        r = _run_inspector("mlpackage", workdir / pkg)
        return ModelInfo(
            "coreml",
            r["inputs"],
            r["outputs"],
            None,
            r.get("extra", {}),
            {"archive": "zip", "entry": pkg},
        )
    raise ModelRejected(f"unsupported format {fmt!r}. Supported: {SUPPORTED}", 415)


def inspect_onnx(path: Path, archive_root: Path | None = None) -> ModelInfo:
    """Validate with ``onnx.checker`` (full check) and read inputs, outputs and opset.

    ``archive_root``: where the zip holding the model was unpacked; its external data files
    must be there and hold every byte their tensors declare (checked before the checker).
    """
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, UnicodeDecodeError) as exc:
        raise ModelRejected(
            f"not a valid ONNX model (protobuf parse failed: {exc}); the file may be truncated, "
            "or not an ONNX file at all"
        ) from exc
    if model.ir_version <= 0 or len(model.graph.node) == 0:
        raise ModelRejected(
            "not a valid ONNX model: no IR version or an empty graph; the file may be truncated "
            "or not an ONNX file at all"
        )
    try:
        check_external_data(model, path, archive_root or path.parent, archive_root is not None)
    except ModelCheckFailed as exc:
        raise ModelRejected(str(exc)) from exc
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        raise ModelRejected(f"ONNX checker rejected the model: {first}") from exc
    except Exception as exc:  # shape inference errors surface as assorted types
        raise ModelRejected(f"ONNX checker rejected the model: {exc}") from exc
    from dataclasses import asdict

    from converters.inspect import onnx_signature

    for v in [*model.graph.input, *model.graph.output]:
        if not v.type.HasField("tensor_type"):
            raise ModelRejected(
                f"graph value '{v.name}' is not a tensor; only tensor I/O is supported"
            )
    sig = onnx_signature(model)
    if not sig.inputs:
        raise ModelRejected("the ONNX graph has no inputs to feed")
    return ModelInfo(
        format="onnx",
        inputs=[asdict(t) for t in sig.inputs],
        outputs=[asdict(t) for t in sig.outputs],
        opset=sig.opset,
        extra={"producer": model.producer_name or None, "ir_version": model.ir_version},
    )


def apply_input_shapes(
    inputs: list[dict[str, Any]], shapes: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """Fill symbolic dims from ``metadata.input_shapes``; leave a symbolic batch dim (dim 0).

    Any other unknown dimension is an error: we do not guess sizes.
    """
    shapes = shapes or {}
    names = {i["name"] for i in inputs}
    unknown = set(shapes) - names
    if unknown:
        raise ModelRejected(
            f"metadata.input_shapes names {sorted(unknown)}, which are not inputs of the model "
            f"(inputs: {sorted(names)})"
        )
    out = []
    for spec in inputs:
        shape = list(spec["shape"])
        given = shapes.get(spec["name"])
        if given is not None:
            if not isinstance(given, list) or not all(
                isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in given
            ):
                raise ModelRejected(
                    f"metadata.input_shapes['{spec['name']}'] must be a list of positive integers"
                )
            if len(given) != len(shape):
                raise ModelRejected(
                    f"metadata.input_shapes['{spec['name']}'] has rank {len(given)}, "
                    f"the model input has rank {len(shape)} ({shape})"
                )
            for i, (have, want) in enumerate(zip(shape, given, strict=True)):
                if isinstance(have, int) and have != want:
                    raise ModelRejected(
                        f"metadata.input_shapes['{spec['name']}'] dim {i} is {want}, "
                        f"but the model fixes it to {have}"
                    )
            shape = list(given)
        for i, d in enumerate(shape):
            if i > 0 and not isinstance(d, int):
                raise ModelRejected(
                    f"input '{spec['name']}' has a dynamic dimension {i} ({d!r}) with no size: "
                    f"give it in metadata, e.g. "
                    f'{{"input_shapes": {{"{spec["name"]}": [1, 3, 224, 224]}}}}'
                )
        out.append({**spec, "shape": shape})
    try:
        check_input_size(out)
    except ModelCheckFailed as exc:
        raise ModelRejected(str(exc)) from exc
    return out
