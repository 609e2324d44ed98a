"""Read a model's signature in a throwaway subprocess (the coordinator never imports torch,
LiteRT or coremltools itself, and a hostile file cannot take the server down).

    python -m server.inspect_worker --format pt2|tflite|mlpackage PATH   -> JSON on stdout
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

# CoreML FeatureTypes.ArrayFeatureType.ArrayDataType -> numpy dtype name. The recorded dtype
# is what the agent builds random inputs in, so it must be the model's own.
_COREML_DTYPES = {
    65568: "float32",
    65600: "float64",
    65552: "float16",
    131104: "int32",
    131080: "int8",
}


def inspect_pt2(path: str) -> dict[str, Any]:
    from converters.inspect import inspect_pt2 as inspect

    info = inspect(path).to_dict()
    return {
        "inputs": info["inputs"],
        "outputs": info["outputs"],
        "opset": None,
        "extra": {"producer": "torch.export"},
    }


def inspect_tflite(path: str) -> dict[str, Any]:
    from ai_edge_litert.interpreter import Interpreter

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
        "opset": None,
        "extra": {"layout_note": "TFLite inputs as the model declares them"},
    }


def inspect_mlpackage(path: str) -> dict[str, Any]:
    import coremltools as ct

    from converters.coreml_steps import coreml_spec_io

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

    ins, outs = specs(io["inputs"]), specs(io["outputs"])
    return {
        "inputs": ins,
        "outputs": outs,
        "opset": None,
        "extra": {"model_type": io["model_type"], "spec_version": io["spec_version"]},
    }


INSPECTORS = {"pt2": inspect_pt2, "tflite": inspect_tflite, "mlpackage": inspect_mlpackage}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--format", required=True, choices=sorted(INSPECTORS))
    ap.add_argument("path")
    args = ap.parse_args()
    try:
        result = INSPECTORS[args.format](args.path)
    except ImportError as exc:
        result = {
            "error": f"this coordinator cannot read {args.format} models ({exc}); "
            "install the converter toolchain: pip install 'latencylab[convert]'",
            "status_code": 415,
        }
    except Exception as exc:
        hint = getattr(exc, "hint", None)
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        prefix = {
            "tflite": "not a valid TFLite model: ",
            "mlpackage": "not a valid CoreML package: ",
        }
        result = {
            "error": prefix.get(args.format, "")
            + msg
            + (f" ({hint})" if hint and hint not in msg else "")
        }
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
