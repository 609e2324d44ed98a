"""TFLite steps: ``TFLiteFromTorch`` (litert-torch) and ``TFLiteFromOnnx`` (onnx2tf or bridge).

Precisions: fp32; fp16 (weights stored as fp16, compute in fp32 on CPU); int8 = dynamic-range
quantization (int8 per-channel weights, activations quantized on the fly). The litert-torch
paths quantize the fp32 model with ai-edge-quantizer; onnx2tf produces its own fp16 and
dynamic-range models.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from converters.base import ConversionStep
from converters.bridge import infer_perm, onnx_to_torch, seeded_inputs
from converters.errors import BackendMissingError, ConversionError, ConversionInputError
from converters.inspect import check_opset, inspect_onnx, load_pt2, program_info
from converters.simplify import simplified_onnx

log = logging.getLogger("converters")
REPO = Path(__file__).resolve().parent.parent
ONNX2TF_WORKER = Path(__file__).resolve().parent / "envs" / "onnx2tf_worker.py"


def onnx2tf_python() -> Path:
    return Path(os.environ.get("LATENCYLAB_ONNX2TF_PYTHON", REPO / ".venvs/onnx2tf/bin/python"))


def tflite_io(path: str | Path) -> dict[str, Any]:
    """Signature key and inputs/outputs (name, shape, dtype) of a .tflite file.

    Models without a SignatureDef (``signature: None``) list their raw input/output tensors.
    """
    from ai_edge_litert.interpreter import Interpreter

    try:
        interp = Interpreter(model_path=str(path))
        interp.allocate_tensors()
    except RuntimeError as exc:
        if "Select TensorFlow op" in str(exc) or "Flex" in str(exc):
            raise ConversionError(
                f"{Path(path).name} needs Select-TF (Flex) ops, which the LiteRT interpreter and most "
                "devices do not ship",
                step="TFLite",
                op="Flex",
                hint="convert from the .pt2 with TFLiteFromTorch, or try TFLiteFromOnnx(backend='onnx2torch')",
            ) from exc
        raise
    sigs = interp.get_signature_list()

    def row(d: dict[str, Any], name: str) -> dict[str, Any]:
        return {
            "name": name,
            "shape": [int(x) for x in d["shape"]],
            "dtype": np.dtype(d["dtype"]).name,
        }

    if not sigs:
        return {
            "signature": None,
            "inputs": [row(d, d["name"]) for d in interp.get_input_details()],
            "outputs": [row(d, d["name"]) for d in interp.get_output_details()],
        }
    key = next(iter(sigs))
    runner = interp.get_signature_runner(key)
    ins, outs = runner.get_input_details(), runner.get_output_details()
    return {
        "signature": key,
        "inputs": [row(ins[n], n) for n in sigs[key]["inputs"]],
        "outputs": [row(outs[n], n) for n in sigs[key]["outputs"]],
    }


def quantize_tflite(fp32: Path, out: Path, precision: str) -> None:
    """fp16 weights (FLOAT_CASTING) or int8 dynamic range with ai-edge-quantizer."""
    if precision == "fp32":
        shutil.copyfile(fp32, out)
        return
    from ai_edge_quantizer import qtyping, quantizer, recipe
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    if precision == "int8":
        q = quantizer.Quantizer(str(fp32), recipe.dynamic_wi8_afp32())
    else:
        q = quantizer.Quantizer(str(fp32))
        q.add_weight_only_config(
            ".*",
            qtyping.TFLOperationName.ALL_SUPPORTED,
            16,
            algorithm_key=AlgorithmName.FLOAT_CASTING,
        )
    q.quantize().export_model(str(out), overwrite=True)


def _litert_from_module(module: Any, sample: tuple[Any, ...], out: Path, precision: str) -> None:
    import litert_torch

    try:
        module = module.eval()
    except NotImplementedError:  # ep.module() refuses .eval(); flag it as inference directly
        for m in module.modules():
            m.training = False
    edge = litert_torch.convert(module, sample)
    fp32 = out.with_name(out.stem + ".fp32-tmp.tflite") if precision != "fp32" else out
    edge.export(str(fp32))
    if precision != "fp32":
        quantize_tflite(fp32, out, precision)
        fp32.unlink()


def _pair_io(
    src_specs: list[Any], art: list[dict[str, Any]], by_name: bool, channel_last: bool
) -> list[dict[str, Any]]:
    """Match artifact tensors to source tensors (by name when the converter keeps names)."""
    names = {a["name"]: a for a in art}
    rows = []
    for i, t in enumerate(src_specs):
        a = names.get(t.name) if by_name else None
        a = a or (art[i] if i < len(art) else None)
        if a is None:
            continue
        rows.append(
            {
                "name": a["name"],
                "source_name": t.name,
                "shape": a["shape"],
                "dtype": a["dtype"],
                "perm": infer_perm(t.shape, a["shape"], channel_last),
            }
        )
    return rows


class TFLiteFromTorch(ConversionStep):
    """``.pt2`` program -> TFLite with litert-torch (inputs stay NCHW, names ``args_i``)."""

    target = "tflite"
    source_format = "pt2"
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16", "int8")
    suffix = ".tflite"

    def _convert(self, src: Path, out: Path) -> dict[str, Any]:
        import torch

        ep = load_pt2(src)
        info = program_info(ep)
        shapes = self.static_shapes(info)
        arrays = seeded_inputs([(t.name, shapes[t.name], t.dtype) for t in info.inputs])
        sample = tuple(torch.from_numpy(arrays[t.name]) for t in info.inputs)
        _litert_from_module(ep.module(), sample, out, self.precision)
        io = tflite_io(out)
        return {
            "backend": "litert-torch",
            "signature": io["signature"],
            "inputs": _pair_io(info.inputs, io["inputs"], False, False),
            "outputs": _pair_io(info.outputs, io["outputs"], False, False),
            "layout": "unchanged",
        }


class TFLiteFromOnnx(ConversionStep):
    """ONNX -> TFLite with ``backend`` = ``"auto"`` (default), ``"onnx2torch"`` or ``"onnx2tf"``.

    * ``onnx2torch``: onnx2torch bridge (constant-folded, see ``converters.bridge``) then
      litert-torch, in this process; tensors keep their NCHW layout.
    * ``onnx2tf``: onnx2tf in its own venv (``converters/envs/setup_onnx2tf.sh``) as a
      subprocess with a JSON contract; 3-5D tensors become channel-last (NCHW -> NHWC) and
      the artifact metadata records a ``perm`` per input/output so runners transpose.
    * ``auto``: the bridge first (faster, no TensorFlow, and it handled every zoo model while
      onnx2tf emitted Flex ops for the ViT), onnx2tf when the bridge fails.

    Both backends get the graph after the shape-folding pass (``converters.simplify``, with
    the static input shapes), so ``Shape -> Gather -> Concat -> Reshape`` chains of exported
    transformers reach them as constant reshapes; ``simplify=False`` (an option) skips it.
    The pass's report is the artifact metadata's ``simplify``.
    """

    target = "tflite"
    source_format = "onnx"
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16", "int8")
    suffix = ".tflite"

    def _convert(self, src: Path, out: Path) -> dict[str, Any]:
        info = inspect_onnx(src)
        check_opset(info)
        shapes = self.static_shapes(info)
        backend = self.options.get("backend", "auto")
        if backend not in ("auto", "onnx2torch", "onnx2tf"):
            raise ConversionError(
                f"unknown TFLite backend {backend!r}",
                step=self.name,
                hint="use backend='auto', 'onnx2torch' or 'onnx2tf'",
            )
        meta: dict[str, Any] = {}
        if backend in ("auto", "onnx2torch"):
            try:
                meta["simplify"] = self._run_bridge(src, out, info, shapes)
                backend = "onnx2torch"
            except ConversionInputError:
                raise
            except Exception as exc:
                if backend == "onnx2torch" or not onnx2tf_python().exists():
                    raise
                log.warning("onnx2torch bridge failed (%s); falling back to onnx2tf", exc)
                meta["fallback_from"] = {
                    "backend": "onnx2torch",
                    "error": f"{type(exc).__name__}: {exc}"[:1000],
                }
                backend = "onnx2tf"
        if backend == "onnx2tf":
            fp32 = out.with_name(out.stem + ".fp32-tmp.tflite") if self.precision != "fp32" else out
            if self.options.get("simplify", True):
                with simplified_onnx(src, shapes, out.parent) as (graph, report):
                    meta["simplify"] = report
                    self._run_onnx2tf(graph, fp32, shapes)
            else:
                self._run_onnx2tf(src, fp32, shapes)
            if self.precision != "fp32":  # same quantizer as the litert-torch paths
                quantize_tflite(fp32, out, self.precision)
                fp32.unlink()
        by_name = channel_last = backend == "onnx2tf"
        io = tflite_io(out)
        out_shapes = _static_output_shapes(src, shapes)
        for t in info.outputs:
            t.shape = out_shapes.get(t.name, t.shape)
        for t in info.inputs:
            t.shape = list(shapes[t.name])
        return {
            **meta,
            "backend": backend,
            "signature": io["signature"],
            "inputs": _pair_io(info.inputs, io["inputs"], by_name, channel_last),
            "outputs": _pair_io(info.outputs, io["outputs"], by_name, channel_last),
            "layout": "channel_last" if channel_last else "unchanged",
            "opset": info.opset,
        }

    def _run_bridge(
        self, src: Path, out: Path, info: Any, shapes: dict[str, list[int]]
    ) -> dict[str, Any] | None:
        """onnx2torch -> litert-torch; returns the simplification report."""
        import torch

        arrays = seeded_inputs([(t.name, shapes[t.name], t.dtype) for t in info.inputs])
        sample = tuple(torch.from_numpy(arrays[t.name]) for t in info.inputs)
        module = onnx_to_torch(src, shapes, simplify=self.options.get("simplify", True))
        _litert_from_module(module, sample, out, self.precision)
        report: dict[str, Any] | None = module.meta.get("simplify")
        return report

    def _run_onnx2tf(self, src: Path, out: Path, shapes: dict[str, list[int]]) -> None:
        py = onnx2tf_python()
        if not py.exists():
            raise BackendMissingError(
                f"the onnx2tf environment is not installed ({py} is missing)",
                step=self.name,
                hint="run `bash converters/envs/setup_onnx2tf.sh`, or use backend='onnx2torch'",
            )
        work = out.with_name(out.name + ".onnx2tf")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        req = {"onnx": str(src), "out_dir": str(work), "input_shapes": shapes, "precision": "fp32"}
        (work / "request.json").write_text(json.dumps(req))
        proc = subprocess.run(
            [str(py), str(ONNX2TF_WORKER), str(work / "request.json"), str(work / "response.json")],
            stdout=sys.stderr,
            stderr=subprocess.STDOUT,
            timeout=self.options.get("timeout_s", 1800),
            env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"},
            check=False,
        )
        resp_path = work / "response.json"
        resp = json.loads(resp_path.read_text()) if resp_path.exists() else {}
        if proc.returncode != 0 or not resp.get("ok"):
            raise ConversionError(
                resp.get("error")
                or f"onnx2tf worker exited with status {proc.returncode} (see the log)",
                step=f"{self.name}[onnx2tf]",
                op=resp.get("op"),
                hint=resp.get("hint"),
            )
        shutil.move(resp["tflite"], out)
        if not self.options.get("keep_workdir"):
            shutil.rmtree(work, ignore_errors=True)


def _static_output_shapes(src: Path, shapes: dict[str, list[int]]) -> dict[str, list[Any]]:
    """Output shapes of the ONNX graph for the given input shapes (ONNX shape inference)."""
    import onnx

    model = onnx.load(str(src), load_external_data=False)
    for vi in model.graph.input:
        if vi.name in shapes:
            for d, size in zip(vi.type.tensor_type.shape.dim, shapes[vi.name], strict=False):
                d.ClearField("dim_param")
                d.dim_value = int(size)
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:
        return {}
    return {
        vi.name: [
            d.dim_value if d.HasField("dim_value") else d.dim_param
            for d in vi.type.tensor_type.shape.dim
        ]
        for vi in model.graph.output
    }
