"""The check of an uploaded model, as the sandboxed process runs it (``server.formats`` starts
it through ``converters.sandbox.run_sandboxed``; the coordinator never imports onnx, torch,
LiteRT or coremltools for an upload, and a hostile file takes only this process down).

``inspect_file(InspectRequest) -> InspectResult``: recognise the format from the extension and
the first bytes, unpack an archive into ``workdir`` (zip-bomb and path checks first), then
validate the model and read its signature. A ``MemoryError`` (the address-space limit) is left
to the sandbox, which reports it as such.
"""

from __future__ import annotations

import gc
import resource
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import onnx

from converters.archives import ArchiveRejected, extract
from converters.coreml_steps import coreml_spec_io
from converters.errors import ConversionInputError
from converters.inspect import check_pt2_archive, inspect_pt2, is_pte, onnx_signature, pte_signature
from converters.sandbox import Emit
from server.inspection import SUPPORTED, InspectRequest, InspectResult, ModelInfo, ModelRejected
from server.model_checks import ModelCheckFailed, check_external_data

# CoreML FeatureTypes.ArrayFeatureType.ArrayDataType -> numpy dtype name. The recorded dtype
# is what the agent builds random inputs in, so it must be the model's own.
_COREML_DTYPES = {
    65568: "float32",
    65600: "float64",
    65552: "float16",
    131104: "int32",
    131080: "int8",
}
_NOT_SUPPORTED_EXT = {".mlmodel", ".mlpackage", ".engine", ".plan", ".xml", ".bin", ".pb", ".h5"}
_READ_PREFIX = {
    "tflite": "not a valid TFLite model: ",
    "mlpackage": "not a valid CoreML package: ",
    "pte": "not a valid ExecuTorch program: ",
}


def inspect_file(request: InspectRequest, emit: Emit | None = None) -> InspectResult:
    """The sandbox entry: the model's info, or why it is refused."""
    path, workdir, shown = Path(request.path), Path(request.workdir), request.filename
    try:
        kind = detect_format(path, shown)
        info = READERS[kind](path, workdir, request.max_unpacked, shown)
    except ModelRejected as exc:
        return InspectResult(
            rejected=_scrub(exc.message, path, workdir, shown), status_code=exc.status_code
        )
    except OSError as exc:  # the server's disk (unpacking), not the upload
        for entry in workdir.iterdir():  # what was unpacked goes: room for the result file
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        return InspectResult(os_errno=exc.errno)
    return InspectResult(info=info)


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
    if ext == ".pte" or is_pte(head):
        return "pte"
    if ext == ".onnx":
        return "onnx"
    if ext == ".pt2":
        return "pt2"  # checked as an archive (and a torch program) by _pt2
    if zipfile.is_zipfile(path):
        kind = _zip_kind(path)
        if kind == "unknown-zip":
            raise ModelRejected(
                f"'{filename}' is a zip archive but neither a .pt2 program, a zipped .mlpackage "
                f"nor an ONNX model with external data. Supported: {SUPPORTED}",
                415,
            )
        return kind
    if ext in _NOT_SUPPORTED_EXT:
        raise ModelRejected(
            f"'{filename}': {ext} uploads are not supported. Supported: {SUPPORTED}", 415
        )
    return "onnx"  # no known extension: accepted if it parses as ONNX


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


def _unpack(path: Path, workdir: Path, max_total: int, filename: str) -> list[str]:
    try:
        return extract(path, workdir, max_total, display_name=filename)
    except ArchiveRejected as exc:
        raise ModelRejected(str(exc)) from exc


# ---------------------------------------------------------------------------- ONNX


def _short_of_memory(need: int) -> bool:
    """Whether less than ``need`` bytes are left below this process's address-space limit: a
    parse or check that failed then most likely failed for want of memory (protobuf reports a
    failed allocation as a parse error), and is reported as such."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return False
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return False
    size_kb = next(
        (int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("VmSize:")), 0
    )
    return soft - size_kb * 1024 < need


def inspect_onnx(path: Path, archive_root: Path | None = None) -> ModelInfo:
    """Validate with ``onnx.checker`` (full check) and read inputs, outputs and opset.

    ``archive_root``: where the zip holding the model was unpacked; its external data files
    must be there and hold every byte their tensors declare (checked before the checker).
    The parse and the checker each hold about twice the file in memory; they run one after
    the other, never together.
    """
    need = 2 * path.stat().st_size
    problem = None
    try:
        model = onnx.load(str(path), load_external_data=False)
    except MemoryError:
        raise
    except Exception as exc:  # DecodeError, ValueError, ... whatever a hostile file causes
        problem = str(exc)
    if problem is not None:  # outside the handler: the parse's buffers are gone by now
        if _short_of_memory(need):
            raise MemoryError
        raise ModelRejected(
            f"not a valid ONNX model (protobuf parse failed: {problem}); the file may be "
            "truncated, or not an ONNX file at all"
        )
    info = _onnx_info(model, path, archive_root)
    del model
    gc.collect()
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except MemoryError:
        raise
    except onnx.checker.ValidationError as exc:
        text = str(exc).strip()
        problem = text.splitlines()[0] if text else repr(exc)
    except Exception as exc:  # shape inference errors surface as assorted types
        problem = str(exc)
    if problem is not None:
        if _short_of_memory(need):
            raise MemoryError
        raise ModelRejected(f"ONNX checker rejected the model: {problem}")
    return info


def _onnx_info(model: Any, path: Path, archive_root: Path | None) -> ModelInfo:
    if model.ir_version <= 0 or len(model.graph.node) == 0:
        raise ModelRejected(
            "not a valid ONNX model: no IR version or an empty graph; the file may be truncated "
            "or not an ONNX file at all"
        )
    try:
        check_external_data(model, path, archive_root or path.parent, archive_root is not None)
    except ModelCheckFailed as exc:
        raise ModelRejected(str(exc)) from exc
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


def _onnx(path: Path, workdir: Path, max_total: int, filename: str) -> ModelInfo:
    return inspect_onnx(path)


def _onnx_zip(path: Path, workdir: Path, max_total: int, filename: str) -> ModelInfo:
    names = _unpack(path, workdir, max_total, filename)
    entry = next(n for n in names if n.endswith(".onnx"))
    info = inspect_onnx(workdir / entry, archive_root=workdir)  # data files beside it
    info.artifact_meta = {"archive": "zip", "entry": entry}
    return info


# ---------------------------------------------------------------------------- the others


def _read(fmt: str, reader: Callable[[str], dict[str, Any]], path: Path) -> dict[str, Any]:
    """``reader(path)``, its failures worded for the uploader."""
    try:
        return reader(str(path))
    except MemoryError:
        raise
    except ImportError as exc:
        raise ModelRejected(
            f"this coordinator cannot read {fmt} models ({exc}); "
            "install the converter toolchain: pip install 'latencylab[convert]'",
            415,
        ) from exc
    except Exception as exc:
        hint = getattr(exc, "hint", None)
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        tail = f" ({hint})" if hint and hint not in msg else ""
        raise ModelRejected(_READ_PREFIX.get(fmt, "") + msg + tail) from exc


def read_pt2(path: str) -> dict[str, Any]:
    info = inspect_pt2(path).to_dict()
    return {
        "inputs": info["inputs"],
        "outputs": info["outputs"],
        "extra": {"producer": "torch.export"},
    }


def read_tflite(path: str) -> dict[str, Any]:
    from ai_edge_litert.interpreter import Interpreter  # an optional extra

    it = Interpreter(model_path=path)

    def specs(details: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for d in details:
            sig = d.get("shape_signature")
            dims = list(sig) if sig is not None and len(sig) else list(d["shape"])
            shape = [
                int(x) if int(x) >= 0 else ("batch" if i == 0 else f"d{i}")
                for i, x in enumerate(dims)
            ]
            out.append({"name": d["name"], "shape": shape, "dtype": d["dtype"].__name__})
        return out

    return {
        "inputs": specs(it.get_input_details()),
        "outputs": specs(it.get_output_details()),
        "extra": {"layout_note": "TFLite inputs as the model declares them"},
    }


def read_mlpackage(path: str) -> dict[str, Any]:
    import coremltools as ct  # an optional extra

    io = coreml_spec_io(path)
    desc = ct.models.MLModel(path, skip_model_load=True).get_spec().description
    dtypes = {
        f.name: _COREML_DTYPES.get(int(f.type.multiArrayType.dataType), "float32")
        for f in [*desc.input, *desc.output]
        if f.type.HasField("multiArrayType")
    }  # image and other non-array features are fed as float32 arrays

    def specs(tensors: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            {"name": t["name"], "shape": t["shape"], "dtype": dtypes.get(t["name"], "float32")}
            for t in tensors
        ]

    return {
        "inputs": specs(io["inputs"]),
        "outputs": specs(io["outputs"]),
        "extra": {"model_type": io["model_type"], "spec_version": io["spec_version"]},
    }


def read_pte(path: str) -> dict[str, Any]:
    """An ExecuTorch program: loaded (and so verified) by ``executorch.runtime``."""
    sig = pte_signature(path)
    return {
        "inputs": sig["inputs"],
        "outputs": sig["outputs"],
        "extra": {"method": sig["method"], "methods": sig["methods"]},
    }


def _pte(path: Path, workdir: Path, max_total: int, filename: str) -> ModelInfo:
    info = ModelInfo(format="executorch", **_read("pte", read_pte, path))
    info.artifact_meta = {"method": info.extra["method"]}
    return info


def _pt2(path: Path, workdir: Path, max_total: int, filename: str) -> ModelInfo:
    try:  # cheap: refuse zip bombs and non-programs before loading anything
        check_pt2_archive(path)
    except ConversionInputError as exc:
        raise ModelRejected(str(exc)) from exc
    return ModelInfo(format="pt2", **_read("pt2", read_pt2, path))


def _tflite(path: Path, workdir: Path, max_total: int, filename: str) -> ModelInfo:
    return ModelInfo(format="tflite", **_read("tflite", read_tflite, path))


def _mlpackage(path: Path, workdir: Path, max_total: int, filename: str) -> ModelInfo:
    names = _unpack(path, workdir, max_total, filename)
    pkg = next(n.split(".mlpackage/")[0] + ".mlpackage" for n in names if ".mlpackage/" in n)
    info = ModelInfo(format="coreml", **_read("mlpackage", read_mlpackage, workdir / pkg))
    info.artifact_meta = {"archive": "zip", "entry": pkg}
    return info


READERS: dict[str, Callable[[Path, Path, int, str], ModelInfo]] = {
    "onnx": _onnx,
    "onnx-zip": _onnx_zip,
    "pt2": _pt2,
    "tflite": _tflite,
    "mlpackage": _mlpackage,
    "pte": _pte,
}
"""Format (as ``detect_format`` names it) -> its check: the model's info, or ModelRejected."""
