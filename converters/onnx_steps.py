"""Steps producing ONNX and OpenVINO IR: ``OnnxFromTorch``, ``OnnxFromOnnx``, ``OpenVinoFromOnnx``."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, ClassVar

from converters.base import ConversionStep, io_entries
from converters.inspect import check_opset, inspect_onnx, load_pt2, program_info
from converters.simplify import convert_opset

DEFAULT_OPSET = 17


class OnnxFromTorch(ConversionStep):
    """``torch.export`` program (.pt2) -> ONNX with the dynamo exporter (``dynamo=True``).

    Dynamic dimensions declared in the program (``torch.export.Dim``) stay symbolic in the
    ONNX graph. Options: ``opset`` (default 17), ``optimize`` (default True).
    """

    target = "onnx"
    source_format = "pt2"
    suffix = ".onnx"

    def _convert(self, src: Path, out: Path) -> dict[str, Any]:
        import torch

        ep = load_pt2(src)
        example = _example_args(ep)
        export_onnx(ep, example, out, int(self.options.get("opset", DEFAULT_OPSET)))
        info = inspect_onnx(out)
        meta = io_entries(info)
        src_info = program_info(ep)
        for entry, t in zip(meta["inputs"], src_info.inputs, strict=False):
            entry["source_name"] = t.name
        meta.update(opset=info.opset, torch_version=torch.__version__)
        return meta


def export_onnx(ep: Any, args: tuple[Any, ...], out: Path, opset: int = DEFAULT_OPSET) -> None:
    """Dynamo export at the exporter's native opset (18), optimize, then convert down.

    Asking the exporter for opset < 18 directly converts *before* constant folding, and
    onnx's version converter then fails on e.g. ReduceMean whose axes are not constant yet.
    """
    import onnx
    import torch

    program = torch.onnx.export(
        ep,
        args,
        dynamo=True,
        opset_version=max(opset, 18),
        optimize=True,
        verify=False,
        report=False,
    )
    if program is None:  # pragma: no cover - dynamo=True always returns a program
        raise RuntimeError("torch.onnx.export returned no program")
    if opset < 18:
        try:
            model = convert_opset(program.model_proto, opset)
        except Exception as exc:
            from converters.errors import ConversionError

            raise ConversionError(
                f"the exported graph cannot be expressed in ONNX opset {opset}: {exc}",
                step="OnnxFromTorch",
                hint="request opset 17 or 18 (ops such as LayerNormalization only exist from opset 17)",
            ) from exc
        _strip_reduce_noop(model)
        onnx.checker.check_model(model)
        onnx.save(model, str(out))
    else:
        program.save(str(out))


def _strip_reduce_noop(model: Any) -> None:
    """onnx's 18->17 converter keeps ``noop_with_empty_axes=0`` on Reduce* ops, an attribute
    those ops only gained in opset 18; 0 is the default (and the only opset-17 behaviour)."""
    for node in model.graph.node:
        if node.op_type.startswith("Reduce") and node.op_type != "ReduceSum":
            keep = [
                a for a in node.attribute if not (a.name == "noop_with_empty_axes" and a.i == 0)
            ]
            del node.attribute[:]
            node.attribute.extend(keep)


def _example_args(ep: Any) -> tuple[Any, ...]:
    """Example inputs for export: the program's own sample inputs, else zeros of its shapes."""
    import torch

    sample = getattr(ep, "example_inputs", None)
    if sample is not None:
        args, kwargs = sample
        if not kwargs:
            return tuple(args)
    info = program_info(ep)
    args_list = []
    for t in info.inputs:
        shape = [d if isinstance(d, int) else 2 for d in t.shape]
        args_list.append(torch.zeros(shape, dtype=getattr(torch, t.dtype, torch.float32)))
    return tuple(args_list)


class OnnxFromOnnx(ConversionStep):
    """ONNX -> checked ONNX: opset range check, ``onnx.checker``, shape inference, copy."""

    target = "onnx"
    source_format = "onnx"
    suffix = ".onnx"

    def out_path(self, src: Path) -> Path:
        out = super().out_path(src)
        return out if out != src else out.with_name(out.stem + ".checked.onnx")

    def _convert(self, src: Path, out: Path) -> dict[str, Any]:
        import onnx

        info = inspect_onnx(src)
        check_opset(info)
        onnx.checker.check_model(str(src))
        shutil.copyfile(src, out)
        meta = io_entries(info)
        meta["opset"] = info.opset
        return meta


class OpenVinoFromOnnx(ConversionStep):
    """ONNX -> OpenVINO IR (``openvino.convert_model`` then ``save_model``).

    The artifact is a directory holding ``model.xml`` + ``model.bin``. ``fp16`` stores the
    weights compressed to fp16 (``compress_to_fp16=True``); fp32 keeps them in fp32.
    Dynamic dimensions stay dynamic unless ``input_shapes`` fixes them.
    """

    target = "openvino"
    source_format = "onnx"
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16")

    def _convert(self, src: Path, out: Path) -> dict[str, Any]:
        import openvino as ov

        info = inspect_onnx(src)
        check_opset(info)
        shapes = self.upstream_shapes()
        kwargs: dict[str, Any] = {}
        if shapes:
            kwargs["input"] = {name: ov.PartialShape(list(shape)) for name, shape in shapes.items()}
        model = ov.convert_model(str(src), **kwargs)
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        ov.save_model(model, str(out / "model.xml"), compress_to_fp16=self.precision == "fp16")
        meta = io_entries(info, shapes)
        meta.update(entry="model.xml", openvino_version=ov.get_version())
        return meta
