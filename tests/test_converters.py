"""Tests of the conversion library: real conversions (slow) and fast plumbing/bad-input checks."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from converters import (
    BackendMissingError,
    ConversionInputError,
    CoreMLFromOnnx,
    CoreMLFromTorch,
    OnnxFromTorch,
    OpenVinoFromOnnx,
    TensorRTFromOnnx,
    TFLiteFromOnnx,
    TFLiteFromTorch,
    check_pt2_archive,
    convert_isolated,
    coreml_spec_io,
    engine_cache_key,
    inspect_model,
    validate,
)
from converters.run import ConversionRequest
from converters.tensorrt_steps import normalize_profiles, parser_errors
from converters.tflite_steps import onnx2tf_python

REPO = Path(__file__).resolve().parent.parent


def tiny_onnx(path: Path, opset: int = 17, batch: int | str = "batch") -> Path:
    """Relu(MatMul(x, W)) built with onnx.helper: no torch needed."""
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3], np.linspace(-1, 1, 12).tolist())
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def assert_passed(v: dict[str, Any]) -> None:
    assert v["passed"] is True, v
    assert v["max_abs_err"] is not None and v["max_rel_err"] is not None


# ------------------------------------------------------------------ fast: plumbing, bad inputs


def test_import_is_light() -> None:
    code = "import sys, converters; print([m for m in ('torch','tensorflow','tensorrt','openvino','coremltools') if m in sys.modules])"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert out.stdout.strip() == "[]"


def test_engine_cache_key() -> None:
    shapes = {"x": {"min": [1, 3, 224, 224], "opt": [8, 3, 224, 224], "max": [16, 3, 224, 224]}}
    k = engine_cache_key("ab" * 32, "NVIDIA H100 80GB HBM3", "10.3.0", "fp16", shapes)
    assert k == engine_cache_key(
        "AB" * 32, " NVIDIA  H100 80GB HBM3", "10.3.0", "fp16", dict(shapes)
    )
    assert len(k) == 64
    assert k != engine_cache_key("ab" * 32, "NVIDIA A100", "10.3.0", "fp16", shapes)
    assert k != engine_cache_key("ab" * 32, "NVIDIA H100 80GB HBM3", "10.4.0", "fp16", shapes)
    assert k != engine_cache_key("ab" * 32, "NVIDIA H100 80GB HBM3", "10.3.0", "fp32", shapes)
    assert k != engine_cache_key(
        "ab" * 32, "NVIDIA H100 80GB HBM3", "10.3.0", "fp16", {"x": [1, 3, 224, 224]}
    )


def test_trt_profiles_and_parser_errors() -> None:
    assert normalize_profiles({"x": [1, 3, 8, 8]}) == {
        "x": {"min": [1, 3, 8, 8], "opt": [1, 3, 8, 8], "max": [1, 3, 8, 8]}
    }
    with pytest.raises(ConversionInputError, match="lacks"):
        normalize_profiles({"x": {"min": [1]}})

    class Err:
        def code(self) -> int:
            return 8

        def node(self) -> int:
            return 3

        def node_name(self) -> str:
            return "n3"

        def node_operator(self) -> str:
            return "NonZero"

        def desc(self) -> str:
            return "unsupported"

    class Parser:
        num_errors = 1

        def get_error(self, i: int) -> Err:
            return Err()

    text, op = parser_errors(Parser())
    assert op == "NonZero" and "unsupported" in text and "n3" in text


def test_tensorrt_missing_is_clear(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    try:
        import tensorrt  # noqa: F401

        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    step = TensorRTFromOnnx(tiny_onnx(tmp_path / "t.onnx"), precision="fp16", shapes={"x": [1, 4]})
    with pytest.raises(BackendMissingError, match="TensorRT is not installed on this host"):
        step.artifact()


def test_tensorrt_int8_needs_qdq(tmp_path: Path) -> None:
    with pytest.raises(ConversionInputError, match="QuantizeLinear"):
        TensorRTFromOnnx(tiny_onnx(tmp_path / "t.onnx"), precision="int8").artifact()


def test_inspect_onnx_symbolic(tmp_path: Path) -> None:
    info = inspect_model(tiny_onnx(tmp_path / "t.onnx"))
    assert info.opset == 17
    assert [(t.name, t.shape, t.dtype) for t in info.inputs] == [("x", ["batch", 4], "float32")]
    assert info.outputs[0].shape == ["batch", 3]


def test_unknowable_shapes_fail_fast(tmp_path: Path) -> None:
    src = tiny_onnx(tmp_path / "t.onnx")
    with pytest.raises(ConversionInputError) as ei:
        TFLiteFromOnnx(src).artifact()
    assert "dynamic dimensions" in str(ei.value) and "input_shapes" in str(ei.value)
    with pytest.raises(ConversionInputError, match="does not fit"):
        TFLiteFromOnnx(src, input_shapes={"x": [1, 5]}).artifact()


def test_opset_too_new(tmp_path: Path) -> None:
    with pytest.raises(ConversionInputError, match="opset 21 is newer") as ei:
        OpenVinoFromOnnx(tiny_onnx(tmp_path / "t.onnx", opset=21)).artifact()
    assert "opset_version=17" in str(ei.value)


def test_zip_bomb_pt2_rejected(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.pt2"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("m/archive_format", "pt2")
        zf.writestr("m/data/weights/w0", b"\0" * (64 << 20))
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(ConversionInputError, match="zip bomb"):
        check_pt2_archive(bomb)
    with pytest.raises(ConversionInputError, match="would unpack"):
        check_pt2_archive(bomb, max_uncompressed=1 << 20)
    many = tmp_path / "many.pt2"
    with zipfile.ZipFile(many, "w") as zf:
        for i in range(50):
            zf.writestr(f"m/{i}", "x")
    with pytest.raises(ConversionInputError, match="archive entries"):
        check_pt2_archive(many, max_entries=20)


def test_non_torch_pt2_rejected(tmp_path: Path) -> None:
    text = tmp_path / "notes.pt2"
    text.write_text("definitely not a model")
    with pytest.raises(ConversionInputError, match=r"not a torch\.export program"):
        inspect_model(text)
    other = tmp_path / "other.pt2"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("archive/data.pkl", b"\x80\x04N.")
    with pytest.raises(ConversionInputError, match=r"not a torch\.export program") as ei:
        TFLiteFromTorch(other).artifact()
    assert "torch.export.save" in str(ei.value)


def test_isolated_bad_input_reports_error(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.pt2"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("m/archive_format", "pt2")
        zf.writestr("m/w", b"\0" * (16 << 20))
    res = convert_isolated(
        ConversionRequest(source=str(bomb), target="tflite", timeout_s=120), tmp_path / "w"
    )
    assert res.status == "failed" and res.error is not None and res.log is not None
    assert "zip bomb" in res.error.message and res.error.step == "TFLiteFromTorch"
    assert Path(res.log).exists()


def test_isolated_memory_limit(tmp_path: Path) -> None:
    res = convert_isolated(
        ConversionRequest(
            source=str(tiny_onnx(tmp_path / "t.onnx")),
            target="openvino",
            timeout_s=120,
            memory_mb=64,
        ),
        tmp_path / "w",
    )
    assert res.status == "failed" and res.error is not None
    assert "memory" in (res.error.message + (res.error.hint or "")).lower()


# ------------------------------------------------------------------ slow: real conversions


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """ONNX (opset 17) and .pt2 files of the zoo models used below, written once."""
    from converters.zoo import write_onnx, write_pt2

    d = tmp_path_factory.mktemp("zoo")
    files: dict[str, Path] = {}
    for name in ("mobilenet_v2", "vit", "two_input", "dynamic_batch"):
        files[f"{name}.pt2"] = write_pt2(name, d / f"{name}.pt2")
        files[f"{name}.onnx"] = write_onnx(name, d / f"{name}.onnx")
    return files


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("artifacts")


@pytest.mark.slow
def test_zoo_files_inspect(zoo: dict[str, Path]) -> None:
    info = inspect_model(zoo["dynamic_batch.onnx"])
    assert (
        info.opset == 17
        and isinstance(info.inputs[0].shape[0], str)
        and info.inputs[0].shape[1:] == [3, 32, 32]
    )
    pinfo = inspect_model(zoo["dynamic_batch.pt2"])
    assert pinfo.format == "pt2" and isinstance(pinfo.inputs[0].shape[0], str)
    two = inspect_model(zoo["two_input.pt2"])
    assert [t.name for t in two.inputs] == ["image", "features"] and len(two.outputs) == 2


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenet_v2", "two_input"])
def test_onnx_from_torch(zoo: dict[str, Path], out_dir: Path, name: str) -> None:
    art = OnnxFromTorch(zoo[f"{name}.pt2"], out_dir=out_dir).artifact()
    assert inspect_model(art.path).opset == 17
    assert_passed(validate(art, zoo[f"{name}.pt2"]))


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_openvino_from_onnx(zoo: dict[str, Path], out_dir: Path, precision: str) -> None:
    art = OpenVinoFromOnnx(
        zoo["mobilenet_v2.onnx"], out_dir=out_dir, precision=precision
    ).artifact()
    assert (art.path / "model.xml").exists() and (art.path / "model.bin").exists()
    v = validate(art, zoo["mobilenet_v2.onnx"])
    assert_passed(v)
    if precision == "fp32":
        assert v["max_rel_err"] < 1e-5


@pytest.mark.slow
def test_openvino_chain_from_pt2_dynamic(zoo: dict[str, Path], out_dir: Path) -> None:
    step = OpenVinoFromOnnx(
        OnnxFromTorch(zoo["dynamic_batch.pt2"], out_dir=out_dir), out_dir=out_dir
    )
    art = step.artifact()
    assert_passed(validate(art, zoo["dynamic_batch.pt2"], input_shapes={"x": [3, 3, 32, 32]}))


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_tflite_from_torch(zoo: dict[str, Path], out_dir: Path, precision: str) -> None:
    art = TFLiteFromTorch(zoo["mobilenet_v2.pt2"], out_dir=out_dir, precision=precision).artifact()
    assert art.metadata["inputs"][0]["perm"] is None  # litert-torch keeps NCHW
    v = validate(art, zoo["mobilenet_v2.pt2"])
    assert_passed(v)
    assert v["max_rel_err"] <= {"fp32": 1e-5, "fp16": 5e-3, "int8": 5e-2}[precision]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vit", "two_input"])
def test_tflite_from_torch_models(zoo: dict[str, Path], out_dir: Path, name: str) -> None:
    art = TFLiteFromTorch(zoo[f"{name}.pt2"], out_dir=out_dir).artifact()
    assert_passed(validate(art, zoo[f"{name}.pt2"]))


@pytest.mark.slow
def test_tflite_from_torch_dynamic_needs_shapes(zoo: dict[str, Path], out_dir: Path) -> None:
    with pytest.raises(ConversionInputError, match="input_shapes"):
        TFLiteFromTorch(zoo["dynamic_batch.pt2"], out_dir=out_dir).artifact()
    art = TFLiteFromTorch(
        zoo["dynamic_batch.pt2"], out_dir=out_dir, input_shapes={"x": [2, 3, 32, 32]}
    ).artifact()
    assert_passed(validate(art, zoo["dynamic_batch.pt2"], input_shapes={"x": [2, 3, 32, 32]}))


needs_onnx2tf = pytest.mark.skipif(
    not onnx2tf_python().exists(),
    reason="onnx2tf venv missing: run bash converters/envs/setup_onnx2tf.sh",
)


@pytest.mark.slow
@needs_onnx2tf
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_tflite_from_onnx_onnx2tf(zoo: dict[str, Path], out_dir: Path, precision: str) -> None:
    art = TFLiteFromOnnx(
        zoo["mobilenet_v2.onnx"], out_dir=out_dir, precision=precision, backend="onnx2tf"
    ).artifact()
    entry = art.metadata["inputs"][0]
    assert entry["perm"] == [0, 2, 3, 1] and entry["shape"] == [
        1,
        64,
        64,
        3,
    ]  # NCHW -> NHWC recorded
    assert json.loads(art.meta_path.read_text())["layout"] == "channel_last"
    assert_passed(validate(art, zoo["mobilenet_v2.onnx"]))


@pytest.mark.slow
@needs_onnx2tf
def test_tflite_from_onnx_two_inputs(zoo: dict[str, Path], out_dir: Path) -> None:
    art = TFLiteFromOnnx(zoo["two_input.onnx"], out_dir=out_dir, backend="onnx2tf").artifact()
    assert [e["source_name"] for e in art.metadata["inputs"]] == ["image", "features"]
    assert art.metadata["inputs"][1]["perm"] is None and len(art.metadata["outputs"]) == 2
    v = validate(art, zoo["two_input.onnx"])
    assert_passed(v)
    assert len(v["per_output"]) == 2


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "precision"), [("mobilenet_v2", "fp32"), ("vit", "fp32"), ("vit", "fp16")]
)
def test_tflite_from_onnx_bridge(
    zoo: dict[str, Path], out_dir: Path, name: str, precision: str
) -> None:
    art = TFLiteFromOnnx(
        zoo[f"{name}.onnx"], out_dir=out_dir, precision=precision
    ).artifact()  # auto
    assert art.metadata["backend"] == "onnx2torch" and art.metadata["inputs"][0]["perm"] is None
    assert_passed(validate(art, zoo[f"{name}.onnx"]))


@pytest.mark.slow
@needs_onnx2tf
def test_onnx2tf_flex_ops_reported(zoo: dict[str, Path], out_dir: Path) -> None:
    from converters.errors import ConversionError

    with pytest.raises(ConversionError, match="Flex") as ei:
        TFLiteFromOnnx(zoo["vit.onnx"], out_dir=out_dir, backend="onnx2tf").artifact()
    assert "TFLiteFromTorch" in (ei.value.hint or "")


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_coreml_from_torch(zoo: dict[str, Path], out_dir: Path, precision: str) -> None:
    import coremltools as ct

    art = CoreMLFromTorch(zoo["two_input.pt2"], out_dir=out_dir, precision=precision).artifact()
    spec = ct.models.MLModel(str(art.path), skip_model_load=True).get_spec()
    assert spec.WhichOneof("Type") == "mlProgram"
    assert [i.name for i in spec.description.input] == ["image", "features"]
    assert len(spec.description.output) == 2
    v = validate(art, zoo["two_input.pt2"])
    assert v["passed"] is None and v["note"] == "not validated: needs macOS"


@pytest.mark.slow
def test_coreml_from_onnx(zoo: dict[str, Path], out_dir: Path) -> None:
    art = CoreMLFromOnnx(zoo["mobilenet_v2.onnx"], out_dir=out_dir).artifact()
    io = coreml_spec_io(art.path)
    assert io["model_type"] == "mlProgram"
    assert len(io["inputs"]) == 1 and io["inputs"][0]["shape"] == [1, 3, 64, 64]
    assert io["outputs"][0]["shape"] in ([1, 10], [])


@pytest.mark.slow
def test_run_cli_end_to_end(zoo: dict[str, Path], tmp_path: Path) -> None:
    req = {
        "source": str(zoo["mobilenet_v2.pt2"]),
        "timeout_s": 300,
        "conversions": [{"target": "onnx"}, {"target": "tflite", "precision": "fp16"}],
    }
    (tmp_path / "req.json").write_text(json.dumps(req))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "converters.run",
            "--request",
            str(tmp_path / "req.json"),
            "--out",
            str(tmp_path / "res.json"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    results = json.loads((tmp_path / "res.json").read_text())["results"]
    assert proc.returncode == 0, results
    for r in results:
        assert r["status"] == "ok" and r["validation"]["passed"] is True
        assert (
            len(r["artifact"]["sha256"]) == 64
            and r["artifact"]["size"] > 0
            and Path(r["log"]).exists()
        )


@pytest.mark.slow
def test_isolated_timeout(zoo: dict[str, Path], tmp_path: Path) -> None:
    res = convert_isolated(
        ConversionRequest(source=str(zoo["vit.pt2"]), target="tflite", timeout_s=1), tmp_path
    )
    assert (
        res.status == "timeout" and res.error is not None and "timeout_s" in (res.error.hint or "")
    )


def test_classify_unsupported_op() -> None:
    from converters.errors import classify

    exc = NotImplementedError(
        "Converter is not implemented (OperationDescription(domain='', operation_type='GridSample', version=16))"
    )
    info = classify("CoreMLFromOnnx", exc, "coreml")
    assert info.op == "GridSample" and "not supported by the coreml converter" in (info.hint or "")


class _FakeTRT:
    """Just enough of the tensorrt module to drive TensorRTFromOnnx's build path."""

    __version__ = "10.0.fake"

    class Logger:
        WARNING = 2

        def __init__(self, level: int) -> None:
            self.level = level

    class NetworkDefinitionCreationFlag:
        EXPLICIT_BATCH = 0

    class MemoryPoolType:
        WORKSPACE = "workspace"

    class BuilderFlag:
        FP16, INT8 = "fp16", "int8"

    def __init__(self, parse_ok: bool = True, input_shape: tuple[int, ...] = (-1, 4)) -> None:
        self.parse_ok, self.input_shape = parse_ok, input_shape
        self.calls: list[Any] = []
        fake = self

        class Tensor:
            name, shape = "x", fake.input_shape

        class Network:
            num_inputs = 1

            def get_input(self, i: int) -> Tensor:
                return Tensor()

        class Cache:
            def serialize(self) -> bytes:
                return b"timing"

        class Config:
            def set_memory_pool_limit(self, pool: str, size: int) -> None:
                fake.calls.append(("pool", pool, size))

            def set_flag(self, flag: str) -> None:
                fake.calls.append(("flag", flag))

            def add_optimization_profile(self, p: Any) -> None:
                fake.calls.append(("profile", p.shapes))

            def create_timing_cache(self, blob: bytes) -> Cache:
                fake.calls.append(("timing_in", blob))
                return Cache()

            def set_timing_cache(self, cache: Cache, ignore_mismatch: bool) -> None:
                pass

            def get_timing_cache(self) -> Cache:
                return Cache()

        class Profile:
            def __init__(self) -> None:
                self.shapes: dict[str, Any] = {}

            def set_shape(self, name: str, lo: list[int], opt: list[int], hi: list[int]) -> None:
                self.shapes[name] = (lo, opt, hi)

        class Builder:
            def __init__(self, logger: Any) -> None:
                pass

            def create_network(self, flags: int) -> Network:
                return Network()

            def create_builder_config(self) -> Config:
                return Config()

            def create_optimization_profile(self) -> Profile:
                return Profile()

            def build_serialized_network(self, network: Network, config: Config) -> bytes:
                return b"ENGINE"

        class Err:
            def code(self) -> int:
                return 8

            def node(self) -> int:
                return 0

            def node_operator(self) -> str:
                return "NonZero"

            def node_name(self) -> str:
                return "nz"

            def desc(self) -> str:
                return "no importer"

        class OnnxParser:
            num_errors = 0 if fake.parse_ok else 1

            def __init__(self, network: Network, logger: Any) -> None:
                pass

            def parse_from_file(self, path: str) -> bool:
                return fake.parse_ok

            def get_error(self, i: int) -> Err:
                return Err()

        self.Builder, self.OnnxParser = Builder, OnnxParser


def test_tensorrt_build_path_with_fake_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from converters.errors import ConversionError

    src = tiny_onnx(tmp_path / "t.onnx")
    fake = _FakeTRT()
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    with pytest.raises(ConversionInputError, match="dynamic dimensions"):
        TensorRTFromOnnx(src, out_dir=tmp_path / "a").artifact()
    opts = {
        "shapes": {"x": {"min": [1, 4], "opt": [8, 4], "max": [32, 4]}},
        "timing_cache": str(tmp_path / "tc.bin"),
        "engine_cache_dir": str(tmp_path / "cache"),
    }
    art = TensorRTFromOnnx(src, out_dir=tmp_path / "b", precision="fp16", **opts).artifact()
    assert art.path.read_bytes() == b"ENGINE" and art.metadata["engine_cache"] == "miss"
    assert ("flag", "fp16") in fake.calls and (
        "profile",
        {"x": ([1, 4], [8, 4], [32, 4])},
    ) in fake.calls
    assert (tmp_path / "tc.bin").read_bytes() == b"timing"
    again = TensorRTFromOnnx(src, out_dir=tmp_path / "c", precision="fp16", **opts).artifact()
    assert again.metadata["engine_cache"] == "hit"
    monkeypatch.setitem(sys.modules, "tensorrt", _FakeTRT(parse_ok=False))
    with pytest.raises(ConversionError, match="no importer") as ei:
        TensorRTFromOnnx(src, out_dir=tmp_path / "d", shapes={"x": [1, 4]}).artifact()
    assert ei.value.op == "NonZero"


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_tensorrt_real_build(tmp_path: Path) -> None:
    pytest.importorskip("tensorrt", reason="needs the TensorRT Python package (GPU host)")
    src = tiny_onnx(tmp_path / "t.onnx")
    shapes = {"x": {"min": [1, 4], "opt": [4, 4], "max": [8, 4]}}
    art = TensorRTFromOnnx(
        src, precision="fp16", shapes=shapes, timing_cache=str(tmp_path / "tc")
    ).artifact()
    assert art.size > 0 and (tmp_path / "tc").exists()


@pytest.mark.slow
def test_opset13_upload(tmp_path: Path, out_dir: Path) -> None:
    from converters.zoo import write_onnx

    src = write_onnx("mobilenet_v2", tmp_path / "mb13.onnx", opset=13, exporter="torchscript")
    assert inspect_model(src).opset == 13
    for step in (TFLiteFromOnnx(src, out_dir=out_dir), OpenVinoFromOnnx(src, out_dir=out_dir)):
        assert_passed(validate(step.artifact(), src))


@pytest.mark.slow
def test_onnx_from_torch_opset_too_old_is_clear(zoo: dict[str, Path], out_dir: Path) -> None:
    from converters.errors import ConversionError

    with pytest.raises(ConversionError, match="opset 13") as ei:
        OnnxFromTorch(zoo["vit.pt2"], out_dir=out_dir, opset=13).artifact()
    assert "opset 17 or 18" in (ei.value.hint or "")
