"""Runs inside the onnx2tf venv (.venvs/onnx2tf): ``python onnx2tf_worker.py REQ.json RESP.json``.

Contract (JSON):
  request:  {"onnx": path, "out_dir": dir, "input_shapes": {name: [ints]}, "precision": "fp32|fp16|int8"}
  response: {"ok": true, "tflite": path, "all": {precision: path}}
            {"ok": false, "error": message, "op": op-or-null, "hint": text, "traceback": text}
Only the standard library, onnx and onnx2tf are imported: this file must not import converters.
"""

from __future__ import annotations

import json
import re
import sys
import traceback
from pathlib import Path

SUFFIX = {
    "fp32": "_float32.tflite",
    "fp16": "_float16.tflite",
    "int8": "_dynamic_range_quant.tflite",
}


def main(req_path: str, resp_path: str) -> int:
    req = json.loads(Path(req_path).read_text())
    resp: dict = {"ok": False}
    try:
        import os

        import numpy as np
        import onnx2tf

        # onnx2tf downloads a calibration/sample image file into the cwd unless it is there
        # already; hosts here are offline, so provide seeded random data of the same shape.
        os.makedirs(req["out_dir"], exist_ok=True)
        os.chdir(req["out_dir"])
        sample = "calibration_image_sample_data_20x128x128x3_float32.npy"
        if not os.path.exists(sample):
            np.save(sample, np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32))
        shapes = req.get("input_shapes") or {}
        onnx2tf.convert(
            input_onnx_file_path=req["onnx"],
            output_folder_path=req["out_dir"],
            overwrite_input_shape=[f"{k}:{','.join(str(d) for d in v)}" for k, v in shapes.items()]
            or None,
            copy_onnx_input_output_names_to_tflite=True,
            output_dynamic_range_quantized_tflite=req["precision"] == "int8",
            non_verbose=True,
        )
        stem = Path(req["onnx"]).stem
        found = {p: str(Path(req["out_dir"]) / f"{stem}{s}") for p, s in SUFFIX.items()}
        found = {p: f for p, f in found.items() if Path(f).exists()}
        if req["precision"] not in found:
            raise RuntimeError(f"onnx2tf wrote no {req['precision']} model in {req['out_dir']}")
        resp = {"ok": True, "tflite": found[req["precision"]], "all": found}
    except BaseException as exc:  # report everything, including SystemExit from onnx2tf
        text = f"{type(exc).__name__}: {exc}"
        m = re.search(r"(?:OP|op_type|onnx_op_type)[:= ]+['\"]?([A-Za-z0-9_]+)", text)
        resp = {
            "ok": False,
            "error": text[:4000],
            "op": m.group(1) if m else None,
            "hint": "onnx2tf could not convert this model; try TFLiteFromOnnx(backend='onnx2torch') "
            "or convert from the .pt2 program with TFLiteFromTorch",
            "traceback": traceback.format_exc()[-8000:],
        }
    Path(resp_path).write_text(json.dumps(resp))
    return 0 if resp["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
