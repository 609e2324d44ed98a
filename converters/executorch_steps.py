"""ExecuTorch steps: ``ExecuTorchFromTorch`` (``.pt2``) and ``ExecuTorchFromOnnx`` (onnx2torch).

Both re-export the program at the job's static shapes (``torch.export``), lower it with
``to_edge_transform_and_lower(..., partitioner=[XnnpackPartitioner()])`` and serialise it with
``.to_executorch()`` into a ``.pte`` flatbuffer. Precisions (executorch 1.5.1):

* ``fp32``: the program as exported; XNNPACK takes the partitions it supports, the rest runs on
  the portable kernels.
* ``fp16``: the module is cast to float16 (weights, activations and the program's inputs and
  outputs) before the export. The 1.5.1 XNNPACK partitioner accepts float16 for every op it
  delegates except GELU (``generic_node_configs.py``: "GELU does not support fp16"), which
  falls back to the portable kernels; bfloat16 is not offered.
* ``int8``: PT2E static quantization with the ``XNNPACKQuantizer``
  (``get_symmetric_quantization_config(is_per_channel=True)``: int8 per-channel weights,
  per-tensor activations), calibrated on ``CALIBRATION_BATCHES`` seeded batches drawn with
  other seeds than the validation's. A graph in which the quantizer annotates nothing is
  refused: it would be an fp32 program labelled int8.

The artifact metadata records which operators were delegated to XNNPACK and which fell back
to portable kernels (``delegation``: ``executorch.devtools.backend_debug.get_delegation_info``
on the lowered graph), and the program's I/O in call order (a ``.pte`` keeps positions, so the
source's input names map to positions).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, ClassVar

from converters.base import ConversionStep
from converters.bridge import onnx_to_torch, seeded_inputs
from converters.errors import ConversionError
from converters.inspect import (
    ModelInfo,
    check_opset,
    inspect_onnx,
    load_pt2,
    program_info,
    pte_signature,
)

CALIBRATION_BATCHES = 8
# Graph nodes that are bookkeeping, not computation (tuple unpacking of a delegate's outputs).
_BOOKKEEPING = ("getitem",)


def delegation_summary(graph_module: Any) -> dict[str, Any]:
    """Delegated / portable operators of a lowered graph (``get_delegation_info``)."""
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(graph_module)
    delegated: dict[str, int] = {}
    portable: dict[str, int] = {}
    for op, row in sorted(info.delegation_by_operator.items()):
        if op in _BOOKKEEPING:
            continue
        if row.delegated:
            delegated[op] = int(row.delegated)
        if row.non_delegated:
            portable[op] = int(row.non_delegated)
    return {
        "backend": "XnnpackBackend",
        "delegated_subgraphs": int(info.num_delegated_subgraphs),
        "delegated_nodes": sum(delegated.values()),
        "portable_nodes": sum(portable.values()),
        "delegated_ops": delegated,
        "portable_ops": portable,
        "source": "executorch.devtools.backend_debug.get_delegation_info",
    }


class _ExecuTorchStep(ConversionStep):
    target = "executorch"
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16", "int8")
    suffix = ".pte"

    def _lower(
        self, module: Any, info: ModelInfo, shapes: dict[str, list[int]], out: Path
    ) -> dict[str, Any]:
        import torch
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        specs = [(t.name, shapes[t.name], t.dtype) for t in info.inputs]
        sample = tuple(torch.from_numpy(a) for a in seeded_inputs(specs).values())
        meta: dict[str, Any] = {}
        if self.precision == "fp16":
            module = copy.deepcopy(module).half()
            sample = tuple(s.half() if s.is_floating_point() else s for s in sample)
        elif self.precision == "int8":
            module, meta["quantization"] = self._quantize(module, sample, specs)
        _inference_mode(module)
        ep = torch.export.export(module, sample, strict=False)
        edge = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()])
        meta["delegation"] = delegation_summary(edge.exported_program().graph_module)
        program = edge.to_executorch()
        out.write_bytes(program.buffer)
        sig = pte_signature(out)  # shapes and dtypes as the program has them
        return {
            **meta,
            "method": sig["method"],
            "inputs": _pair(info.inputs, sig["inputs"], by_source_name=True),
            "outputs": _pair(info.outputs, sig["outputs"], by_source_name=False),
            "executorch_version": _version(),
        }

    def _quantize(
        self, module: Any, sample: tuple[Any, ...], specs: list[Any]
    ) -> tuple[Any, dict[str, Any]]:
        import torch
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        quantizer = XNNPACKQuantizer()
        quantizer.set_global(get_symmetric_quantization_config(is_per_channel=True))
        _inference_mode(module)
        graph = torch.export.export(module, sample, strict=False).module()
        prepared = prepare_pt2e(graph, quantizer)
        observers = sum(1 for n in prepared.graph.nodes if n.op == "call_module")
        if observers == 0:
            raise ConversionError(
                "the XNNPACK quantizer found nothing to quantize in this model (no convolution, "
                "linear or other op it annotates), so an int8 program would be the fp32 one",
                step=self.name,
                hint="benchmark it at fp32 or fp16",
            )
        with torch.no_grad():
            for seed in range(1, CALIBRATION_BATCHES + 1):  # seed 0 is the validation's
                batch = seeded_inputs(specs, seed)
                prepared(*(torch.from_numpy(a) for a in batch.values()))
        converted = convert_pt2e(prepared)
        return converted, {
            "scheme": "pt2e static int8: per-channel symmetric weights, per-tensor activations",
            "quantizer": "executorch.backends.xnnpack.quantizer.XNNPACKQuantizer",
            "calibration_batches": CALIBRATION_BATCHES,
            "calibration_seeds": [1, CALIBRATION_BATCHES],
            "observers": observers,
        }


class ExecuTorchFromTorch(_ExecuTorchStep):
    """``.pt2`` program -> ``.pte`` (XNNPACK). Dynamic dims are fixed with ``input_shapes``."""

    source_format = "pt2"

    def _convert(self, src: Path, out: Path) -> dict[str, Any]:
        ep = load_pt2(src)
        info = program_info(ep)
        shapes = self.static_shapes(info)
        return {"backend": "executorch+xnnpack", **self._lower(ep.module(), info, shapes, out)}


class ExecuTorchFromOnnx(_ExecuTorchStep):
    """ONNX -> torch (the onnx2torch bridge, constants folded) -> ``.pte`` (XNNPACK)."""

    source_format = "onnx"

    def _convert(self, src: Path, out: Path) -> dict[str, Any]:
        info = inspect_onnx(src)
        check_opset(info)
        shapes = self.static_shapes(info)
        module = onnx_to_torch(src)
        meta = self._lower(module, info, shapes, out)
        return {"backend": "onnx2torch+executorch+xnnpack", "opset": info.opset, **meta}


def _pair(
    specs: list[Any], rows: list[dict[str, Any]], by_source_name: bool
) -> list[dict[str, Any]]:
    """The program's tensors (by position) with the source tensors they stand for. Inputs are
    fed by the source's names (``name`` = ``source_name``), outputs keep the program's."""
    return [
        {
            "name": t.name if by_source_name else row["name"],
            "source_name": t.name,
            "shape": row["shape"],
            "dtype": row["dtype"],
            "perm": None,
        }
        for t, row in zip(specs, rows, strict=False)
    ]


def _inference_mode(module: Any) -> None:
    try:
        module.eval()
    except NotImplementedError:  # ep.module() refuses .eval(); flag it as inference directly
        for m in module.modules():
            m.training = False


def _version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("executorch")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
