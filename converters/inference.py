"""Run a converted artifact on feeds, for the numerical validation (``converters.validate``).

One function per artifact format, named by the format's runtime declaration
(``latencylab.runtimes.RuntimeDecl.artifact_runner``): ``run(artifact, feeds) -> outputs``,
feeds keyed by the artifact's input names, outputs in the order of the artifact metadata's
``outputs``. Each imports its runtime when called.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from converters.base import Artifact


def run_onnx(art: Artifact, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(art.path), providers=["CPUExecutionProvider"])
    res = sess.run([o["name"] for o in art.metadata["outputs"]], feeds)
    return [np.asarray(r) for r in res]


def run_tflite(art: Artifact, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    outs_meta = art.metadata["outputs"]
    interp = Interpreter(model_path=str(art.path))
    if art.metadata.get("signature") is None:  # no SignatureDef: raw tensors by name
        interp.allocate_tensors()
        for d in interp.get_input_details():
            interp.set_tensor(d["index"], feeds[d["name"]])
        interp.invoke()
        by_name = {d["name"]: d["index"] for d in interp.get_output_details()}
        return [np.asarray(interp.get_tensor(by_name[o["name"]])) for o in outs_meta]
    runner = interp.get_signature_runner(art.metadata["signature"])
    res = runner(**feeds)
    return [np.asarray(res[o["name"]]) for o in outs_meta]


def run_openvino(art: Artifact, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import openvino as ov

    # OpenVINO's CPU plugin defaults to bf16 compute on CPUs with AVX512-BF16/AMX; runners
    # (and this check) ask for f32 so fp32/fp16-weight IRs are measured as converted.
    compiled = ov.Core().compile_model(
        str(art.path / art.metadata.get("entry", "model.xml")),
        "CPU",
        {"INFERENCE_PRECISION_HINT": "f32"},
    )
    res = compiled(feeds)
    return [np.asarray(res[compiled.outputs[i]]) for i in range(len(art.metadata["outputs"]))]


def run_executorch(art: Artifact, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The ``.pte`` through ``executorch.runtime`` (the same C++ runtime and XNNPACK kernels the
    runner measures), inputs in the program's order."""
    import torch
    from executorch.runtime import Runtime

    method = (
        Runtime.get().load_program(str(art.path)).load_method(art.metadata.get("method", "forward"))
    )
    args = tuple(
        torch.from_numpy(np.ascontiguousarray(feeds[i["name"]])) for i in art.metadata["inputs"]
    )
    outs: Any = method.execute(args)
    return [np.asarray(o.detach().numpy() if hasattr(o, "detach") else o) for o in outs]
