"""CoreML ML Program steps: ``CoreMLFromTorch`` and ``CoreMLFromOnnx`` (via onnx2torch).

The artifact is an ``.mlpackage`` directory. ``fp16``/``fp32`` select coremltools'
``compute_precision``. coremltools converts on Linux but can only predict on macOS, so
validation of CoreML artifacts on Linux reports ``passed: None``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, ClassVar

from converters.base import ConversionStep
from converters.bridge import onnx_to_torch, seeded_inputs
from converters.inspect import ModelInfo, check_opset, inspect_onnx, load_pt2, program_info

DEFAULT_TARGET = "iOS16"


def coreml_spec_io(path: str | Path) -> dict[str, Any]:
    """Inputs/outputs and model type from the spec (works on Linux: no model load)."""
    import coremltools as ct

    spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()

    def shape(f: Any) -> list[int]:
        return (
            [int(d) for d in f.type.multiArrayType.shape]
            if f.type.HasField("multiArrayType")
            else []
        )

    return {
        "model_type": spec.WhichOneof("Type"),
        "spec_version": spec.specificationVersion,
        "inputs": [{"name": f.name, "shape": shape(f)} for f in spec.description.input],
        "outputs": [{"name": f.name, "shape": shape(f)} for f in spec.description.output],
    }


class _CoreMLStep(ConversionStep):
    target = "coreml"
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16")
    suffix = ".mlpackage"

    def _save(
        self, model: Any, info: ModelInfo, out: Path, shapes: dict[str, list[int]]
    ) -> dict[str, Any]:
        if out.exists():
            shutil.rmtree(out)
        model.save(str(out))
        io = coreml_spec_io(out)
        pair = lambda specs, rows: [  # noqa: E731
            {
                "name": r["name"],
                "source_name": t.name,
                "shape": r["shape"] or shapes.get(t.name, t.shape),
                "dtype": t.dtype,
                "perm": None,
            }
            for t, r in zip(specs, rows, strict=False)
        ]
        return {
            "inputs": pair(info.inputs, io["inputs"]),
            "outputs": pair(info.outputs, io["outputs"]),
            "model_type": io["model_type"],
            "deployment_target": self.options.get("deployment_target", DEFAULT_TARGET),
        }

    def _convert_torch(self, module_or_ep: Any, sample: tuple[Any, ...], names: list[str]) -> Any:
        import coremltools as ct
        import torch

        precision = ct.precision.FLOAT16 if self.precision == "fp16" else ct.precision.FLOAT32
        target = getattr(ct.target, self.options.get("deployment_target", DEFAULT_TARGET))
        if isinstance(module_or_ep, torch.export.ExportedProgram):
            ep = module_or_ep
        else:
            try:
                ep = torch.export.export(module_or_ep, sample)
            except Exception:  # onnx2torch graphs sometimes defeat torch.export: trace instead
                traced = torch.jit.trace(module_or_ep, sample)
                inputs = [
                    ct.TensorType(name=n, shape=tuple(s.shape))
                    for n, s in zip(names, sample, strict=True)
                ]
                return ct.convert(
                    traced,
                    inputs=inputs,
                    convert_to="mlprogram",
                    compute_precision=precision,
                    minimum_deployment_target=target,
                )
        return ct.convert(
            ep.run_decompositions({}),
            convert_to="mlprogram",
            compute_precision=precision,
            minimum_deployment_target=target,
        )


class CoreMLFromTorch(_CoreMLStep):
    """``.pt2`` program -> CoreML mlprogram. Dynamic dims are fixed with ``input_shapes``."""

    source_format = "pt2"

    def _convert(self, src: Path, out: Path) -> dict[str, Any]:
        import torch

        ep = load_pt2(src)
        info = program_info(ep)
        shapes = self.static_shapes(info)
        dynamic = any(t.symbolic_dims for t in info.inputs)
        arrays = seeded_inputs([(t.name, shapes[t.name], t.dtype) for t in info.inputs])
        sample = tuple(torch.from_numpy(arrays[t.name]) for t in info.inputs)
        model = self._convert_torch(
            ep.module() if dynamic else ep, sample, [t.name for t in info.inputs]
        )
        return {"backend": "coremltools", **self._save(model, info, out, shapes)}


class CoreMLFromOnnx(_CoreMLStep):
    """ONNX -> torch (onnx2torch) -> torch.export (or trace) -> CoreML mlprogram."""

    source_format = "onnx"

    def _convert(self, src: Path, out: Path) -> dict[str, Any]:
        import torch

        info = inspect_onnx(src)
        check_opset(info)
        shapes = self.static_shapes(info)
        arrays = seeded_inputs([(t.name, shapes[t.name], t.dtype) for t in info.inputs])
        sample = tuple(torch.from_numpy(arrays[t.name]) for t in info.inputs)
        module = onnx_to_torch(src, shapes, simplify=self.options.get("simplify", True))
        model = self._convert_torch(module, sample, [t.name for t in info.inputs])
        meta = {"backend": "onnx2torch+coremltools", "simplify": module.meta.get("simplify")}
        return {**meta, **self._save(model, info, out, shapes)}
