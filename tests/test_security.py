"""Nothing a user sends reaches dlopen, exec, subprocess arguments or a filesystem path.

The attack these tests repeat (found against `make run`): upload an ONNX-with-external-data
zip that also carries ``payload.so``, benchmark it once so the agent unpacks it, then benchmark
any ``.tflite`` with ``{"options": {"delegate": "<agent cache>/payload.so"}}``: the library's
constructor ran as the agent's user. Likewise ``options.benchmark_model`` executed any binary
the caller named. Today both are refused at submission (422 naming the option), the runner
refuses them again if a job carried them anyway, and the agent unpacks archives only inside
the job's own work directory, which goes with the job.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from agents.measure import run_isolated
from latencylab.schemas import MeasureSettings, MeasureSpec
from tests.conftest import FAST, Live
from tests.test_conversions_e2e import _wait_conversion

PAYLOAD_C = r"""
#include <stdio.h>
#include <unistd.h>
__attribute__((constructor)) static void pwn(void) {
    FILE *f = fopen("%(marker)s", "w");
    if (f) { fprintf(f, "code ran in pid %%d uid %%d\n", getpid(), getuid()); fclose(f); }
}
"""


@pytest.fixture
def payload(tmp_path: Path) -> tuple[Path, Path]:
    """A real shared library whose constructor writes a marker file when it is loaded."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the payload library (cc/gcc not on PATH)")
    marker = tmp_path / "PWNED"
    src = tmp_path / "payload.c"
    src.write_text(PAYLOAD_C % {"marker": marker})
    lib = tmp_path / "payload.so"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    return lib, marker


def _evil_zip(tmp_path: Path, lib: Path) -> Path:
    w = numpy_helper.from_array(np.ones((16, 16), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "ext",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(tmp_path / "model.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True, location="w.bin", size_threshold=0)  # fmt: skip
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.write(tmp_path / "model.onnx", "model.onnx")
        zf.write(tmp_path / "w.bin", "w.bin")
        zf.write(lib, "payload.so")
    out = tmp_path / "evil.zip"
    out.write_bytes(buf.getvalue())
    return out


def _tflite_model(live: Live, model_files: dict[str, Path]) -> int:
    """A .tflite model uploaded as it is (converted once from the MLP)."""
    with live.http(live.user_token) as c:
        src = c.post(
            "/models", files={"file": ("mlp.onnx", model_files["mlp"].read_bytes())}
        ).json()
        conv = c.post("/conversions", json={"model_id": src["id"], "target": "tflite"}).json()
        conv = _wait_conversion(live, conv["id"])
        assert conv["status"] == "succeeded", conv
        data = c.get(f"/artifacts/{conv['artifact']['sha256']}").content
        r = c.post("/models", files={"file": ("mlp.tflite", data)})
        assert r.status_code == 201, r.text
        return int(r.json()["id"])


def test_the_delegate_attack_runs_nothing(
    live: Live, model_files: dict[str, Path], payload: tuple[Path, Path], tmp_path: Path
) -> None:
    lib, marker = payload
    with live.client() as c:
        m = c.upload_model(_evil_zip(tmp_path, lib))
        done = c.wait(c.benchmark(m.id, [{"runtime": "onnxruntime"}], FAST).id, timeout=300)
    assert done.status == "succeeded", [(j.runtime, j.error) for j in done.jobs]
    # The agent unpacked the archive only inside the job's work directory, now gone.
    assert not [p for p in live.data_dir.rglob("payload.so")], "an unpacked payload was left"

    tfl = _tflite_model(live, model_files)
    with live.http(live.user_token) as c:
        before = len(c.get("/benchmarks", params={"model_id": tfl}).json())
        for options, key in (
            ({"delegate": str(lib)}, "delegate"),
            ({"delegate": "gpu", "delegate_library": str(lib)}, "delegate_library"),
            ({"benchmark_model": str(lib)}, "benchmark_model"),
            ({"delegate_options": {"library_directory_path": str(tmp_path)}}, "delegate_options"),
        ):
            r = c.post(
                "/benchmarks",
                json={
                    "model_id": tfl,
                    "settings": FAST,
                    "targets": [{"runtime": "tflite", "options": options}],
                },
            )
            assert r.status_code == 422, r.text
            assert key in r.text and "tflite options" in r.text
        assert len(c.get("/benchmarks", params={"model_id": tfl}).json()) == before  # none queued
    assert not marker.exists(), marker.read_text()


def test_the_runner_refuses_paths_even_in_a_forged_job(
    model_files: dict[str, Path], payload: tuple[Path, Path], tmp_path: Path
) -> None:
    """Defence in depth: a job that somehow carries a path (an old row, a forged request to
    the agent) fails in the runner before anything is loaded or executed."""
    lib, marker = payload
    tool = tmp_path / "tool.sh"
    tool.write_text(f"#!/bin/sh\necho ran > {marker}\n")
    tool.chmod(0o755)
    for options in ({"delegate": str(lib)}, {"benchmark_model": str(tool)}):
        spec = MeasureSpec(
            runtime="onnxruntime" if "benchmark_model" in options else "tflite",
            model_path=str(model_files["mlp"]),
            model_format="onnx",
            inputs=[],
            settings=MeasureSettings(warmup_runs=1, min_runs=3, min_duration_s=0),
            options=options,
        )
        r = run_isolated(spec, workdir=tmp_path / "work")
        assert r.status == "failed" and r.error is not None
        assert "unknown option" in r.error or "should match pattern" in r.error, r.error
    assert not marker.exists()
