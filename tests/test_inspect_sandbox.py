"""The shared sandbox (``converters.sandbox.run_sandboxed``) and the upload check run in it.

* ``run_sandboxed``: a typed result with the progress events streamed as they come; the
  address-space limit (``out_of_memory``); an entry that raises; a result of the wrong type.
  Timeouts, crashes by signal, a missing or corrupt result file and cancel are tested through
  the measurement path (``tests/test_measure_protocol.py``), the process-group kill and the
  death with the starter in ``tests/test_agent_errors.py``.
* A real coordinator subprocess: a 64 MiB ONNX accepted and 64 MiB of garbage rejected leave
  its memory (``/proc/PID/status``) flat; a check over its memory limit is a 422
  ``inspection_limit`` naming the setting, and stores nothing; so is one over its time limit.

The sandboxed entries below live in this module: the child imports it by name.
"""

from __future__ import annotations

import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import BaseModel

from bench.upload_memory import Coordinator, coordinator, write_big_onnx, write_garbage
from converters.sandbox import Emit, SandboxEnd, run_sandboxed
from latencylab.errors import ErrorCode
from server.formats import InspectLimits, ModelRejected, inspect_upload

MiB = 2**20
CHECK_MB = 384
"""The test coordinator's LATENCYLAB_INSPECT_MEMORY_MB: a 64 MiB model's check (the
interpreter, onnx, twice the file) fits, a 200 MiB one's does not."""
MAX_GROWTH_MIB = 32


class Ask(BaseModel):
    n: int = 0
    nbytes: int = 0


class Answer(BaseModel):
    total: int


def count(request: Ask, emit: Emit) -> Answer:
    for i in range(request.n):
        emit({"phase": "counting", "i": i})
    return Answer(total=request.n)


def hog(request: Ask, emit: Emit) -> Answer:
    return Answer(total=len(bytearray(request.nbytes)))


def refuse(request: Ask, emit: Emit) -> Answer:
    raise ValueError(f"no {request.n}")


def wrong(request: Ask, emit: Emit) -> Ask:
    return request


def test_a_typed_result_and_the_progress_events(tmp_path: Path) -> None:
    events: list[dict[str, object]] = []
    seen_in: set[str] = set()

    def on_event(event: dict[str, object]) -> None:
        events.append(event)
        seen_in.add(threading.current_thread().name)

    out = run_sandboxed(
        Ask(n=3), f"{__name__}:count", Answer, rundir=tmp_path, timeout_s=120, on_event=on_event
    )
    assert out.end is SandboxEnd.finished and out.returncode == 0
    assert out.result == Answer(total=3)
    assert events == [{"phase": "counting", "i": i} for i in range(3)]
    assert seen_in == {threading.current_thread().name}  # delivered in the caller's thread


def test_the_memory_limit_is_an_out_of_memory_outcome(tmp_path: Path) -> None:
    out = run_sandboxed(
        Ask(nbytes=2048 * MiB), f"{__name__}:hog", Answer, rundir=tmp_path, timeout_s=120,
        memory_mb=1024,
    )  # fmt: skip
    assert out.end is SandboxEnd.out_of_memory and out.result is None, out
    assert "address-space limit" in out.stderr_tail
    unlimited = run_sandboxed(
        Ask(nbytes=8 * MiB), f"{__name__}:hog", Answer, rundir=tmp_path, timeout_s=120
    )
    assert unlimited.result == Answer(total=8 * MiB)


def test_an_entry_that_raises_and_a_result_of_the_wrong_type(tmp_path: Path) -> None:
    out = run_sandboxed(Ask(n=7), f"{__name__}:refuse", Answer, rundir=tmp_path, timeout_s=120)
    assert out.end is SandboxEnd.raised and out.error == "ValueError: no 7"
    assert "Traceback" in out.stderr_tail and "ValueError: no 7" in out.stderr_tail
    out = run_sandboxed(Ask(n=7), f"{__name__}:wrong", Answer, rundir=tmp_path, timeout_s=120)
    assert out.end is SandboxEnd.invalid_result and out.result is None
    assert out.error is not None and "total" in out.error  # the field the result lacks


@pytest.fixture(scope="module")
def coord(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coordinator]:
    env = {"LATENCYLAB_MAX_UPLOAD_MB": "256", "LATENCYLAB_INSPECT_MEMORY_MB": str(CHECK_MB)}
    with coordinator(tmp_path_factory.mktemp("inspect") / "data", env) as c:
        warm = write_big_onnx(tmp_path_factory.mktemp("warm") / "warm.onnx", MiB)
        r = c.upload(warm, "warm.onnx")  # the first upload imports what uploads need
        assert r.status_code == 201, r.text
        yield c


def _model_count(coord: Coordinator) -> int:
    r = httpx.get(f"{coord.url}/api/v1/models", headers={"Authorization": f"Bearer {coord.token}"})
    r.raise_for_status()
    return len(r.json())


def test_uploads_leave_the_coordinators_memory_flat(coord: Coordinator, tmp_path: Path) -> None:
    model = write_big_onnx(tmp_path / "big.onnx", 64 * MiB)
    junk = write_garbage(tmp_path / "junk.onnx", 64 * MiB)
    before = coord.memory()
    r = coord.upload(model, "big.onnx")
    assert r.status_code == 201, r.text
    assert r.json()["inputs"] == [{"name": "idx", "shape": [1], "dtype": "int64"}]
    assert r.json()["size"] == model.stat().st_size
    r = coord.upload(junk, "junk.onnx")
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("not a valid ONNX model (protobuf parse failed")
    after = coord.memory()
    assert after["VmRSS"] - before["VmRSS"] < MAX_GROWTH_MIB, (before, after)
    assert after["VmHWM"] - before["VmHWM"] < MAX_GROWTH_MIB, (before, after)


def test_a_check_over_its_memory_limit_is_refused_clearly(
    coord: Coordinator, tmp_path: Path
) -> None:
    model = write_big_onnx(tmp_path / "huge.onnx", 200 * MiB)
    models = _model_count(coord)
    before = coord.memory()
    r = coord.upload(model, "huge.onnx")
    assert r.status_code == 422, r.text
    assert r.json() == {
        "code": "inspection_limit",
        "detail": f"checking 'huge.onnx' needs more memory than the model check may use "
        f"({CHECK_MB} MiB, the coordinator's LATENCYLAB_INSPECT_MEMORY_MB); nothing was stored",
    }
    assert _model_count(coord) == models
    assert coord.memory()["VmHWM"] - before["VmHWM"] < MAX_GROWTH_MIB


def test_a_check_over_its_time_limit_is_refused_clearly(tmp_path: Path) -> None:
    model = write_big_onnx(tmp_path / "m.onnx", MiB)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    limits = InspectLimits(memory_mb=4096, timeout_s=0.01, max_unpacked=MiB)
    with pytest.raises(ModelRejected) as info:
        inspect_upload(model, scratch, limits, "m.onnx")
    assert info.value.code is ErrorCode.inspection_limit and info.value.status_code == 422
    assert info.value.message == (
        "checking 'm.onnx' took longer than the model check may take (0.01 s, the "
        "coordinator's LATENCYLAB_INSPECT_TIMEOUT_S); nothing was stored"
    )


def test_an_unpacked_upload_cannot_shadow_a_module_the_check_imports(tmp_path: Path) -> None:
    """A zipped .mlpackage carrying a ``coremltools`` package of its own: the check imports
    coremltools after unpacking, and must get the installed one (or none), never the upload's."""
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("m.mlpackage/Manifest.json", "{}")
        zf.writestr("coremltools/__init__.py", f"open({str(marker)!r}, 'w').write('ran')\n")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    limits = InspectLimits(memory_mb=4096, timeout_s=120, max_unpacked=MiB)
    with pytest.raises(ModelRejected) as info:
        inspect_upload(evil, scratch, limits, "evil.zip")
    assert info.value.status_code in (415, 422), info.value.message
    assert str(scratch) not in info.value.message
    assert not marker.exists()
