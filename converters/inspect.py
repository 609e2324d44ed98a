"""Read a model's interface (inputs, outputs, opset) and load uploads safely.

``inspect_model(path)`` works on ONNX files and on ``torch.export`` programs (``.pt2``).
A ``.pt2`` is a zip archive: before handing it to ``torch.export.load`` we check its entry
count, total uncompressed size and compression ratio, so that a zip bomb posing as a model
fails fast instead of exhausting the disk or memory of the conversion worker.
"""

from __future__ import annotations

import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from converters.errors import ConversionError, ConversionInputError

# Opsets the converters are tested with; older or newer ones are refused with a hint.
MIN_OPSET, MAX_OPSET = 13, 18

# Limits for .pt2 archives (torch.export.save writes ZIP_STORED entries: ratio ~1).
PT2_MAX_ENTRIES = 10_000
PT2_MAX_UNCOMPRESSED = 8 * 1024**3
PT2_MAX_RATIO = 100.0

Dim = int | str


@dataclass
class TensorSpec:
    name: str
    shape: list[Dim]
    dtype: str

    @property
    def symbolic_dims(self) -> list[str]:
        return [d for d in self.shape if isinstance(d, str)]


@dataclass
class ModelInfo:
    format: str  # "onnx" | "pt2"
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    opset: int | None = None
    producer: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def model_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix in (".pt2", ".pt", ".ep"):
        return "pt2"
    if suffix == ".pte":
        return "executorch"
    raise ConversionInputError(
        f"unsupported model file {Path(path).name!r}",
        hint="upload an ONNX model (.onnx) or a torch.export program saved with torch.export.save (.pt2)",
    )


def inspect_model(path: str | Path) -> ModelInfo:
    path = Path(path)
    if not path.is_file():
        raise ConversionInputError(f"model file not found: {path}")
    fmt = model_format(path)
    if fmt == "executorch":
        raise ConversionInputError(
            f"{path.name} is an ExecuTorch program (.pte): it is benchmarked as it is, not "
            "converted or used as a validation reference",
            hint="upload the .pt2 or ONNX model it came from to convert it",
        )
    return inspect_onnx(path) if fmt == "onnx" else inspect_pt2(path)


# ---------------------------------------------------------------------------- .pte

# An ExecuTorch program is a flatbuffer whose file identifier (bytes 4..8) is "ET" and a
# two-digit schema version ("ET12" for the executorch 1.x program schema, program.fbs).
PTE_IDENTIFIER = b"ET"


def is_pte(head: bytes) -> bool:
    """Whether the first 8 bytes of a file are an ExecuTorch program's header."""
    return len(head) >= 8 and head[4:6] == PTE_IDENTIFIER and head[6:8].isdigit()


def pte_signature(path: str | Path, method: str = "forward") -> dict[str, Any]:
    """Methods and the I/O of ``method`` (or the program's first), read by ``executorch.runtime``,
    which verifies the flatbuffer while loading it. Tensor names are ``input_i``/``output_i``
    (a .pte keeps positions, not names)."""
    from executorch.runtime import Runtime, Verification

    program = Runtime.get().load_program(Path(path), verification=Verification.InternalConsistency)
    names = sorted(program.method_names)
    if not names:
        raise ConversionInputError(f"{Path(path).name} holds no method to run")
    chosen = method if method in names else names[0]
    meta = program.metadata(chosen)

    def rows(count: int, get: Any, prefix: str) -> list[dict[str, Any]]:
        out = []
        for i in range(count):
            info = get(i)
            out.append(
                {
                    "name": f"{prefix}_{i}",
                    "shape": [int(d) for d in info.sizes()],
                    "dtype": PTE_DTYPES.get(int(info.dtype()), f"scalar_type_{int(info.dtype())}"),
                }
            )
        return out

    return {
        "method": chosen,
        "methods": names,
        "inputs": rows(meta.num_inputs(), meta.input_tensor_meta, "input"),
        "outputs": rows(meta.num_outputs(), meta.output_tensor_meta, "output"),
    }


# c10::ScalarType codes (executorch/runtime/core/portable_type/scalar_type.h) -> numpy names
PTE_DTYPES: dict[int, str] = {
    0: "uint8",
    1: "int8",
    2: "int16",
    3: "int32",
    4: "int64",
    5: "float16",
    6: "float32",
    7: "float64",
    11: "bool",
}


# ---------------------------------------------------------------------------- ONNX


def inspect_onnx(path: str | Path) -> ModelInfo:
    import onnx

    if not Path(path).is_file():  # our side failed to hand the file over, not the upload
        raise ConversionError(
            f"the converter's input file is missing: {Path(path).name} was not found in its "
            "work directory",
            step="load",
            hint="this is a LatencyLab fault, not a problem with the model; retry, and report "
            "it with the conversion log if it persists",
        )
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # DecodeError and friends
        raise ConversionInputError(
            f"{Path(path).name} is not a valid ONNX model ({type(exc).__name__}: {exc})",
            hint="upload a file written by onnx.save / torch.onnx.export",
        ) from exc
    return onnx_signature(model)


def onnx_signature(model: Any) -> ModelInfo:
    """Inputs (initializers excluded), outputs and opset of a loaded ``onnx.ModelProto``."""
    from onnx import helper

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    initializers = {init.name for init in model.graph.initializer}

    def spec(vi: Any) -> TensorSpec:
        tt = vi.type.tensor_type
        dims: list[Dim] = []
        for i, d in enumerate(tt.shape.dim):
            if d.HasField("dim_value"):
                dims.append(int(d.dim_value))
            else:
                dims.append(d.dim_param or f"{vi.name}_dim{i}")
        dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type).name if tt.elem_type else "unknown"
        return TensorSpec(vi.name, dims, dtype)

    inputs = [spec(vi) for vi in model.graph.input if vi.name not in initializers]
    outputs = [spec(vi) for vi in model.graph.output]
    return ModelInfo("onnx", inputs, outputs, opset, model.producer_name)


def check_opset(info: ModelInfo) -> None:
    if info.opset is None:
        raise ConversionInputError("the ONNX model declares no default-domain opset")
    if info.opset > MAX_OPSET:
        raise ConversionInputError(
            f"ONNX opset {info.opset} is newer than the converters support ({MIN_OPSET}-{MAX_OPSET})",
            hint="re-export with torch.onnx.export(..., opset_version=17) or convert it down with "
            "onnx.version_converter.convert_version(model, 17)",
        )
    if info.opset < MIN_OPSET:
        raise ConversionInputError(
            f"ONNX opset {info.opset} is older than the converters support ({MIN_OPSET}-{MAX_OPSET})",
            hint="upgrade it with onnx.version_converter.convert_version(model, 17) and upload again",
        )


# ---------------------------------------------------------------------------- .pt2


def check_pt2_archive(
    path: str | Path,
    max_entries: int = PT2_MAX_ENTRIES,
    max_uncompressed: int = PT2_MAX_UNCOMPRESSED,
    max_ratio: float = PT2_MAX_RATIO,
) -> None:
    """Reject archives that are not torch.export programs or that would inflate hugely."""
    from converters.archives import check_zip

    name = Path(path).name
    save_hint = (
        "save the model with torch.export.save(torch.export.export(model, args), 'model.pt2')"
    )
    if not zipfile.is_zipfile(path):
        raise ConversionInputError(
            f"{name} is not a torch.export program (.pt2 files are zip archives)", hint=save_hint
        )
    infos = check_zip(
        path, max_uncompressed, max_entries, max_ratio,
        hint="torch.export.save writes uncompressed archives; re-save the model with it, or "
        "upload an ONNX file with external data",
    )  # fmt: skip
    names = [i.filename for i in infos]
    if not any(
        n.endswith(("archive_format", "serialized_exported_program.json")) or "/models/" in n
        for n in names
    ):
        raise ConversionInputError(
            f"{name} is a zip archive but not a torch.export program (no exported program inside; "
            "a torch.save checkpoint or TorchScript file is not enough)",
            hint=save_hint,
        )


def load_pt2(path: str | Path) -> Any:
    """Check the archive, then ``torch.export.load`` it; returns an ExportedProgram."""
    check_pt2_archive(path)
    import torch

    try:
        ep = torch.export.load(str(path))
    except Exception as exc:
        raise ConversionInputError(
            f"{Path(path).name} could not be loaded as a torch.export program "
            f"({type(exc).__name__}: {str(exc)[:300]})",
            hint=f"re-save it with torch.export.save using torch {torch.__version__.split('+')[0]}",
        ) from exc
    if not isinstance(ep, torch.export.ExportedProgram):
        raise ConversionInputError(f"{Path(path).name} does not hold a torch.export program")
    return ep


def _fake_spec(name: str, val: Any) -> TensorSpec:
    shape: list[Dim] = []
    for d in getattr(val, "shape", ()):
        # a SymInt converts to int (its hint) without complaint: keep it symbolic
        shape.append(int(d) if isinstance(d, int) else str(d))
    return TensorSpec(name, shape, str(getattr(val, "dtype", "unknown")).replace("torch.", ""))


def program_info(ep: Any) -> ModelInfo:
    user_inputs = set(ep.graph_signature.user_inputs)
    inputs = [
        _fake_spec(n.name, n.meta.get("val"))
        for n in ep.graph.nodes
        if n.op == "placeholder" and n.name in user_inputs
    ]
    out_node = next(n for n in ep.graph.nodes if n.op == "output")
    out_args = (
        out_node.args[0] if isinstance(out_node.args[0], (list, tuple)) else [out_node.args[0]]
    )
    outputs = [
        _fake_spec(getattr(a, "name", f"output_{i}"), getattr(a, "meta", {}).get("val"))
        for i, a in enumerate(out_args)
    ]
    # Only user outputs (mutated buffers come first in the output node).
    outputs = (
        outputs[-len(ep.graph_signature.user_outputs) :]
        if ep.graph_signature.user_outputs
        else outputs
    )
    return ModelInfo("pt2", inputs, outputs, None, "torch.export")


def inspect_pt2(path: str | Path) -> ModelInfo:
    return program_info(load_pt2(path))


def resolve_shapes(
    inputs: list[TensorSpec], input_shapes: dict[str, list[int]] | None, purpose: str = ""
) -> dict[str, list[int]]:
    """Concrete shapes for every input; raise a clear error for unknowable dimensions."""
    input_shapes = dict(input_shapes or {})
    unknown = set(input_shapes) - {t.name for t in inputs}
    if unknown:
        raise ConversionInputError(
            f"input_shapes names unknown inputs {sorted(unknown)}; the model's inputs are "
            f"{[t.name for t in inputs]}"
        )
    out: dict[str, list[int]] = {}
    for t in inputs:
        if t.name in input_shapes:
            given = [int(d) for d in input_shapes[t.name]]
            if len(given) != len(t.shape) or any(
                isinstance(d, int) and d != g for d, g in zip(t.shape, given, strict=False)
            ):
                raise ConversionInputError(
                    f"input_shapes[{t.name!r}] = {given} does not fit the model's shape {t.shape}"
                )
            out[t.name] = given
        elif t.symbolic_dims:
            raise ConversionInputError(
                f"input {t.name!r} has dynamic dimensions {t.symbolic_dims} (shape {t.shape}) and no "
                f"size was given{' for ' + purpose if purpose else ''}",
                hint=f"add input_shapes={{{t.name!r}: [...]}} to the request with a concrete size for "
                "every dynamic dimension, e.g. batch 1",
            )
        else:
            out[t.name] = [int(d) for d in t.shape]
    return out
